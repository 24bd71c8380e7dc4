"""Compile seconds of the plain train step: by depth and parameter layout, and a relaunch with the cache.

    python tools/bench_compile.py [--markdown] [--reps 3]

At 12 and 48 layers of the reference shape's widths (tools/bench.py REFERENCE), loop vs scan layout, interleaved;
and a first launch vs a relaunch sharing a persistent compilation cache (two fresh processes, as a preempted
trainer relaunches). Figures: docs/performance.md, "Scan over layers and remat" and "Compilation cache".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

import bench  # tools/bench.py beside this file: its config loading, reference shape and median

import jax
import ml_collections
import numpy as np

from cpt_jax import build, compile_cache, optim, sharding
from cpt_jax import model as model_lib
from cpt_jax import objective as objective_lib
from cpt_jax import step as step_lib

COMPILE_DEPTHS = (12, 48)
CACHE_CONFIGS = ("reference", "configs/gpt2.py:124m")


def compile_seconds(cfg) -> float:
  """Seconds to lower and compile the plain train step of `cfg` on abstract inputs (nothing is allocated)."""
  mesh = sharding.make_mesh(cfg.mesh)
  model_cfg = model_lib.ModelConfig.from_config(cfg.model, cfg.data.vocab_size)
  bundle = build.model_bundle(model_cfg, mesh)
  tokens_per_step = build.tokens_per_step(cfg)
  optimizer = optim.make_optimizer(cfg.opt, tokens_per_step, 10_000)
  abstract_state, shardings = build.state_shardings(bundle, optimizer, mesh)
  objective = objective_lib.resolve(cfg.replay, "pretrain", cfg.data.batch_size, sharding.batch_shards(mesh))
  train_step = step_lib.make_train_step(bundle.graphdef, optimizer, objective,
                                        optim.lr_schedule(cfg.opt, tokens_per_step, 10_000), shardings)
  shape, rows = (cfg.data.batch_size, cfg.model.max_len), sharding.batch_sharding(mesh)
  batch = {k: jax.ShapeDtypeStruct(shape, np.float32 if k == "loss_mask" else np.int32, sharding=rows)
           for k in objective_lib.TEXT_KEYS}
  t = time.perf_counter()
  train_step.lower(build.sharded_abstract(abstract_state, shardings), batch, None, jax.random.key(0)).compile()
  return time.perf_counter() - t


def _cache_config(name: str):
  """"reference": the CPU reference shape; else a config path (a large one gets the plumbing batch on a CPU)."""
  if name == "reference":
    cfg = bench.load_config(str(bench.ROOT / "configs" / "pretrain_tiny.py"), bench.REFERENCE)
  else:
    cfg = bench.load_config(str(bench.ROOT / name), {})
  if bench.plumbing_only(cfg):
    cfg.update_from_flattened_dict(bench.PLUMBING)
  return cfg


def compile_once(name: str, cache_dir: str) -> float:
  """One launch, as the trainer makes it: compile_cache.enable first, then the train step's compile."""
  compile_cache.enable(ml_collections.ConfigDict({"compile_cache": True, "compile_cache_dir": cache_dir}))
  return compile_seconds(_cache_config(name))


def compile_study(reps: int) -> dict:
  """Compile seconds of the plain train step: at 12 and 48 layers (the reference shape's widths), loop vs scan
  layout, interleaved, median of `reps`; and a first launch vs a relaunch with the compilation cache (two fresh
  processes sharing a fresh cache directory, `reps` times)."""
  jax.config.update("jax_enable_compilation_cache", False)  # every compile here is a real one
  depth = {f"{layout}_{n}": [] for n in COMPILE_DEPTHS for layout in ("loop", "scan")}
  for _ in range(reps):
    for n in COMPILE_DEPTHS:
      for layout in ("loop", "scan"):
        cfg = bench.load_config(str(bench.ROOT / "configs" / "pretrain_tiny.py"),
                          {**bench.REFERENCE, "model.num_layers": n, "model.scan_layers": layout == "scan"})
        depth[f"{layout}_{n}"].append(compile_seconds(cfg))
        logging.info("compile: %s layers %s: %.1f s", n, layout, depth[f"{layout}_{n}"][-1])
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "CPT_JAX_COMPILE_CACHE")}
  cache = {}
  for name in CACHE_CONFIGS:
    first, again = [], []
    for _ in range(reps):
      with tempfile.TemporaryDirectory() as cache_dir:
        for times in (first, again):
          out = subprocess.run([sys.executable, __file__, "--once", name, "--cache-dir", cache_dir], env=env,
                               capture_output=True, text=True, timeout=1800, check=True)
          times.append(float(out.stdout.strip().splitlines()[-1]))
      logging.info("compile: %s first launch %.1f s, relaunch %.1f s", name, first[-1], again[-1])
    cache[name] = {"first_launch": bench.median(first), "relaunch": bench.median(again), "first_all": first,
                   "relaunch_all": again}
  return {"depth_seconds": {k: bench.median(v) for k, v in depth.items()}, "depth_all": depth, "cache": cache,
          "reps": reps, "shape": bench.REFERENCE,
          "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} ({os.cpu_count()} host cores)"}


def compile_markdown(r: dict) -> str:
  d = r["depth_seconds"]
  lines = [f"device: {r['device']}; medians of {r['reps']}", "",
           "| layers | loop layout (s) | scan layout (s) |", "|---|---|---|"]
  lines += [f"| {n} | {d[f'loop_{n}']:.1f} | {d[f'scan_{n}']:.1f} |" for n in COMPILE_DEPTHS]
  lines += ["", "| config | first launch (s) | relaunch, cache warm (s) |", "|---|---|---|"]
  lines += [f"| {name} | {c['first_launch']:.1f} | {c['relaunch']:.2f} |" for name, c in r["cache"].items()]
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--markdown", action="store_true", help="print tables instead of JSON")
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--once", help=argparse.SUPPRESS)  # the relaunch measurement's subprocess: one launch
  p.add_argument("--cache-dir", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.once:
    print(compile_once(args.once, args.cache_dir))
    return 0
  r = compile_study(args.reps)
  print(compile_markdown(r) if args.markdown else json.dumps(r, indent=1))
  return 0


if __name__ == "__main__":
  logging.basicConfig(level=logging.INFO, format="%(message)s")
  sys.exit(main())
