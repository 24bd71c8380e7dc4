"""The forgetting study's runs as the report reads them: each run's replay setting, the regimes' pretraining
curves, and each run's compute multiplier (the share of its regime's pretraining compute the adapted model is
still worth). The report (forgetting.py) turns them into claims."""

from __future__ import annotations

import collections
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from cpt_jax import metrics as metrics_lib
from cpt_jax.research.report.common import Study

METHODS = (("real", "ntp"), ("real", "kl"), ("self", "ntp"), ("self", "kl"))
CURVE_SLACK = 1.02  # a stage's last evaluation may sit a part-step past PTPP × params


@dataclasses.dataclass(frozen=True, order=True)
class Setting:
  """One adaptation recipe: replay kind and loss, λ, replay ratio (kind "none": no replay)."""
  kind: str
  loss: str
  coeff: float
  ratio: float

  @property
  def method(self) -> tuple[str, str]:
    return (self.kind, self.loss)

  @property
  def label(self) -> str:
    return "no replay" if self.kind == "none" else f"{self.kind} {self.loss.upper()} λ={self.coeff:g}"


NO_REPLAY = Setting("none", "", 0.0, 0.0)


def setting_of(row: dict[str, Any]) -> Setting:
  kind = row.get("replay_kind") or "none"
  if kind == "none" or not row.get("replay_ratio"):
    return NO_REPLAY
  coeff = row.get("replay_coeff")
  return Setting(kind, str(row.get("replay_loss") or "ntp"), float(1.0 if coeff is None else coeff),
                 round(float(row["replay_ratio"]), 3))


def method_label(method: tuple[str, str]) -> str:
  return f"{method[0]} {method[1].upper()}"


# --------------------------------------------------------------------------------- compute multiplier

def compute_multiplier(tokens, loss, loss_after: float, total_tokens: float) -> float:
  """First curve point (in token order) with loss ≤ loss_after, ÷ total_tokens, clipped to [0, 1]; 1 if none.

  The adapted model is as good on the base domain as the pretraining run was after that share of its
  tokens. Resolution is the curve's evaluation spacing: between points nothing is interpolated."""
  tokens, loss = np.asarray(tokens, np.float64), np.asarray(loss, np.float64)
  order = np.argsort(tokens, kind="stable")
  hit = np.flatnonzero(loss[order] <= loss_after)
  if not len(hit) or not math.isfinite(loss_after):
    return 1.0
  return float(np.clip(tokens[order][hit[0]] / total_tokens, 0.0, 1.0))


@dataclasses.dataclass
class Curve:
  """A regime's pretraining validation curve up to its PTPP."""
  tokens: np.ndarray
  loss: np.ndarray
  total: float  # the regime's pretraining tokens, PTPP × params
  source: Path

  def multiplier(self, loss_after: float) -> float:
    return compute_multiplier(self.tokens, self.loss, loss_after, self.total)

  @property
  def resolution(self) -> float:
    """Largest gap between evaluations, as a share of the run: the multiplier's quantisation."""
    t_share = np.unique(np.clip(np.concatenate([[0.0], self.tokens, [self.total]]) / self.total, 0, 1))
    return float(np.diff(t_share).max()) if len(t_share) > 1 else 1.0


def pretraining_curve(root: Path, config: dict[str, Any], size: str, ptpp: float, params: float) -> Curve | None:
  """The regime's curve: DIR/pretrain/<size>_ptpp<P>/ (one run per regime), else DIR/pretrain/<size>/ or the
  reused run in config['pretrained'] (one run saved at every stage: cut at the stage)."""
  reused = (config.get("pretrained") or {}).get(size)
  places = [root / "pretrain" / f"{size}_ptpp{ptpp:g}", root / "pretrain" / str(size)]
  if reused:
    places.append(Path(reused) if Path(reused).is_absolute() else Path.cwd() / reused)
  total = ptpp * params
  for place in places:
    if not (place / "metrics.jsonl").exists():
      continue
    points = {}
    for m in metrics_lib.read_metrics(str(place)):
      if m.get("eval/base/loss") is not None and m.get("tokens") is not None and m["tokens"] <= total * CURVE_SLACK:
        points[float(m["tokens"])] = float(m["eval/base/loss"])  # a resumed run's repeat: the last one
    if points:
      tokens = np.array(sorted(points))
      return Curve(tokens, np.array([points[t] for t in tokens]), total, place)
  return None


