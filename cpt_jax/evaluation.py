"""Evaluation of a model's parameters on a run's evaluation sets: loss per source, bAbI accuracy, in-context
copying (`eval/copy/gain`, `eval/copy_text/gain`).

The training loop calls it at every evaluation; `python -m cpt_jax.evaluate` calls it on any checkpoint
(trained, imported or exported alike). Losses are sums over scored tokens divided by their count, so rows
padded to fill the batch shards change nothing.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from cpt_jax import sharding, step as step_lib
from cpt_jax.data import copy_probe, pipeline
from cpt_jax.data.babi.score import majority_baseline, score as babi_score
from cpt_jax.sampling import GreedyDecoder


class Evaluator:

  def __init__(self, bundle, mesh, evals: dict[str, dict[str, np.ndarray]], entropy: dict[str, float],
               babi_examples: list[dict] | dict[str, list[dict]], tokenizer):
    """`babi_examples`: the examples of `eval/babi/...`, or {metric prefix: examples} (`build.babi_eval_sets`)."""
    self._bundle, self._entropy = bundle, entropy
    self._babi_sets = babi_examples if isinstance(babi_examples, dict) else {"babi": babi_examples}
    self._tokenizer = tokenizer
    self._step = step_lib.make_eval_step(bundle.graphdef, sharding.mesh_of(bundle.param_shardings))
    # the eval rows never change: grouped, padded and placed on the devices once
    self._batches = [(names, sharding.global_batch(pad_rows(rows, mesh), mesh))
                     for names, rows in share_forward_passes(evals)]

  def __call__(self, params: Any) -> dict[str, float]:
    out = dict(self._entropy)
    sums = jax.device_get([self._step(params, batch) for _, batch in self._batches])  # dispatched back to back
    for (names, _), (nll_K, count_K) in zip(self._batches, sums):
      for name, nll, count in zip(names, nll_K, count_K):
        out[f"eval/{name}/loss"] = float(nll / max(count, 1.0))
    for gain, sets in copy_probe.GAINS.items():
      copy_losses = [out.get(f"eval/{name}/loss") for name in sets]
      if None not in copy_losses:
        out[gain] = copy_losses[0] - copy_losses[1]
    scored: dict[int, tuple[str, dict[str, float]]] = {}  # one set under two names is decoded once
    for prefix, examples in self._babi_sets.items():
      if not examples:
        continue
      if id(examples) in scored:
        first, metrics = scored[id(examples)]
        out.update({k.replace(f"eval/{first}/", f"eval/{prefix}/", 1): v for k, v in metrics.items()})
        continue
      metrics = babi_metrics(examples, self._bundle, params, self._tokenizer, prefix)
      scored[id(examples)] = (prefix, metrics)
      out.update(metrics)
    return out


def babi_metrics(examples, bundle, params, tokenizer, prefix: str = "babi") -> dict[str, float]:
  """Exact-match accuracy of greedy answers, per task and mean, with the majority-answer baselines
  (`eval/<prefix>/...`)."""
  decoder = GreedyDecoder(bundle.graphdef, bundle.cfg, params, tokenizer, batch_size=64, max_new_tokens=8)
  return babi_result_metrics(babi_score(examples, decoder, batch_size=64), examples, prefix)


def babi_result_metrics(result: dict, examples, prefix: str = "babi") -> dict[str, float]:
  """A bAbI score as metrics: accuracy, tasks passed, examples and majority baseline (always the task's most
  frequent answer: what an accuracy must beat), overall and per task (`eval/<prefix>/task_NN/...`)."""
  p = f"eval/{prefix}"
  out = {f"{p}/accuracy": result["mean"], f"{p}/tasks_passed": result["num_passed"], f"{p}/examples": len(examples),
         f"{p}/majority_baseline": result["majority_baseline"]}
  out.update({f"{p}/{k}/accuracy": v for k, v in result.items() if k.startswith("task_")})
  out.update({f"{p}/task_{task:02d}/majority": share for task, (_, share) in majority_baseline(examples).items()})
  return out


def share_forward_passes(evals: dict[str, dict[str, np.ndarray]]) -> list[tuple[list[str], dict[str, np.ndarray]]]:
  """Eval sets grouped by identical rows (all but loss_mask), each group's masks stacked [B, K, L]: the copy
  probe's first and second copies are the same tokens scored at different positions, so one forward pass
  serves both. Every group gets the same K (all-zero masks fill up), so one compiled step serves them all."""
  groups: list[tuple[list[str], dict[str, np.ndarray], list[np.ndarray]]] = []
  for name, rows in evals.items():
    for names, first, masks in groups:
      if first.keys() == rows.keys() and all(np.array_equal(first[k], rows[k]) for k in rows if k != "loss_mask"):
        names.append(name)
        masks.append(rows["loss_mask"])
        break
    else:
      groups.append(([name], rows, [rows["loss_mask"]]))
  k = max((len(names) for names, _, _ in groups), default=1)
  return [(names, {**rows, "loss_mask": np.stack(masks + [np.zeros_like(masks[0])] * (k - len(masks)), 1)})
          for names, rows, masks in groups]


def pad_rows(rows: dict[str, np.ndarray], mesh) -> dict[str, np.ndarray]:
  """Eval rows padded (with loss_mask 0) to a multiple of the batch shards; this process's part: the rows of
  the batch shards its devices hold, as for training batches (several processes may hold the same shard)."""
  n = len(rows["inputs"])
  shards = sharding.batch_shards(mesh)
  total = -(-n // shards) * shards
  out = {k: np.concatenate([v, np.zeros((total - n,) + v.shape[1:], v.dtype)]) if total > n else v
         for k, v in rows.items()}
  return pipeline.shard_layout([out], shards, sharding.local_batch_shards(mesh), list(out))
