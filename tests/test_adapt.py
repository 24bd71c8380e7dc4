"""Adapt stage: weights from a pretraining run, fresh optimizer, frozen teacher; replay and KL in one step."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from cpt_jax import build, checkpoint, loop, metrics, optim, replay_dataset, sharding, step as step_lib
from cpt_jax.config import ConfigError
from cpt_jax.data.records import RecordSource
from cpt_jax.data.tokenizer import BOS
from cpt_jax.model import ModelConfig
from cpt_jax.objective import Objective


def _adapt_config(factory, pretrained_dir, **overrides):
  base = {"stage": "adapt", "init_from": str(pretrained_dir), "data.target.kind": "babi",
          "data.target.babi_stories": 8, "data.target.babi_tasks": "1,2,6", "opt.warmup_tokens": 0,
          "opt.lr": 3e-3, "train.total_tokens": 8 * 32 * 6, "train.babi_eval_examples": 12}
  base.update(overrides)
  return factory(**base)


def _rows(workdir, key):
  return [r for r in metrics.read_metrics(str(workdir)) if key in r]


def test_adapt_without_replay(tiny_config_factory, pretrained, tmp_path):
  pre_dir, pre_summary = pretrained
  summary = loop.run(_adapt_config(tiny_config_factory, pre_dir), str(tmp_path))
  evals = _rows(tmp_path, "eval/target/loss")
  assert evals[0]["step"] == 0 and evals[-1]["step"] == summary["steps"] == 6
  # the start weights are the pretrained ones: same base loss on the same validation rows
  assert evals[0]["eval/base/loss"] == pytest.approx(pre_summary["final"]["eval/base/loss"], abs=1e-6)
  assert evals[-1]["eval/target/loss"] < evals[0]["eval/target/loss"]
  assert evals[-1]["eval/base/forgetting"] == pytest.approx(
      evals[-1]["eval/base/loss"] - evals[0]["eval/base/loss"], abs=1e-6)
  assert 0.0 <= evals[-1]["eval/babi/accuracy"] <= 1.0 and "eval/babi/task_06/accuracy" in evals[-1]
  assert json.loads((tmp_path / "before.json").read_text())["eval/base/loss"] == evals[0]["eval/base/loss"]
  lrs = [r["train/lr"] for r in _rows(tmp_path, "train/lr")]
  assert lrs[0] == pytest.approx(3e-3)  # fresh optimizer and schedule: step 0, no warmup
  # bAbI examples are packed whole into rows: the padding is counted in tokens, not in scored tokens
  assert pre_summary["scored_tokens"] == pre_summary["tokens"]  # text rows: every position scored
  assert 0 < summary["scored_tokens"] < summary["tokens"]
  assert summary["scored_tokens"] == sum(r["train/scored_tokens"] for r in _rows(tmp_path, "train/scored_tokens"))


def test_adapt_with_self_replay_on_the_fly_and_kl(tiny_config_factory, pretrained, tmp_path):
  pre_dir, _ = pretrained
  cfg = _adapt_config(tiny_config_factory, pre_dir, **{"replay.ratio": 0.25, "replay.kind": "self",
                                                       "replay.loss": "kl", "replay.coeff": 2.0,
                                                       "replay.semantics": "regularizer",
                                                       "replay.chunk_sequences": 4})
  loop.run(cfg, str(tmp_path))
  train = _rows(tmp_path, "train/kl")
  assert len(train) == 6
  assert train[0]["train/kl"] < 1e-5  # student == teacher at the first step
  assert train[-1]["train/kl"] > 1e-4
  for r in train:
    assert r["train/loss"] == pytest.approx(r["train/target_loss"] + 2.0 * r["train/kl"], rel=1e-5)


def test_interrupted_adapt_run_resumes_with_the_same_command_from_the_same_start(tiny_config_factory, pretrained,
                                                                                  tmp_path, caplog):
  """The command's model fields differ from init_from's (which are adopted), and init_from saves a newer
  checkpoint while the run is stopped: the same command resumes, with the teacher of the step it started from."""
  pre_dir, _ = pretrained
  start = tmp_path / "start"
  shutil.copytree(pre_dir, start)
  first = checkpoint.committed_steps(str(start / "checkpoints"))[-1]
  overrides = {"model.d_model": 32, "model.num_heads": 2, "replay.ratio": 0.25, "replay.kind": "real",
               "replay.loss": "kl", "replay.semantics": "regularizer"}
  workdir = tmp_path / "adapt"
  with pytest.raises(loop.Preempted):
    loop.run(_adapt_config(tiny_config_factory, start, **overrides, **{"train.stop_at_step": 3}), str(workdir))
  assert json.loads((workdir / "config.json").read_text())["init_step"] == first
  shutil.copytree(start / "checkpoints" / str(first), start / "checkpoints" / str(first + 100))  # init_from moved on
  (start / "checkpoints" / str(first)).rename(tmp_path / "aside")  # ... and dropped the step this run started from
  with pytest.raises(ConfigError, match=f"started from its step {first} .* no longer there"):
    loop.run(_adapt_config(tiny_config_factory, start, **overrides), str(workdir))
  (tmp_path / "aside").rename(start / "checkpoints" / str(first))
  caplog.set_level("INFO")
  summary = loop.run(_adapt_config(tiny_config_factory, start, **overrides), str(workdir))
  assert summary["steps"] == 6 and "resumed from step 3" in caplog.text
  assert f"start weights from step {first} of" in caplog.text and f"step {first + 100} of" not in caplog.text
  assert [s for s, _ in _rows_steps(workdir)] == list(range(1, 7))


def _rows_steps(workdir):
  return [(r["step"], r["train/loss"]) for r in _rows(workdir, "train/loss")]


def test_generated_replay_dataset_is_deterministic_and_resumable(pretrained, tmp_path):
  pre_dir, _ = pretrained
  path = replay_dataset.generate_replay_dataset(str(pre_dir), str(tmp_path / "a"), num_tokens=32 * 10, seed=5, batch=4)
  rows = RecordSource(path, "train")
  assert len(rows) == 10 and all(len(rows[i]["tokens"]) == 33 and rows[i]["tokens"][0] == BOS for i in range(10))
  # interrupted after 2 chunks: the rerun completes to the identical dataset
  partial = tmp_path / "b"
  replay_dataset.generate_replay_dataset(str(pre_dir), str(partial), num_tokens=32 * 10, seed=5, batch=4)
  shutil.rmtree(partial / "self_replay")
  (partial / "chunks" / "chunk_000002.npy").unlink()
  again = RecordSource(replay_dataset.generate_replay_dataset(str(pre_dir), str(partial), 32 * 10, seed=5, batch=4),
                       "train")
  assert sorted(tuple(again[i]["tokens"]) for i in range(10)) == sorted(tuple(rows[i]["tokens"]) for i in range(10))
  # the command line with the CPU split into 2 devices, each decoding 2 of the 4 rows: the same dataset (this
  # model's logits round alike at 2 and 4 rows; a larger one's can differ in the last bit)
  cmd = [sys.executable, "-m", "cpt_jax.replay_dataset", "--workdir", str(pre_dir), "--out", str(tmp_path / "c"),
         "--tokens", str(32 * 10), "--seed", "5", "--batch", "4", "--cpu-devices", "2"]
  out = subprocess.run(cmd, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=300,
                       check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "on 2 cpu device(s)" in out.stderr
  assert "absl" not in out.stderr and "orbax" in (tmp_path / "c" / "generate_replay.log").read_text().lower()
  split = RecordSource(out.stdout.strip().splitlines()[-1], "train")
  assert [tuple(split[i]["tokens"]) for i in range(10)] == [tuple(rows[i]["tokens"]) for i in range(10)]
  bad = subprocess.run(cmd[:-1] + ["3"], capture_output=True, text=True, timeout=300, check=False)
  assert bad.returncode == 2 and bad.stderr.startswith("error: --cpu-devices 3") and "--batch 4" in bad.stderr
  missing = subprocess.run(cmd[:4] + [str(tmp_path / "nothing"), "--out", str(tmp_path / "d")] + cmd[7:],
                           capture_output=True, text=True, timeout=300, check=False)
  assert missing.returncode == 2 and [line for line in missing.stderr.splitlines() if line.startswith("error:")] == [
      f"error: {tmp_path / 'nothing'}/config.json not found: is {tmp_path / 'nothing'} the workdir of a cpt_jax run?"]


def test_adapt_with_real_replay_ntp_and_samples_dataset(tiny_config_factory, pretrained, tmp_path):
  pre_dir, _ = pretrained
  samples = replay_dataset.generate_replay_dataset(str(pre_dir), str(tmp_path / "s"), num_tokens=32 * 8, seed=1,
                                                   batch=8)
  for kind, extra in (("real", {}), ("self", {"replay.samples": str(samples)})):
    cfg = _adapt_config(tiny_config_factory, pre_dir, **{"replay.ratio": 0.5, "replay.kind": kind,
                                                         "replay.loss": "ntp", "train.total_tokens": 8 * 32 * 3,
                                                         **extra})
    summary = loop.run(cfg, str(tmp_path / kind))
    assert summary["replay_kind"] == kind
    assert all("train/replay_ntp" in r for r in _rows(tmp_path / kind, "train/loss"))


def test_kl_step_is_one_executable_with_the_teacher_inside():
  from cpt_jax.config import default_config
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  bundle, params = build.build_model(ModelConfig(vocab_size=64, max_len=8, num_layers=2, d_model=16, num_heads=2),
                                     mesh, 0)
  opt = default_config().opt
  tx = optim.make_optimizer(opt, 64, 10)
  _, shardings = build.state_shardings(bundle, tx, mesh)
  dots = {}
  for name, replay_rows in (("plain", 0), ("kl", 2)):
    spec = Objective("regularizer" if replay_rows else "none", batch_shards=1, target_rows_per_shard=8 - replay_rows,
                     replay_rows_per_shard=replay_rows, replay_loss="kl")
    fn = step_lib.make_train_step(bundle.graphdef, tx, spec, optim.lr_schedule(opt, 64, 10), shardings)
    state = jax.jit(lambda p: step_lib.init_state(p, tx), out_shardings=shardings)(params)
    batch = {"inputs": np.ones((8, 8), np.int32), "targets": np.ones((8, 8), np.int32),
             "loss_mask": np.ones((8, 8), np.float32)}
    teacher = build.frozen_copy(params, "bfloat16") if replay_rows else None
    for _ in range(3):
      state, _ = fn(state, batch, teacher, jax.random.key(0))
    assert fn._cache_size() == 1  # one compiled executable serves every step
    hlo = fn.lower(state, batch, teacher, jax.random.key(0)).compile().as_text()
    dots[name] = hlo.count(" dot(")
  # the teacher's forward pass (2 layers × 4 matmuls + head) is compiled into the same executable
  assert dots["kl"] >= dots["plain"] + 9, dots