# ------------------------------------------------------------------------------------------ the runs

@dataclasses.dataclass
class Runs:
  """results.csv rows grouped by regime (size, PTPP) and setting, with per-run compute multipliers."""
  rows: list[dict[str, Any]]
  curves: dict[tuple[str, float], Curve | None]

  @classmethod
  def of(cls, st: Study) -> "Runs":
    rows = []
    for r in st.rows:
      r = dict(r)
      r["regime"] = (str(r.get("size")), float(r["ptpp"]))
      r["setting"] = setting_of(r)
      r["seed"] = next((r[k] for k in ("seed", "axis_seed") if r.get(k) is not None), 0.0)  # none: one seed
      before = r.get("target_loss_before")
      r["target_gain"] = before - r["target_loss"] if before is not None and r.get("target_loss") is not None else None
      rows.append(r)
    curves = {}
    for g in sorted({r["regime"] for r in rows}):
      params = float(np.median([r["params"] for r in rows if r["regime"] == g]))
      curves[g] = pretraining_curve(st.root, st.config, g[0], g[1], params)
    for r in rows:
      c = curves[r["regime"]]
      r["compute_multiplier"] = c.multiplier(r["base_loss"]) if c is not None and r.get("base_loss") is not None \
          else None
    return cls(rows, curves)

  @property
  def regimes(self) -> list[tuple[str, float]]:
    return sorted({r["regime"] for r in self.rows})

  @property
  def sizes(self) -> list[str]:
    return sorted({g[0] for g in self.regimes})

  def settings(self, regime=None) -> list[Setting]:
    return sorted({r["setting"] for r in self.rows if regime is None or r["regime"] == regime})

  def runs(self, regime, setting) -> list[dict[str, Any]]:
    return [r for r in self.rows if r["regime"] == regime and r["setting"] == setting]

  def values(self, regime, setting, key: str) -> np.ndarray:
    return np.array([r[key] for r in self.runs(regime, setting) if r.get(key) is not None], np.float64)

  def reference(self, coeff: float | None = None) -> dict[tuple[str, str], Setting]:
    """The replay setting per method used to compare methods: the (λ, ratio) most methods share (ties: λ
    nearest 1), or λ = `coeff` when the study config names it."""
    replay = [s for s in self.settings() if s.kind != "none"]
    if not replay:
      return {}
    count = collections.Counter((s.coeff, s.ratio) for s in replay)
    if coeff is not None:
      key = max((k for k in count if math.isclose(k[0], coeff)), key=lambda k: count[k], default=None)
    else:
      key = max(count, key=lambda k: (count[k], -abs(math.log(k[0])) if k[0] > 0 else -math.inf, k[1]))
    return {s.method: s for s in replay if (s.coeff, s.ratio) == key}

  def sweep(self, ratio: float) -> list[Setting]:
    """The λ sweep: the method with the most λ values at `ratio` (ties: self KL first), ≥ 2 of them."""
    by = collections.defaultdict(list)
    for s in self.settings():
      if s.kind != "none" and s.ratio == ratio:
        by[s.method].append(s)
    if not by:
      return []
    best = max(by, key=lambda m: (len(by[m]), m == ("self", "kl")))
    return sorted(by[best], key=lambda s: s.coeff) if len(by[best]) >= 2 else []

  def floors(self, regime, sweep: list[Setting], min_gain_share: float) -> tuple[list[dict[str, Any]], str]:
    """Per seed, the run of least forgetting among no replay and the λ sweep that kept ≥ min_gain_share of
    the regime's mean no-replay target gain (a fixed-budget stand-in for the paper's stop-at-target-loss)."""
    gains = self.values(regime, NO_REPLAY, "target_gain")
    pool = [r for r in self.runs(regime, NO_REPLAY) + [r for s in sweep for r in self.runs(regime, s)]
            if r.get("forgetting") is not None]
    rule = "no target gain recorded: every run counts"
    if len(gains):
      need = min_gain_share * float(np.mean(gains))
      pool = [r for r in pool if r["target_gain"] is not None and r["target_gain"] >= need]
      rule = f"target gain ≥ {min_gain_share:g} × the mean no-replay gain = {need:.3f} nats"
    out = []
    for seed in sorted({r["seed"] for r in pool}):
      out.append(min((r for r in pool if r["seed"] == seed), key=lambda r: r["forgetting"]))
    return out, rule
