"""End-to-end runs of the loop on the tiny corpus: learning, exact resume, divergence handling."""

import json
import time

import pytest

from cpt_jax import loop, metrics


def _train_losses(workdir):
  rows = [r for r in metrics.read_metrics(str(workdir)) if "train/loss" in r]
  return {r["step"]: r["train/loss"] for r in rows}


@pytest.fixture(scope="module")
def uninterrupted(pretrained):
  return pretrained


def test_run_learns_and_writes_contract(uninterrupted):
  workdir, summary = uninterrupted
  rows = metrics.read_metrics(str(workdir))
  evals = [r for r in rows if "eval/base/loss" in r]
  assert evals[0]["step"] == 0 and evals[-1]["step"] == summary["steps"] == 20
  assert evals[-1]["eval/base/loss"] < evals[0]["eval/base/loss"] - 1.0
  assert evals[-1]["eval/base/loss"] < evals[-1]["eval/base/unigram_entropy"]
  assert all("tokens" in r and "step" in r for r in rows)
  saved = json.loads((workdir / "summary.json").read_text())
  assert saved["params"] == summary["params"] > 0 and saved["tokens"] == 20 * 8 * 32
  assert any("train/tokens_per_sec" in r and r["train/mfu"] > 0 for r in rows)


def test_resume_is_exact(uninterrupted, tiny_config_factory, tmp_path):
  full_dir, _ = uninterrupted
  # stop at step 8, which is also a regular checkpoint step (every 4): saved once, not twice
  t0 = time.time()
  with pytest.raises(loop.Preempted):
    loop.run(tiny_config_factory(**{"train.stop_at_step": 8}), str(tmp_path))
  t1 = time.time()
  first = _train_losses(tmp_path)
  assert max(first) == 8
  summary = loop.run(tiny_config_factory(**{"train.stop_at_step": 8}), str(tmp_path))  # same command again
  t2 = time.time()
  # the run's wall time spans both processes (the first one's up to its checkpoint), not the last one alone
  assert 1.2 * (t2 - t1) < summary["wall_seconds"] <= t2 - t0
  resumed, want = _train_losses(tmp_path), _train_losses(full_dir)
  assert sorted(resumed) == sorted(want) == list(range(1, 21))
  assert [resumed[s] for s in sorted(resumed)] == [want[s] for s in sorted(want)]  # bit-for-bit


def test_nan_stops_with_clear_message_and_keeps_checkpoints(tiny_config_factory, tmp_path):
  with pytest.raises(loop.TrainingDiverged, match=r"non-finite .* at step \d+"):
    loop.run(tiny_config_factory(**{"opt.lr": 1e30, "opt.warmup_tokens": 0, "opt.clip_norm": 0.0}), str(tmp_path))


def test_nan_batches_can_be_skipped(tiny_config_factory, tmp_path):
  cfg = tiny_config_factory(**{"opt.lr": 1e30, "opt.warmup_tokens": 0, "opt.clip_norm": 0.0,
                               "train.max_nonfinite_skips": 100, "train.total_tokens": 8 * 32 * 3})
  summary = loop.run(cfg, str(tmp_path))
  assert summary["steps"] == 3
