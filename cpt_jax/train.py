"""Entry point: `python -m cpt_jax.train --config configs/X.py --workdir DIR [--config.a.b=v …]`.

Rerunning the same command with the same workdir resumes from the latest good checkpoint. Errors a person
can fix (config, data, checkpoint, divergence) print one message and exit non-zero, with no traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path of a config file with get_config().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of this run: checkpoints, metrics, summary.")
_COORDINATOR = flags.DEFINE_string("coordinator", "", "host:port of process 0, for multi-process runs off TPU.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes (with --coordinator).")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's id (with --coordinator).")

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)


class _QuietLibraries(logging.Filter):
  """Keeps cpt_jax's INFO lines and the libraries' warnings; Orbax and TFDS log every file they touch."""

  def filter(self, record):
    return record.levelno >= logging.WARNING or "cpt_jax" in record.pathname


def main(argv):
  del argv
  logging.getLogger().setLevel(logging.INFO)
  for handler in logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())
  from cpt_jax import sharding  # pylint: disable=g-import-not-at-top  # after flags: imports jax
  sharding.maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  from cpt_jax import checkpoint, config, loop  # pylint: disable=g-import-not-at-top  # after distributed init
  from cpt_jax.data.records import DataError  # pylint: disable=g-import-not-at-top
  if _CONFIG.value is None or not _WORKDIR.value:
    _fail("both --config and --workdir are required, e.g. --config configs/pretrain_tiny.py --workdir runs/tiny")
  try:
    loop.run(_CONFIG.value, _WORKDIR.value)
  except (config.ConfigError, DataError, checkpoint.CheckpointError) as e:
    _fail(str(e))
  except loop.TrainingDiverged as e:
    _fail(str(e), EXIT_DIVERGED)
  except loop.Preempted as e:
    logging.warning("%s", e)
    sys.exit(loop.PREEMPTED_EXIT_CODE)
  except OSError as e:
    if e.errno not in _WRITE_ERRNOS:
      raise
    if e.errno == errno.ENOTDIR:  # a path under a file: a --workdir or data.data_dir that names a file
      _fail(f"cannot write {e.filename or _WORKDIR.value}: part of that path is a file, not a directory. Choose a "
            "writable --workdir (or data.data_dir) elsewhere, or move the file away")
    _fail(f"cannot write {e.filename or _WORKDIR.value}: {e.strerror}. Free disk space or choose a writable "
          "--workdir, then rerun the same command: the last committed checkpoint is kept")


def _fail(message: str, code: int = EXIT_USER_ERROR):
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def _parse_flags(argv):
  """absl parsing, with config mistakes (unknown field, bad value, missing file) as one line each."""
  overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
  for i, arg in enumerate(argv[1:], 1):
    path = arg.split("=", 1)[1] if arg.startswith("--config=") else (
        argv[i + 1] if arg == "--config" and i + 1 < len(argv) else None)
    if path is not None and not os.path.exists(path.split(":")[0]):
      _fail(f"config file {path} does not exist (ls configs/ lists the shipped ones)")
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(f"{e}")
  except (AttributeError, KeyError) as e:
    names = re.findall(r"[a-zA-Z_][a-zA-Z_0-9]*", str(e).split("Did you mean")[0])
    hint = re.search(r'Did you mean "([^"]+)"', str(e))
    _fail(f"unknown config field {names[0] if names else str(e)!r} in {overrides or 'the config file'}"
          f"{f'; did you mean {hint.group(1)!r}?' if hint else ''} (fields: cpt_jax/config.py)")
  except (TypeError, ValueError) as e:
    _fail(f"bad config value: {e} (in {overrides or 'the config file'})")
  return None


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
