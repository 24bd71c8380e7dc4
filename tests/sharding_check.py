"""Runs a few train steps of a tiny model on a given mesh and prints the losses as JSON.

Run in its own process, with XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX starts:
  python tests/sharding_check.py data,fsdp,tensor [data,fsdp,tensor ...]
"""

import json
import sys

import jax
import numpy as np

jax.config.update("jax_default_matmul_precision", "highest")

from cpt_jax import build, optim, sharding, step as step_lib  # noqa: E402
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
  out = []
  for _ in range(steps):
    target = rng.integers(0, 128, (batch - replay_rows, 17), dtype=np.int32)
    replay = rng.integers(0, 128, (replay_rows, 17), dtype=np.int32)
    tokens = _layout(target, replay, shards)
    arrays = sharding.global_batch({"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                                    "loss_mask": np.ones((batch, 16), np.float32)}, mesh)
    state, m = train_step(state, arrays, teacher, jax.random.key(0))
    out.append(float(m["loss"]))
  # every parameter must be laid out as the rules say (created sharded, kept sharded)
  leaves = jax.tree_util.tree_leaves_with_path(state["params"])
  specs = {jax.tree_util.keystr(p): str(x.sharding.spec) for p, x in leaves}
  return out, specs


if __name__ == "__main__":
  # args: "<replay_rows>:<data>,<fsdp>,<tensor>" ...
  result = {}
  for arg in sys.argv[1:]:
    replay, shape = arg.split(":")
    result[arg] = losses_on(tuple(int(x) for x in shape.split(",")), replay_rows=int(replay))
  print("RESULT " + json.dumps(result))
