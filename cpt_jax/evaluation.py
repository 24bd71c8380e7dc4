"""Evaluation of a model's parameters on a run's evaluation sets: loss per source, bAbI accuracy.

The training loop calls it at every evaluation; `python -m cpt_jax.evaluate` calls it on any checkpoint
(trained, imported or exported alike). Losses are sums over scored tokens divided by their count, so rows
padded to fill the batch shards change nothing.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from cpt_jax import sharding, step as step_lib
from cpt_jax.data.babi.score import score as babi_score
from cpt_jax.sampling import GreedyDecoder


class Evaluator:

  def __init__(self, bundle, mesh, evals: dict[str, dict[str, np.ndarray]], entropy: dict[str, float],
               babi_examples: list[dict], tokenizer):
    self._bundle, self._entropy = bundle, entropy
    self._babi_examples, self._tokenizer = babi_examples, tokenizer
    self._step = step_lib.make_eval_step(bundle.graphdef)
    shards = sharding.batch_shards(mesh)  # the eval rows never change: padded and placed on the devices once
    self._batches = {name: sharding.global_batch(pad_rows(rows, shards), mesh) for name, rows in evals.items()}

  def __call__(self, params: Any) -> dict[str, float]:
    out = dict(self._entropy)
    for name, batch in self._batches.items():
      nll, count = jax.device_get(self._step(params, batch))
      out[f"eval/{name}/loss"] = float(nll / max(count, 1.0))
    if self._babi_examples:
      out.update(babi_metrics(self._babi_examples, self._bundle, params, self._tokenizer))
    return out


def babi_metrics(examples, bundle, params, tokenizer) -> dict[str, float]:
  """Exact-match accuracy of greedy answers, per task and mean (`eval/babi/...`)."""
  decoder = GreedyDecoder(bundle.graphdef, bundle.cfg, params, tokenizer, batch_size=64, max_new_tokens=8)
  result = babi_score(examples, decoder, batch_size=64)
  out = {"eval/babi/accuracy": result["mean"], "eval/babi/tasks_passed": result["num_passed"],
         "eval/babi/examples": len(examples), "eval/babi/majority_baseline": result["majority_baseline"]}
  out.update({f"eval/babi/{k}/accuracy": v for k, v in result.items() if k.startswith("task_")})
  return out


def pad_rows(rows: dict[str, np.ndarray], shards: int) -> dict[str, np.ndarray]:
  """Eval rows padded (with loss_mask 0) to a multiple of the batch shards, this process's share."""
  n = len(rows["inputs"])
  total = -(-n // shards) * shards
  out = {k: np.concatenate([v, np.zeros((total - n,) + v.shape[1:], v.dtype)]) if total > n else v
         for k, v in rows.items()}
  per_proc = total // jax.process_count()
  return {k: v[jax.process_index() * per_proc:(jax.process_index() + 1) * per_proc] for k, v in out.items()}
