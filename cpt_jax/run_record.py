"""A workdir's records stay true: config.json says what its checkpoints were trained with, summary.json how the
finished run ended.

Resuming compares the new config with the saved config.json. Fields that change what is trained or what the
recorded evaluations mean (model, data, optimizer, replay, seed, stage, init_from, the token budget, the
evaluation rows) must be equal: a difference is refused, listing every one, before anything is written. Fields
that only change how the run is logged, evaluated over time, checkpointed or guarded (`HARMLESS`) may change; each
change is appended to WORKDIR/config_changes.jsonl with the step it took effect at, and config.json then holds the
new values. The token budget may grow on purpose with `train.allow_budget_change=True` (recorded the same way).
A finished run (summary.json) is reported as finished and nothing in it is rewritten.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import jax

from cpt_jax import checkpoint as ckpt_lib, config as config_lib, paths

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
CHANGES_FILE = "config_changes.jsonl"

# Fields a resumed run may change: they do not change the trained weights or what a recorded metric means.
# Every other field is refused, so a new config field is refused on resume until it is listed here.
HARMLESS = (
    "train.log_every_steps", "train.eval_every_tokens", "train.babi_eval_examples", "train.progress",
    # which bAbI questions are scored (recorded with the step they took effect at), not what is trained
    "train.babi_eval_stories", "train.babi_eval_modes", "train.babi_eval_exclude_stories",
    "data.target.babi_eval_seed", "data.base.babi_eval_seed",
    "train.stop_at_step", "train.checkpoint_every_tokens", "train.keep_checkpoints", "train.save_at_ptpp",
    "train.max_nonfinite_skips",  # the documented way on after a divergence: skip such batches
    "train.lease_timeout_seconds", "train.allow_budget_change", "train.profile_steps", "train.compile_cache",
    "train.compile_cache_dir",
    "data.data_dir",  # where prepared data is cached, not what it is
    "data.base.size_tokens", "data.target.size_tokens",  # a corpus's stated size, for cost estimates only
    "data.tokenizer",  # the workdir's own tokenizer.model is used; another one is refused by build.resolve_tokenizer
    "mesh.",  # the layout over devices (docs/multihost.md: resume on another topology)
    "model.remat", "model.attention_impl",  # how the same function is computed (recomputation, kernel)
)
BUDGET = ("train.total_tokens", "train.ptpp", "train.atpp")
_ABSENT = "<absent>"


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(d, dict):
    return {prefix[:-1]: d}
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}."))
  return out


def differences(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
  """{dotted field: (saved value, new value)} of the fields that differ (ABSENT where one side lacks it)."""
  a, b = _flat(saved), _flat(new)
  return {k: (a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(a.keys() | b.keys())
          if a.get(k, _ABSENT) != b.get(k, _ABSENT)}


def _harmless(field: str, old: Any, new: Any, allow_budget: bool) -> bool:
  if _ABSENT in (old, new):  # a field this version of cpt_jax added or dropped: nothing to compare
    return True
  return any(field == h or (h.endswith(".") and field.startswith(h)) for h in HARMLESS) or (
      allow_budget and field in BUDGET)


class Resume:
  """What the workdir holds for this config: `finished` (the saved summary) or `changes` to record on resume."""

  def __init__(self, finished: dict[str, Any] | None = None, changes: dict[str, tuple[Any, Any]] | None = None):
    self.finished, self.changes = finished, changes or {}


def check(cfg, workdir: str) -> Resume:
  """Compares `cfg` with the config the workdir's checkpoints were trained with; raises ConfigError (nothing
  written) if a field that changes what was trained differs."""
  root = paths.path(workdir)
  if not ckpt_lib.committed_steps(str(root / "checkpoints")) or not (root / CONFIG_FILE).exists():
    return Resume()  # a new run (or one killed before its first checkpoint): nothing to keep true yet
  try:
    saved = paths.read_json(root / CONFIG_FILE)
    if not isinstance(saved, dict):
      raise ValueError("not a JSON object")
  except ValueError as e:
    logging.warning("%s is unreadable (%s): the config cannot be compared; it is rewritten after the restore",
                    root / CONFIG_FILE, e)
    return Resume()
  _pin_start_step(cfg, saved)
  new = json.loads(cfg.to_json_best_effort())
  diffs = differences(saved, new)
  allow_budget = bool(cfg.train.get("allow_budget_change", False))
  refused = {k: v for k, v in diffs.items() if not _harmless(k, *v, allow_budget)}
  if refused:
    listed = "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in refused.items())
    budget = any(k in BUDGET for k in refused)
    raise config_lib.ConfigError(
        f"{workdir} was trained with another config ({len(refused)} "
        f"difference{'s' if len(refused) > 1 else ''}: {listed}). Resuming would make its records false, so "
        f"nothing was changed. Rerun with its saved values ({root / CONFIG_FILE}; locally --config "
        f"configs/from_json.py:{root / CONFIG_FILE}), or start a new --workdir (to continue from these weights: "
        f"stage=adapt with --config.init_from={workdir})"
        + ("; to extend the token budget on purpose add --config.train.allow_budget_change=True" if budget else ""))
  budget_changed = any(k in BUDGET for k in diffs)
  if (root / SUMMARY_FILE).exists() and not budget_changed:
    try:
      summary = paths.read_json(root / SUMMARY_FILE)
      if isinstance(summary, dict):
        return Resume(finished=summary)
    except ValueError:
      logging.warning("%s is unreadable: the run is resumed and writes it again", root / SUMMARY_FILE)
  return Resume(changes={k: v for k, v in diffs.items() if _ABSENT not in v})


def _pin_start_step(cfg, saved: dict[str, Any]) -> None:
  """An adapt run asked for init_from's latest checkpoint (init_step=-1) resumes from the step it started from
  (saved in its config.json), although init_from may have saved newer ones since: its teacher and its
  before/forgetting records belong to that step."""
  step = saved.get("init_step")
  if cfg.get("stage") == "adapt" and cfg.get("init_step", 0) < 0 and isinstance(step, int) and step >= 0:
    cfg.init_step = step


def record_changes(workdir: str, step: int, changes: dict[str, tuple[Any, Any]]) -> None:
  """Appends one line {step, time, changes: {field: [old, new]}} to WORKDIR/config_changes.jsonl (process 0)."""
  if not changes or jax.process_index() != 0:
    return
  logging.info("config changes from step %d on, recorded in %s: %s", step, CHANGES_FILE,
               "; ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in changes.items()))
  path = paths.path(workdir) / CHANGES_FILE
  before = path.read_text() if path.exists() else ""
  line = json.dumps({"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "changes": {k: [old, new] for k, (old, new) in changes.items()}})
  paths.write_text_atomic(path, before + line + "\n")
