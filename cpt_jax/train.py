"""Entry point: `python -m cpt_jax.train --config configs/X.py --workdir DIR [--config.a.b=v …]`.

Rerunning the same command with the same workdir resumes from the latest good checkpoint. Errors a person
can fix (config, data, checkpoint, divergence) print one message and exit non-zero, with no traceback.
"""

from __future__ import annotations

import logging
import os
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
  from cpt_jax import checkpoint, config, loop  # pylint: disable=g-import-not-at-top
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


def _fail(message: str, code: int = EXIT_USER_ERROR):
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
