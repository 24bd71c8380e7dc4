"""What a study reports of its finished cells: one results.csv row per adaptation run (its summary.json,
bAbI baselines and per-task columns), rewritten whole after every finished cell by the runner."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ml_collections

from cpt_jax import build, metrics as metrics_lib
from cpt_jax.data import sources
from cpt_jax.data.babi import score as babi_score

if TYPE_CHECKING:
  from cpt_jax.study_grid import Cell

RESULT_COLUMNS = [
    "cell", "size", "params", "ptpp", "seed", "atpp", "adapt_tokens", "adapt_scored_tokens", "replay_ratio",
    "replay_token_share",
    "replay_semantics", "replay_kind", "replay_loss", "replay_coeff", "target_loss", "base_loss", "base_loss_before",
    "target_loss_before", "forgetting",
    "babi_accuracy", "babi_tasks_passed", "wall_seconds", "babi_accuracy_before", "babi_majority_baseline",
    "babi_examples", "copy_gain_before", "copy_gain",
]


def result_row(cell: Cell) -> dict[str, Any]:
  s = json.loads((cell.workdir / "summary.json").read_text())
  final, before = s["final"], s.get("before", {})
  babi = _babi_baseline(cell, final)
  return {
      "cell": cell.id.split("/", 1)[1], "size": cell.labels.get("size"), "params": s["params"],
      "ptpp": float(cell.labels["ptpp"]), "seed": (cell.config or {}).get("seed"), "atpp": s["atpp"],
      "adapt_tokens": s["tokens"], "adapt_scored_tokens": s.get("scored_tokens"),
      "replay_ratio": s["replay_ratio"], "replay_token_share": s.get("replay_token_share"),
      "replay_semantics": s.get("replay_semantics"), "replay_kind": s["replay_kind"], "replay_loss": s["replay_loss"],
      "replay_coeff": s["replay_coeff"], "target_loss": final.get("eval/target/loss"),
      "base_loss": final.get("eval/base/loss"), "base_loss_before": before.get("eval/base/loss"),
      "target_loss_before": before.get("eval/target/loss"), "forgetting": final.get("eval/base/forgetting"),
      "babi_accuracy": final.get("eval/babi/accuracy"), "babi_tasks_passed": final.get("eval/babi/tasks_passed"),
      "wall_seconds": s["wall_seconds"], **babi,
      "copy_gain_before": before.get("eval/copy/gain"), "copy_gain": final.get("eval/copy/gain"),
      "copy_text_gain_before": before.get("eval/copy_text/gain"), "copy_text_gain": final.get("eval/copy_text/gain"),
      **_babi_task_columns(cell, final),
      **{f"axis_{k}": v for k, v in cell.labels.items()},
  }


def _babi_baseline(cell: Cell, final: dict[str, Any]) -> dict[str, Any]:
  """bAbI accuracy before adapting (the step-0 evaluation), the majority-answer baseline and the number of
  evaluation examples. Runs that did not record the last two get them from their evaluation examples."""
  out = {"babi_accuracy_before": None, "babi_majority_baseline": final.get("eval/babi/majority_baseline"),
         "babi_examples": final.get("eval/babi/examples")}
  if final.get("eval/babi/accuracy") is None:
    return out
  for m in metrics_lib.read_metrics(str(cell.workdir), missing_ok=True):
    if m.get("step") == 0 and "eval/babi/accuracy" in m:
      out["babi_accuracy_before"] = m["eval/babi/accuracy"]
      break
  if out["babi_majority_baseline"] is None and cell.config is not None:
    try:
      cfg = ml_collections.ConfigDict(cell.config)
      examples = build.babi_eval_examples(cfg, sources.data_dir_of(cfg.data))
      shares = [share for _, share in babi_score.majority_baseline(examples).values()]
      out["babi_majority_baseline"], out["babi_examples"] = sum(shares) / len(shares), len(examples)
    except Exception as e:  # pylint: disable=broad-except  # the data may be gone: the report says "not recorded"
      logging.warning("%s: no majority baseline (%s)", cell.id, e)
  return out


_BABI_METRIC = re.compile(r"eval/(babi(?:_[a-z]+)?)/task_(\d+)/(accuracy|majority)")
_BABI_TASK_COLUMN = re.compile(r"(babi(?:_[a-z]+)?)_(accuracy|majority)_qa(\d+)")


def _babi_task_columns(cell: Cell, final: dict[str, Any]) -> dict[str, Any]:
  """Per task studied, bAbI accuracy and majority-answer baseline on the target's own variant
  (`babi_accuracy_qaN`, `babi_majority_qaN`) and, where crossed scoring ran, on each variant's test stories
  (`babi_<variant>_accuracy_qaN`, `babi_<variant>_majority_qaN`, mean `babi_<variant>_accuracy`). Runs that
  did not record the per-task majority get it from their evaluation examples."""
  out = {}
  for key, value in final.items():
    m = _BABI_METRIC.fullmatch(key)
    if m:
      out[f"{m[1]}_{m[3]}_qa{int(m[2])}"] = value
    elif key.startswith("eval/babi_") and key.endswith("/accuracy") and key.count("/") == 2:
      out[f"{key.split('/')[1]}_accuracy"] = value
  missing = [k for k in out if k.startswith("babi_accuracy_qa") and k.replace("accuracy", "majority") not in out]
  if missing and cell.config is not None:
    try:
      cfg = ml_collections.ConfigDict(cell.config)
      examples = build.babi_eval_examples(cfg, sources.data_dir_of(cfg.data))
      out.update({f"babi_majority_qa{t}": share for t, (_, share) in babi_score.majority_baseline(examples).items()})
    except Exception as e:  # pylint: disable=broad-except  # the data may be gone: the report says "not recorded"
      logging.warning("%s: no per-task majority baseline (%s)", cell.id, e)
  return out


def _column_order(name: str):
  """Extra columns sorted by name, a task's accuracy and majority baseline side by side."""
  m = _BABI_TASK_COLUMN.fullmatch(name)
  return (f"{m[1]}_qa", int(m[3]), m[2]) if m else (name, 0, "")


def collect_results(cells: list[Cell], path: Path) -> list[dict[str, Any]]:
  rows = [result_row(c) for c in cells if c.kind == "adapt" and c.done]
  extra = sorted({k for r in rows for k in r} - set(RESULT_COLUMNS), key=_column_order)
  tmp = path.with_suffix(".tmp")
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS + extra)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(tmp, path)
  return rows
