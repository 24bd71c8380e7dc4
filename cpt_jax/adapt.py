"""What an adapt stage adds to the generic training loop: the start weights of `init_from`, the frozen
teacher, and the before/forgetting bookkeeping.

Forgetting is the base-domain loss now minus the loss of the start model on the same rows, measured by this
run's first evaluation (before any update) and kept in `WORKDIR/before.json`, so a resumed run compares
against the same numbers.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from cpt_jax import build, checkpoint as ckpt_lib, config as config_lib, paths
from cpt_jax.data import copy_probe
from cpt_jax.objective import Objective

BEFORE_FILE = "before.json"


class Adaptation:

  def __init__(self, cfg, workdir: str, objective: Objective, sharded_abstract_params: Any, resuming: bool):
    self._workdir = workdir
    self.start_params = None  # only until the train state is made from them (not kept: the teacher is a copy)
    if objective.needs_frozen_model or not resuming:
      step = None if cfg.init_step < 0 else cfg.init_step
      if step is None and jax.process_count() > 1:  # init_from may save meanwhile: process 0's latest for all
        latest = max(ckpt_lib.committed_steps(os.path.join(cfg.init_from, "checkpoints")))
        step = int(multihost_utils.broadcast_one_to_all(np.int32(latest)))
      if resuming and step is not None and step not in ckpt_lib.committed_steps(
          os.path.join(cfg.init_from, "checkpoints")):
        raise config_lib.ConfigError(
            f"config field init_from={cfg.init_from}: this run started from its step {step} (init_step in "
            f"{os.path.join(workdir, 'config.json')}), which is no longer there; the run's teacher and before.json "
            "belong to that step. Restore that checkpoint, or start a new --workdir")
      start = ckpt_lib.Checkpointer(os.path.join(cfg.init_from, "checkpoints"), keep=1_000_000)
      start_step, self.start_params, _, _ = build.restore_weights(  # either layer layout (model.scan_layers)
          start, sharded_abstract_params, step=step)
      start.close()
      logging.info("adapt: start weights from step %d of %s", start_step, cfg.init_from)
      if cfg.init_step < 0 and not resuming:  # saved in config.json: a resume restores this step (run_record)
        cfg.init_step = start_step
    # The frozen start model in its own buffers (the student's are donated every step): the step's teacher
    # and/or the sampler of self-generated replay.
    self.teacher = (build.frozen_copy(self.start_params, cfg.replay.teacher_dtype)
                    if objective.needs_frozen_model else None)
    path = paths.path(workdir) / BEFORE_FILE
    self.before: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

  def take_start_params(self) -> Any:
    params, self.start_params = self.start_params, None
    return params

  def annotate(self, evaluation: dict[str, float]) -> None:
    """Adds `eval/base/forgetting`; the first evaluation of the run (step 0) becomes before.json."""
    if not self.before:
      self.before.update({k: v for k, v in evaluation.items()
                          if k.endswith("/loss") or k == "eval/babi/accuracy" or k in copy_probe.GAINS})
      if jax.process_index() == 0:
        paths.write_text_atomic(paths.path(self._workdir) / BEFORE_FILE, json.dumps(self.before, indent=2))
    if "eval/base/loss" in self.before and "eval/base/loss" in evaluation:
      evaluation["eval/base/forgetting"] = evaluation["eval/base/loss"] - self.before["eval/base/loss"]
