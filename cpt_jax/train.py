"""Entry point: `python -m cpt_jax.train --config configs/X.py --workdir DIR [--config.a.b=v …]`.

Rerunning the same command with the same workdir resumes from the latest good checkpoint. Errors a person
can fix (config, data, checkpoint, divergence) print one message and exit non-zero, with no traceback.
"""

from __future__ import annotations

import errno
import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from cpt_jax import console, host_memory

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path of a config file with get_config().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of this run: checkpoints, metrics, summary.")
_COORDINATOR = flags.DEFINE_string("coordinator", "", "host:port of process 0, for multi-process runs off TPU.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes (with --coordinator).")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's id (with --coordinator).")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Also show the libraries' INFO lines (WORKDIR/train.log has them all).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Check the flags and the config (fields, values, mesh against the "
                             "devices), print what would run and exit: nothing is trained, the workdir is not touched.")

EXIT_DIVERGED = 3
EXIT_STORAGE = 74  # EX_IOERR: disk full, over quota, or storage that kept failing; free space or wait, then rerun
_WRITE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)


def main(argv):
  del argv
  log_name = "train.log" if _PROCESS_ID.value <= 0 else f"train.{_PROCESS_ID.value}.log"
  console.setup_logging(_WORKDIR.value, log_name, _VERBOSE.value)  # Orbax and TFDS log every file they touch
  from cpt_jax import sharding  # pylint: disable=g-import-not-at-top  # after flags: imports jax
  sharding.maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  from cpt_jax import checkpoint, config, lease, loop, paths  # pylint: disable=g-import-not-at-top  # after distributed init
  from cpt_jax.data.records import DataError  # pylint: disable=g-import-not-at-top  # after distributed init
  if _CONFIG.value is None or not _WORKDIR.value:
    console.fail("both --config and --workdir are required, e.g. --config configs/pretrain_tiny.py --workdir runs/tiny")
  if _DRY_RUN.value:
    _dry_run(config)
    return
  try:
    summary = loop.run(_CONFIG.value, _WORKDIR.value)
    if _primary():
      print(console.summary_table(summary, _WORKDIR.value), flush=True)  # stdout: the result, stderr: the log
  except (config.ConfigError, DataError, checkpoint.CheckpointError, lease.WorkdirBusy) as e:
    console.fail(str(e))
  except loop.TrainingDiverged as e:
    console.fail(str(e), EXIT_DIVERGED)
  except loop.Preempted as e:
    logging.warning("%s", e)
    sys.exit(loop.PREEMPTED_EXIT_CODE)
  except paths.StorageError as e:  # a checkpoint or gs:// write that failed for good
    console.fail(str(e), EXIT_STORAGE)
  except OSError as e:
    if e.errno in paths.FULL_ERRNOS:
      console.fail(f"cannot write {e.filename or _WORKDIR.value}: {e.strerror}. Free space (or raise the quota), "
                   "then rerun the same command: it resumes from the last committed checkpoint", EXIT_STORAGE)
    if e.errno not in _WRITE_ERRNOS:
      raise
    if e.errno == errno.ENOTDIR:  # a path under a file: a --workdir or data.data_dir that names a file
      console.fail(f"cannot write {e.filename or _WORKDIR.value}: part of that path is a file, not a directory. "
                   "Choose a writable --workdir (or data.data_dir) elsewhere, or move the file away")
    console.fail(f"cannot write {e.filename or _WORKDIR.value}: {e.strerror}. Free disk space or choose a writable "
                 "--workdir, then rerun the same command: the last committed checkpoint is kept")


def _dry_run(config) -> None:
  """--dry_run: the checks a run makes on its config before touching anything, then what it would do."""
  import jax  # pylint: disable=g-import-not-at-top  # after flags and distributed init, as in main
  cfg = _CONFIG.value
  from cpt_jax import build  # pylint: disable=g-import-not-at-top
  from cpt_jax.data.records import DataError  # pylint: disable=g-import-not-at-top
  try:
    config.validate(cfg, jax.device_count())
  except config.ConfigError as e:
    console.fail(str(e))
  model = f"a {cfg.model.num_layers}-layer d={cfg.model.d_model} model"
  if cfg.stage == "adapt":  # the model is init_from's, whatever the config says; a script may not have made it yet
    try:
      build.adopt_architecture(cfg)
      model = f"a {cfg.model.num_layers}-layer d={cfg.model.d_model} model (init_from's)"
    except DataError:
      model = f"the model of {cfg.init_from} (its config.json is not written yet)"
  article = "an" if cfg.stage[0] in "aeiou" else "a"
  print(f"dry run: {article} {cfg.stage} run of {model}, batches of "
        f"{cfg.data.batch_size} × {cfg.model.max_len} tokens, mesh {dict(cfg.mesh)} on {jax.device_count()} "
        f"{jax.default_backend()} device(s), into {console.where(_WORKDIR.value)}: the config is valid")


def _primary() -> bool:
  import jax  # pylint: disable=g-import-not-at-top  # after flags and distributed init, as in main
  return jax.process_index() == 0


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()
  app.run(main, flags_parser=console.parse_flags)  # config mistakes: one line each
