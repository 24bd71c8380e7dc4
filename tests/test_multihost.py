"""Multi-process training on one machine: 2 processes × 4 fake CPU devices (jax.distributed on 127.0.0.1)
give the same losses as 1 process × 8 devices, and their checkpoint resumes in 1 process and on 4 devices with
another mesh (parameters resharded, 4 batch shards instead of 8): the same losses."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import threading
from pathlib import Path

import pytest

from cpt_jax.data.tokenizer import train_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
import multihost_check  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position
from conftest import synthetic_document  # noqa: E402  # pylint: disable=g-import-not-at-top,wrong-import-position

CONFIG = str(Path(__file__).parent / "configs" / "multihost_tiny.py")
STEPS, STOP = 6, 3


def _losses(workdir) -> dict[int, float]:
  rows = [json.loads(line) for line in Path(workdir, "metrics.jsonl").read_text().splitlines() if line.strip()]
  return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def _check(results, *ok_codes):
  for i, r in enumerate(results):
    assert r.returncode in ok_codes, f"process {i} exited {r.returncode}:\n{r.stderr[-3000:]}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp("multihost")
  corpus = root / "corpus"
  corpus.mkdir()
  rng = random.Random(0)
  docs = {}
  for split, n in (("train", 150), ("validation", 12)):
    for i in range(n):
      docs[f"{split}_{i:03d}.txt"] = synthetic_document(rng, 40)
      (corpus / f"{split}_{i:03d}.txt").write_text(docs[f"{split}_{i:03d}.txt"])
  # One tokenizer for all runs, made here, so that concurrent runs never train it at the same time.
  tokenizer = root / "tokenizer.model"
  train_tokenizer([t for k, t in sorted(docs.items()) if k.startswith("train")], tokenizer, 400)
  # The runs share compiled programs where their topologies match (1 × 8 devices), through JAX's cache.
  return dict(os.environ, CPT_JAX_TEST_CORPUS=str(corpus / "{split}_*.txt"), CPT_JAX_TEST_DATA=str(root / "data"),
              CPT_JAX_TEST_TOKENIZER=str(tokenizer), JAX_COMPILATION_CACHE_DIR=str(root / "xla_cache"),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0"), root


def _train(env, workdir, processes, devices, *extra):
  return multihost_check.launch([f"--config={CONFIG}", f"--workdir={workdir}", *extra], processes, devices, env)


def _concurrently(*calls):
  """Runs the calls (each starts its own processes) at the same time; returns their results in order."""
  out = [None] * len(calls)

  def run(i):
    out[i] = calls[i]()

  threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return out


def test_two_processes_match_one_and_resume_anywhere(env):
  env, root = env
  single, multi = root / "single", root / "multi"
  single_run, multi_run = _concurrently(lambda: _train(env, single, 1, 8),
                                        lambda: _train(env, multi, 2, 4, f"--config.train.stop_at_step={STOP}"))
  _check(single_run, 0)
  _check(multi_run, 75)
  want, got = _losses(single), _losses(multi)
  assert sorted(want) == list(range(1, STEPS + 1)) and sorted(got) == list(range(1, STOP + 1))
  assert max(abs(got[s] - want[s]) for s in got) <= 1e-6, (got, want)

  # The 2-process checkpoint (8 batch shards) resumes in 1 process × 8 devices: exactly the same batches.
  moved = root / "moved"
  shutil.copytree(multi, moved)
  # ... and on 1 process × 4 devices, mesh data=2 × fsdp=2: parameters and moments are resharded by Orbax;
  # 4 batch shards instead of 8 slice the same global batches.
  resumed, moved_run = _concurrently(
      lambda: _train(env, multi, 1, 8),
      lambda: _train(env, moved, 1, 4, "--config.mesh.data=2", "--config.mesh.fsdp=2"))
  _check(resumed, 0)
  got = _losses(multi)
  assert sorted(got) == list(range(1, STEPS + 1))
  deltas = {s: abs(got[s] - want[s]) for s in got}
  print(f"max |Δloss| over {STEPS} steps (2×4 then resumed 1×8 vs 1×8): {max(deltas.values()):.3g}")
  assert max(deltas.values()) <= 1e-6, (got, want)
  assert "data order cannot carry over" not in resumed[0].stderr

  _check(moved_run, 0)
  err = moved_run[0].stderr
  assert "data order cannot carry over" not in err, err[-3000:]
  moved_losses = _losses(moved)
  assert sorted(moved_losses) == list(range(1, STEPS + 1))
  # 4 batch shards slice the same global order of rows: the uninterrupted run's losses
  assert max(abs(moved_losses[s] - want[s]) for s in moved_losses) <= 1e-5, (moved_losses, want)
