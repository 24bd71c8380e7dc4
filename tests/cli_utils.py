"""Helpers for tests that run the real CLI (`python -m cpt_jax.train`) in subprocesses: a shared environment
with a pre-trained tokenizer and JAX's persistent compilation cache (a warm start costs ~6 CPU-seconds), and
readers for metrics and checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONFIG = str(Path(__file__).parent / "configs" / "tiny.py")
REPO = str(Path(__file__).parent.parent)


def cli_env(root: Path, corpus_dir: Path, tokenizer: Path | None = None) -> dict[str, str]:
  """Environment for tests/configs/tiny.py runs: corpus, data dir, one tokenizer for all, compile cache.

  `tokenizer`: an existing one (e.g. an in-process run's, to compare losses with it); else one is trained."""
  from cpt_jax.data import sources  # pylint: disable=g-import-not-at-top
  from cpt_jax.data.tokenizer import train_tokenizer  # pylint: disable=g-import-not-at-top
  corpus = str(corpus_dir / "{split}_*.txt")
  tokenizer = tokenizer or root / "tokenizer.model"
  if not tokenizer.exists():
    src = sources._file_source(corpus, "train")  # pylint: disable=protected-access
    train_tokenizer(sources.iter_texts(src, 20_000_000), tokenizer, 400)
  return dict(os.environ, JAX_PLATFORMS="cpu", CPT_JAX_TEST_CORPUS=corpus, CPT_JAX_TEST_DATA=str(root / "data"),
              CPT_JAX_TEST_TOKENIZER=str(tokenizer), JAX_COMPILATION_CACHE_DIR=str(root / "xla_cache"),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
              PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def train_cmd(workdir, *overrides: str) -> list[str]:
  return [sys.executable, "-m", "cpt_jax.train", f"--config={CONFIG}", f"--workdir={workdir}", *overrides]


def run_cli(env, workdir, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
  return subprocess.run(train_cmd(workdir, *overrides), env=env, cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, check=False)


def train_losses(workdir) -> list[tuple[int, float]]:
  """(step, train/loss) in file order: a resumed run must not repeat or skip a step."""
  rows = [json.loads(line) for line in Path(workdir, "metrics.jsonl").read_text().splitlines() if line.strip()]
  return [(r["step"], r["train/loss"]) for r in rows if "train/loss" in r]


def error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("error:")]


def abstract_state(cfg, tokenizer_path):
  """The abstract train state (with shardings) of `cfg` on this process's devices, for restore checks."""
  from cpt_jax import build, optim, sharding  # pylint: disable=g-import-not-at-top
  from cpt_jax.data.tokenizer import Tokenizer  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh(cfg.mesh)
  bundle = build.model_bundle(build.model_config(cfg, Tokenizer(tokenizer_path)), mesh)
  tps = build.tokens_per_step(cfg)
  steps = max(1, -(-build.token_budget(cfg, bundle.num_params) // tps))
  abstract, shardings = build.state_shardings(bundle, optim.make_optimizer(cfg.opt, tps, steps), mesh)
  return build.sharded_abstract(abstract, shardings)


def unreadable_steps(checkpoint_dir, abstract) -> list[str]:
  """Every committed step directory, restored one by one: the ones that fail, with why."""
  from cpt_jax import checkpoint  # pylint: disable=g-import-not-at-top
  if not Path(checkpoint_dir).exists():
    return []
  ckpt = checkpoint.Checkpointer(str(checkpoint_dir), keep=1_000_000, async_save=False, read_only=True)
  bad = []
  try:
    for s in ckpt.all_steps():
      try:
        ckpt.restore(abstract, step=s)
      except Exception as e:  # pylint: disable=broad-except
        bad.append(f"{s}: {e}")
  finally:
    ckpt.close()
  return bad


def at_training_batch(monkeypatch, step: int, action) -> None:
  """Calls `action()` while an in-process run (loop.run) makes training step `step`'s batch.

  sharding.global_batch's calls: the eval sets' rows (placed once, when the evaluator is made), then one per
  training step."""
  from cpt_jax import evaluation, sharding  # pylint: disable=g-import-not-at-top
  calls = {"n": 0, "evals": None}
  real_batch, real_evaluator = sharding.global_batch, evaluation.Evaluator.__init__

  def batch(*args, **kwargs):
    calls["n"] += 1
    if calls["evals"] is not None and calls["n"] == calls["evals"] + step:
      action()
    return real_batch(*args, **kwargs)

  def evaluator_then_count(self, *args, **kwargs):
    real_evaluator(self, *args, **kwargs)
    calls["evals"] = calls["n"]

  monkeypatch.setattr(sharding, "global_batch", batch)
  monkeypatch.setattr(evaluation.Evaluator, "__init__", evaluator_then_count)


def tensorboard_steps(workdir, tag: str) -> list[int]:
  """The steps of `tag` that TensorBoard shows: event files read in the order they were written, a SessionLog
  START at step P hiding the earlier files' events at steps ≥ P (how TensorBoard purges a restarted run's)."""
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  shown: list[int] = []
  for path in sorted(Path(workdir, "tensorboard").glob("events.out.tfevents.*")):
    data, offset = path.read_bytes(), 0
    while offset < len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
      (length,) = struct.unpack_from("<Q", data, offset)
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 16 + length
      if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
        shown = [s for s in shown if s < event.step]
      shown += [event.step for v in event.summary.value if v.tag == tag]
  return shown
