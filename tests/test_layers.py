"""The two layouts of the blocks (model.scan_layers): the same training on a sharded mesh, the same decayed
parameters, and checkpoints that cross from one layout to the other (weights) or say why not (resume)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax import build, checkpoint as ckpt_lib, loop, model as model_lib, sharding


def test_scan_and_loop_layouts_train_alike_on_a_sharded_mesh():
  """2 AdamW steps of one model, vocabulary padded, on 8 fake devices (data 2 × fsdp 2 × tensor 2): the scan
  layout (with dots_saveable remat) gives the loop layout's losses and parameters, and decays the same ones."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, str(Path(__file__).with_name("layout_check.py")), "2,2,2"], env=env,
                       capture_output=True, text=True, timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  r = json.loads([s for s in out.stdout.splitlines() if s.startswith("RESULT ")][-1][len("RESULT "):])
  assert r["loop"][0] != r["loop"][-1]
  np.testing.assert_allclose(r["scan"], r["loop"], atol=1e-5, rtol=0)
  assert r["max_param_diff"] < 1e-5
  assert r["scan_decayed"] == r["loop_decayed"] == [
      "['layers']['attn']['w_out']", "['layers']['attn']['w_qkv']", "['layers']['mlp']['w_in']",
      "['layers']['mlp']['w_out']"]
  specs = r["scan_specs"]  # stacked: the layer axis replicated, the rest sharded as in the loop layout
  assert specs["['layers']['mlp']['w_in']"] == "P(None, 'fsdp', 'tensor')", specs


def _bundle(scan_layers: bool, mesh):
  cfg = model_lib.ModelConfig(vocab_size=50, max_len=8, num_layers=2, d_model=16, num_heads=2, scan_layers=scan_layers)
  return build.build_model(cfg, mesh, seed=0)


def test_checkpoints_cross_layouts_for_weights_and_name_the_flag_on_resume(tmp_path):
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  loop_bundle, loop_params = _bundle(False, mesh)
  scan_bundle, scan_params = _bundle(True, mesh)
  for name, params in (("loop", loop_params), ("scan", scan_params)):
    ckpt = ckpt_lib.Checkpointer(str(tmp_path / name), keep=1, async_save=False)
    ckpt.save(1, {"step": jnp.ones((), jnp.int32), "params": params}, {"state": 0}, force=True)
    ckpt.close()
  for saved, bundle, want in (("loop", scan_bundle, scan_params), ("scan", loop_bundle, loop_params)):
    ckpt = ckpt_lib.Checkpointer(str(tmp_path / saved), keep=1, read_only=True)
    target = build.sharded_abstract(bundle.abstract_params, bundle.param_shardings)
    step, params, _, _ = build.restore_weights(ckpt, target)  # what an adapt run does with init_from
    assert step == 1
    jax.tree.map(np.testing.assert_array_equal, params, want)
    assert jax.tree.map(lambda x: x.sharding, params) == bundle.param_shardings
    with pytest.raises(ckpt_lib.LayoutMismatch, match=f"--config.model.scan_layers={saved == 'scan'}"):
      ckpt.restore({"step": jax.ShapeDtypeStruct((), jnp.int32), "params": target})  # resuming a run
    ckpt.close()


def test_an_adapt_run_in_the_scan_layout_starts_from_a_loop_layout_run(tiny_config_factory, pretrained, tmp_path):
  """End to end: the start weights are converted (same base loss on the same rows as the pretraining run's
  last evaluation), the teacher samples self-generated replay with the stacked KV cache, KL is 0 at step 1."""
  pre_dir, pre_summary = pretrained
  cfg = tiny_config_factory(**{
      "stage": "adapt", "init_from": str(pre_dir), "model.scan_layers": True, "model.remat": "dots_saveable",
      "data.target.kind": "babi", "data.target.babi_stories": 8, "data.target.babi_tasks": "1",
      "train.total_tokens": 8 * 32 * 2, "train.babi_eval_examples": 8, "replay.ratio": 0.25, "replay.kind": "self",
      "replay.loss": "kl", "replay.semantics": "regularizer", "replay.chunk_sequences": 4})
  loop.run(cfg, str(tmp_path))
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  first_eval = next(r for r in rows if "eval/base/loss" in r)
  assert first_eval["step"] == 0 and "eval/babi/accuracy" in first_eval
  assert first_eval["eval/base/loss"] == pytest.approx(pre_summary["final"]["eval/base/loss"], abs=1e-5)
  assert next(r for r in rows if "train/kl" in r)["train/kl"] < 1e-5
