"""Trains the same tiny model in the loop and in the scan layout of its blocks on a sharded mesh; prints, as
JSON, each layout's losses and which parameters AdamW decays (named in the loop layout).

Run in its own process, with XLA_FLAGS=--xla_force_host_platform_device_count=8 set before JAX starts:
  python tests/layout_check.py data,fsdp,tensor
"""

import json
import re
import sys

import jax
import numpy as np

jax.config.update("jax_default_matmul_precision", "highest")

from cpt_jax import model as model_lib, optim, param_layout, sharding  # noqa: E402
from cpt_jax.objective import Objective  # noqa: E402
from sharding_check import train_setup  # noqa: E402  # same directory: run as a script


def train(mesh, scan_layers: bool, steps: int = 2, batch: int = 16):
  cfg = model_lib.ModelConfig(vocab_size=100, vocab_multiple=64, max_len=16, num_layers=2, d_model=32, num_heads=4,
                              scan_layers=scan_layers, remat="dots_saveable" if scan_layers else "none")
  objective = Objective("none", batch_shards=sharding.batch_shards(mesh), target_rows_per_shard=batch //
                        sharding.batch_shards(mesh), replay_rows_per_shard=0)
  state, train_step = train_setup(cfg, mesh, objective, steps, batch)
  rng = np.random.default_rng(0)
  losses = []
  for _ in range(steps):
    tokens = rng.integers(0, 100, (batch, 17), dtype=np.int32)
    arrays = sharding.global_batch({"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                                    "loss_mask": np.ones((batch, 16), np.float32)}, mesh)
    state, m = train_step(state, arrays, None, jax.random.key(0))
    losses.append(float(m["loss"]))
  mask = optim.weight_decay_mask(state["params"], decay_embeddings=False)
  decayed = sorted({re.sub(r"\['blocks'\]\[\d+\]", "['layers']", jax.tree_util.keystr(p))  # per-layer names
                    for p, d in jax.tree_util.tree_leaves_with_path(mask) if d})
  params = jax.device_get(param_layout.convert_layout(state["params"], False))
  leaves = jax.tree_util.tree_leaves_with_path(state["params"])
  specs = {jax.tree_util.keystr(p): str(x.sharding.spec) for p, x in leaves}
  return losses, decayed, params, specs


if __name__ == "__main__":
  data, fsdp, tensor = (int(x) for x in sys.argv[1].split(","))
  mesh = sharding.make_mesh({"data": data, "fsdp": fsdp, "tensor": tensor}, jax.devices()[:data * fsdp * tensor])
  loop_losses, loop_decayed, loop_params, _ = train(mesh, scan_layers=False)
  scan_losses, scan_decayed, scan_params, scan_specs = train(mesh, scan_layers=True)
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(loop_params), jax.tree.leaves(scan_params),
                                                         strict=True))
  print("RESULT " + json.dumps({"loop": loop_losses, "scan": scan_losses, "loop_decayed": loop_decayed,
                                "scan_decayed": scan_decayed, "max_param_diff": diff, "scan_specs": scan_specs}))
