"""Elastic data order: a run stopped on 1 fake device resumes on 8 (1 process × 8, and 2 processes × 4) and
logs the same train/loss as an uninterrupted 1-device run: batch shards slice one global order of rows."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_multihost import STEPS, STOP, _check, _concurrently, _losses, _train, env  # noqa: E402,F401


def test_one_device_resumes_on_eight_with_the_same_losses(env):  # noqa: F811  # the fixture
  env, root = env
  reference, stopped = root / "reference_1x1", root / "stopped_1x1"
  ref_run, stop_run = _concurrently(lambda: _train(env, reference, 1, 1),
                                    lambda: _train(env, stopped, 1, 1, f"--config.train.stop_at_step={STOP}"))
  _check(ref_run, 0)
  _check(stop_run, 75)
  want = _losses(reference)
  assert sorted(want) == list(range(1, STEPS + 1))
  two_processes = root / "stopped_2x4"
  shutil.copytree(stopped, two_processes)
  # one after the other: beside a second heavy run, the two processes' first collective can miss Gloo's 30 s setup
  eight = _train(env, stopped, 1, 8)
  two = _train(env, two_processes, 2, 4)
  for run, workdir in ((eight, stopped), (two, two_processes)):
    _check(run, 0)
    assert "data order cannot carry over" not in run[0].stderr
    got = _losses(workdir)
    assert sorted(got) == list(range(1, STEPS + 1))
    deltas = {s: abs(got[s] - want[s]) for s in got}
    print(f"{workdir.name}: max |Δ train/loss| vs the uninterrupted 1-device run: {max(deltas.values()):.3g}")
    assert max(deltas.values()) <= 1e-5, (got, want)
