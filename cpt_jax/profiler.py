"""`train.profile_steps="A:B"`: a jax.profiler trace of training steps A..B (numbered as in metrics.jsonl),
written to WORKDIR/profile. How to open it: docs/performance.md ("Profiling a run").

The trace starts before step A's batch is fetched (host-side input work shows) and stops once step B's
results are on the device, so it holds those steps whole and nothing of the steps after them.
"""

from __future__ import annotations

import logging
import os
import tempfile

import jax

PROFILE_DIR = "profile"


def parse(spec: str) -> tuple[int, int] | None:
  """(A, B) of "A:B", None for ""; config.validate has already rejected anything else."""
  if not spec:
    return None
  first, _, last = spec.partition(":")
  return int(first), int(last)


class StepProfiler:

  def __init__(self, spec: str, workdir: str):
    self.steps = parse(spec)
    if "://" in workdir:  # the profiler writes local files only
      self.directory = os.path.join(tempfile.gettempdir(), "cpt_jax_profile", os.path.basename(workdir.rstrip("/")))
    else:
      self.directory = os.path.join(workdir, PROFILE_DIR)
    self.active = False

  def before_step(self, step: int) -> None:
    """`step`: the number of the step about to run (1 for the first step of a run)."""
    if self.steps and not self.active and self.steps[0] <= step <= self.steps[1]:
      jax.profiler.start_trace(self.directory, create_perfetto_trace=True)  # also a Perfetto-loadable JSON
      self.active = True
      logging.info("profiler: tracing steps %d..%d into %s", step, self.steps[1], self.directory)

  def after_step(self, step: int, results) -> None:
    """`results`: what step `step` returned (waited for before the trace stops)."""
    if self.active and step >= self.steps[1]:
      jax.block_until_ready(results)
      self.close()

  def close(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active = False
      logging.info("profiler: trace written to %s (open it with TensorBoard's profile plugin or Perfetto)",
                   self.directory)
