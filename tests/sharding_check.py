"""Runs a few train steps of a tiny model on a given mesh and prints the losses as JSON; or, for
"sample:<mesh>", samples and greedy answers of a tiny model on that mesh.

Run in its own process, with XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX starts:
  python tests/sharding_check.py <replay rows>:data,fsdp,tensor [sample:data,fsdp,tensor ...]
"""

import json
import re
import sys

import jax
import numpy as np

jax.config.update("jax_default_matmul_precision", "highest")

from cpt_jax import build, optim, sampling, sharding, step as step_lib  # noqa: E402
from cpt_jax.config import default_config  # noqa: E402
from cpt_jax.model import ModelConfig  # noqa: E402
from cpt_jax.objective import Objective  # noqa: E402


def _layout(target, replay, shards):
  """Global batch in the step's layout: each shard's target rows, then its replay rows."""
  t, r = np.split(target, shards), np.split(replay, shards)
  return np.concatenate([np.concatenate([a, b]) for a, b in zip(t, r)])


def train_setup(cfg: ModelConfig, mesh, objective: Objective, steps: int, batch: int):
  """(initial train state, compiled train step) of a tiny model on `mesh`, no warmup, 16-token rows."""
  bundle, params = build.build_model(cfg, mesh, seed=0)
  opt_cfg = default_config().opt
  opt_cfg.warmup_tokens = 0
  tx = optim.make_optimizer(opt_cfg, batch * 16, steps)
  _, shardings = build.state_shardings(bundle, tx, mesh)
  state = jax.jit(lambda p: step_lib.init_state(p, tx), out_shardings=shardings)(params)
  train_step = step_lib.make_train_step(bundle.graphdef, tx, objective, optim.lr_schedule(opt_cfg, batch * 16, steps),
                                        shardings)
  return state, train_step


def losses_on(mesh_shape, steps=4, replay_rows=0, batch=16):
  data, fsdp, tensor = mesh_shape
  n = data * fsdp * tensor
  mesh = sharding.make_mesh({"data": data, "fsdp": fsdp, "tensor": tensor}, jax.devices()[:n])
  cfg = ModelConfig(vocab_size=128, max_len=16, num_layers=2, d_model=32, num_heads=4, mlp_ratio=4)
  shards = sharding.batch_shards(mesh)
  spec = Objective("regularizer" if replay_rows else "none", batch_shards=shards,
                   target_rows_per_shard=(batch - replay_rows) // shards, replay_rows_per_shard=replay_rows // shards,
                   replay_loss="kl", coeff=0.5)
  state, train_step = train_setup(cfg, mesh, spec, steps, batch)
  teacher = jax.tree.map(lambda x: x * 1.01, state["params"]) if replay_rows else None
  rng = np.random.default_rng(0)
  out, compiled, hlo = [], None, {}
  for _ in range(steps):
    target = rng.integers(0, 128, (batch - replay_rows, 17), dtype=np.int32)
    replay = rng.integers(0, 128, (replay_rows, 17), dtype=np.int32)
    tokens = _layout(target, replay, shards)
    arrays = sharding.global_batch({"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                                    "loss_mask": np.ones((batch, 16), np.float32)}, mesh)
    if compiled is None:  # the executable the steps run is the one whose HLO is read below
      compiled = train_step.lower(state, arrays, teacher, jax.random.key(0)).compile()
      hlo["train"] = compiled.as_text()
    state, m = compiled(state, arrays, teacher, jax.random.key(0))
    out.append(float(m["loss"]))
  # every parameter must be laid out as the rules say (created sharded, kept sharded)
  leaves = jax.tree_util.tree_leaves_with_path(state["params"])
  specs = {jax.tree_util.keystr(p): str(x.sharding.spec) for p, x in leaves}
  # rows of the attention scores one device computes in the compiled steps: [rows, heads, 16, 16] dense, or
  # [rows, heads, 4, 4 … 16] for blocked attention's 4 query blocks
  if sharding.batch_shards(mesh) > 1:  # the eval step's rows per device matter (and are read) on split batches only
    eval_step = step_lib.make_eval_step(build.model_bundle(cfg, mesh).graphdef, mesh)
    eval_batch = {**arrays, "loss_mask": arrays["loss_mask"][:, None]}
    hlo["eval"] = eval_step.lower(state["params"], eval_batch).compile().as_text()
  scores = re.compile(rf"f32\[(\d+),{4 // tensor},(?:4|16),(?:4|8|12|16)\]")  # [rows, heads on a device, q, k]
  score_rows = {k: sorted({int(r) for r in scores.findall(text)}) for k, text in hlo.items()}
  return out, specs, score_rows


def samples_on(mesh_shape, batch=8):
  """(sampled tokens, greedy answers, the row counts of the token arrays one device computes, collectives in the
  decode loops) of a tiny model built on the mesh."""
  data, fsdp, tensor = mesh_shape
  mesh = sharding.make_mesh({"data": data, "fsdp": fsdp, "tensor": tensor}, jax.devices()[:data * fsdp * tensor])
  cfg = ModelConfig(vocab_size=128, max_len=48, num_layers=2, d_model=32, num_heads=4, mlp_ratio=4)
  bundle, params = build.build_model(cfg, mesh, seed=0)
  params = jax.tree.map(lambda x: x * 4, params)  # sharper distributions: samples that depend on the weights
  sampler = sampling.make_sampler(bundle.graphdef, cfg, batch, length=40)
  tokens = sampler(params, jax.random.key(5))
  hlo = sampler.lower(params, jax.random.key(5)).compile().as_text()  # per-device shapes
  rows_per_device = [r for r in range(1, batch + 1) if f"s32[{r},41]" in hlo]
  loop_bodies, computation, loop_collectives = set(re.findall(r"body=%([\w.]+)", hlo)), None, 0
  for line in hlo.splitlines():  # collectives inside the decode loops run at every token
    start = re.match(r"^%?([\w.]+) .*\{$", line)
    computation = start.group(1) if start else computation
    loop_collectives += computation in loop_bodies and bool(re.search(r"all-(gather|reduce|to-all)\(", line))

  class Tok:  # ids as text, so the check needs no tokenizer model
    bos_id, eos_id, pad_id = 1, 2, 0
    encode = staticmethod(lambda text: [int(t) for t in text.split()])
    decode = staticmethod(lambda ids: " ".join(map(str, ids)))

  prompts = [" ".join(str(3 + (7 * i + j) % 120) for j in range(1 + i)) for i in range(batch)]
  answers = sampling.GreedyDecoder(bundle.graphdef, cfg, params, Tok(), batch_size=batch, max_new_tokens=6)(prompts)
  return np.asarray(tokens).tolist(), answers, rows_per_device, loop_collectives


if __name__ == "__main__":
  # args: "<replay_rows>:<data>,<fsdp>,<tensor>" ...
  result = {}
  for arg in sys.argv[1:]:
    kind, shape = arg.split(":")
    mesh_shape = tuple(int(x) for x in shape.split(","))
    result[arg] = samples_on(mesh_shape) if kind == "sample" else losses_on(mesh_shape, replay_rows=int(kind))
  print("RESULT " + json.dumps(result))
