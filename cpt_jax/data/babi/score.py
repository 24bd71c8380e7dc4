"""Exact-match scoring of a decoder on rendered bAbI records, per task, with the 95 % "passed" bar.

`decode` is the model side's batched greedy decoder: prompts (each ending with the answer delimiter) in,
generated answer strings out. Only the first line of a generation counts, as in lm-eval.
"""

from __future__ import annotations

import collections
import re
from typing import Callable, Sequence

PASS_THRESHOLD = 0.95
_UNORDERED_TASKS = {8}  # "apple,milk" == "milk,apple"
_DIRECTIONS = {"north": "n", "south": "s", "east": "e", "west": "w"}


def normalize(answer: str, task: int | None = None) -> str:
  """Case, whitespace and punctuation folded; lists as sorted comma lists where order is free; task-19
  paths accept "s,e", "s e" or "south east"."""
  text = answer.split("\n", 1)[0].strip().lower()
  items = [w for w in re.split(r"[\s,;]+|\band\b", re.sub(r"[^\w\s,;]", " ", text)) if w]
  if task == 19:
    items = [_DIRECTIONS.get(w, w) for w in items]
  if task in _UNORDERED_TASKS:
    items = sorted(items)
  return ",".join(items)


def majority_baseline(examples: Sequence[dict]) -> dict[int, tuple[str, float]]:
  """Per task: the most frequent normalised answer and the accuracy of always answering it."""
  by_task = collections.defaultdict(collections.Counter)
  for ex in examples:
    by_task[ex["task"]][normalize(ex["completion"], ex["task"])] += 1
  out = {}
  for task, counts in sorted(by_task.items()):
    answer, n = counts.most_common(1)[0]
    out[task] = (answer, n / sum(counts.values()))
  return out


def score(examples: Sequence[dict], decode: Callable[[list[str]], list[str]], batch_size: int = 64) -> dict:
  """Returns {"task_01": acc, ..., "mean": mean over tasks, "passed": {"task_01": bool}, "num_passed",
  "count": {"task_01": n}, "majority_baseline": the mean over tasks of always answering the task's most
  frequent answer}. Records are dicts with "prompt", "completion" and "task"."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  right, total = collections.Counter(), collections.Counter()
  for start in range(0, len(examples), batch_size):
    batch = examples[start:start + batch_size]
    outputs = decode([ex["prompt"] for ex in batch])
    if len(outputs) != len(batch):
      raise ValueError(f"decode returned {len(outputs)} answers for {len(batch)} prompts")
    for ex, out in zip(batch, outputs):
      key = f"task_{ex['task']:02d}"
      total[key] += 1
      right[key] += normalize(out, ex["task"]) == normalize(ex["completion"], ex["task"])
  result: dict = {key: right[key] / total[key] for key in sorted(total)}
  result["mean"] = sum(result.values()) / len(result) if result else 0.0
  result["passed"] = {key: right[key] / total[key] >= PASS_THRESHOLD for key in sorted(total)}
  result["num_passed"] = sum(result["passed"].values())
  result["count"] = dict(sorted(total.items()))
  shares = [share for _, share in majority_baseline(examples).values()]
  result["majority_baseline"] = sum(shares) / len(shares) if shares else 0.0  # what "mean" must beat
  return result
