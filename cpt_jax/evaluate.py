"""Evaluate any checkpoint: `python -m cpt_jax.evaluate --workdir W [--step S] [--config C --config.data.…]`.

Prints the loss on each evaluation source (and bAbI accuracy when the target is bAbI) of a trained,
imported or exported-then-imported run, and writes them as JSON (`--out`, default W/eval_step<S>.json).
Without `--config` the run's own config.json says what to evaluate on; with one (e.g.
`configs/from_json.py:W/config.json`), `--config.data.base.path=…` and the like change the data, never the
model.
"""

from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from cpt_jax import build, checkpoint, config as config_lib, console, evaluation, host_memory, paths, sharding
from cpt_jax.data import sources
from cpt_jax.data.records import DataError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory whose checkpoint is evaluated.")
_STEP = flags.DEFINE_integer("step", -1, "Checkpoint step (-1: the latest).")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Config whose data.* fields say what to evaluate on "
                                          "(default: the run's own config.json).")
_OUT = flags.DEFINE_string("out", "", "JSON file to write (default: WORKDIR/eval_step<S>.json).")
_ROWS = flags.DEFINE_integer("eval_rows", 0, "Rows per evaluation source (0: the config's train.eval_rows).")


def main(argv):
  del argv
  console.setup_logging(None, "evaluate.log")
  if not _WORKDIR.value:
    console.fail("--workdir is required, e.g. --workdir runs/tiny")
  try:
    mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
    saved, bundle, params, tokenizer, step = build.load_run(_WORKDIR.value, None if _STEP.value < 0 else _STEP.value,
                                                            mesh)
    cfg = _CONFIG.value or saved
    with cfg.unlocked():
      cfg.model.update({k: saved.model[k] for k in saved.model})  # the checkpoint decides the model
      if _ROWS.value:
        cfg.train.eval_rows = _ROWS.value
    data_dir = sources.data_dir_of(cfg.data)
    evals, entropy = build.eval_sets(cfg, tokenizer, data_dir)
    evaluate = evaluation.Evaluator(bundle, mesh, evals, entropy, build.babi_eval_sets(cfg, data_dir), tokenizer)
    result = evaluate(params)
  except (DataError, checkpoint.CheckpointError, config_lib.ConfigError) as e:
    console.fail(str(e))
  out = _OUT.value or str(paths.path(_WORKDIR.value) / f"eval_step{step}.json")
  paths.write_text_atomic(out, json.dumps({"workdir": _WORKDIR.value, "step": step, **result}, indent=2))
  width = max(len(k) for k in result)
  for k, v in result.items():
    print(f"{k:<{width}}  {v:.4f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
  print(f"wrote {out}")


if __name__ == "__main__":
  host_memory.reexec_with_huge_pages()
  app.run(main, flags_parser=console.parse_flags)
