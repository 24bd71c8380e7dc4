"""The PTPP study's forecasting machinery: cells from results.csv, the anchor rule, fits per law form, and the
held-out statistics (Huber-on-log, MAE_rel, calibration slope) with cluster-bootstrap intervals. The report
(ptpp.py) turns them into claims; the protocol is described there."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from cpt_jax.research import fit as fit_lib
from cpt_jax.research import laws, stats
from cpt_jax.research.laws import Inputs
from cpt_jax.research.metrics import huber
from cpt_jax.research.report.common import _pct

DELTA = 1e-3  # Huber δ on log loss, the fitter's and the metric's (our choice: docs/scaling_laws.md)
# extra parameters that turn each PTPP-aware form into D-CPT (its warm start from the D-CPT fit)
NEUTRAL = {"ptpp_additive": {"G": 1e-6, "kappa": 0.0}, "ptpp_modulated": {"kappa": 0.0},
           "ptpp_exponent": {"beta1": 0.0}, "gated_floor": {"g_min": 1.0, "k_gate": 0.0, "P0": 100.0, "F": 0.01}}
COLUMNS = ("params", "ptpp", "atpp", "adapt_tokens", "replay_ratio", "target_loss", "base_loss", "base_loss_before",
           "forgetting")


# ------------------------------------------------------------------------------------------------- cells

@dataclasses.dataclass
class Cells:
  """Runs grouped into cells: `key[i]` = (size, ptpp, grid labels); `runs[i]` its seeds' rows."""
  keys: list[tuple]
  runs: list[list[dict[str, Any]]]

  @classmethod
  def of(cls, rows: list[dict[str, Any]]) -> "Cells":
    """Cells by the grid's axis labels (axis_* columns, seeds left out) when results.csv has them, else by
    rounded ATPP and replay ratio (realized values may differ in the last digits between seeds)."""
    axes = sorted(k for k in (rows[0] if rows else {}) if k.startswith("axis_")
                  and k not in ("axis_size", "axis_ptpp") and "seed" not in k)
    key = (lambda r: (str(r["size"]), float(r["ptpp"]), *(str(r[a]) for a in axes))) if axes else \
        (lambda r: (str(r["size"]), float(r["ptpp"]), float(f"{r['atpp']:.4g}"), round(float(r["replay_ratio"]), 3)))
    by: dict[tuple, list] = {}
    for r in rows:
      by.setdefault(key(r), []).append(r)
    keys = sorted(by, key=lambda k: (float(np.mean([r["params"] for r in by[k]])), k[1],
                                     float(np.mean([r["atpp"] for r in by[k]])),
                                     float(np.mean([r["replay_ratio"] for r in by[k]]))))
    return cls(keys, [by[k] for k in keys])

  def __len__(self) -> int:
    return len(self.keys)

  def mean(self, key: str) -> np.ndarray:
    """(C,) the per-cell mean of a column."""
    return np.array([np.mean([r[key] for r in runs if r.get(key) is not None] or [np.nan]) for runs in self.runs])

  def seeds(self, i: int, key: str) -> np.ndarray:
    return np.array([r[key] for r in self.runs[i] if r.get(key) is not None], np.float64)

  def n_seeds(self) -> np.ndarray:
    return np.array([len(r) for r in self.runs])

  def table(self, idx) -> dict[str, np.ndarray]:
    return {k: self.mean(k)[idx] for k in COLUMNS}

  def label(self, i: int) -> str:
    p, a, r = self.mean("params")[i], self.mean("atpp")[i], self.mean("replay_ratio")[i]
    return f"N {p:.3g}, PTPP {self.keys[i][1]:g}, ATPP {a:.3g}, replay {_pct(r)}"


def choose_anchors(params_C: np.ndarray, atpp_C: np.ndarray, ratio_C: np.ndarray, k: int) -> np.ndarray:
  """k of C held-out cells by a fixed rule: dealt round-robin over sizes (largest first); within its size each
  anchor is the cell farthest (in grid steps of ATPP and replay ratio) from every anchor chosen so far, of
  any size, the first one the cell nearest the grid's centre. So the anchors cover the ATPP × replay grid
  and different sizes anchor different grid points. Ties go to the lower (ATPP, ratio). Returns cell
  indices, sorted."""
  k = min(max(k, 0), len(params_C))
  if not k:
    return np.array([], int)
  grid_Cx2 = np.stack([np.searchsorted(np.unique(v), v) / max(len(np.unique(v)) - 1, 1) for v in (atpp_C, ratio_C)], 1)
  sizes = sorted(set(params_C.tolist()), reverse=True)
  chosen: list[int] = []
  turn = 0
  while len(chosen) < k:
    size = sizes[turn % len(sizes)]
    turn += 1
    free = [i for i in np.flatnonzero(params_C == size) if i not in chosen]
    if not free:
      continue
    free.sort(key=lambda i: (atpp_C[i], ratio_C[i]))
    if chosen:
      gap = lambda i: -min(np.abs(grid_Cx2[i] - grid_Cx2[j]).sum() for j in chosen)
    else:
      gap = lambda i: np.abs(grid_Cx2[i] - 0.5).sum()
    chosen.append(min(free, key=gap))  # min is stable: ties keep the (ATPP, ratio) order
  return np.sort(np.array(chosen, int))


# ---------------------------------------------------------------------------------------------- metrics

def _log_err(pred_C: np.ndarray) -> Callable:
  return lambda idx, mean: np.log(pred_C[idx]) - np.log(mean)


def huber_stat(pred_C: np.ndarray) -> Callable:
  """Huber-on-log of predictions `pred_C` on a resample: fn(idx_BxC, mean_BxC) → (B,)."""
  return lambda idx, mean: huber(_log_err(pred_C)(idx, mean), DELTA).mean(-1)


def mae_rel_stat(pred_C: np.ndarray) -> Callable:
  return lambda idx, mean: (np.abs(pred_C[idx] - mean) / mean).mean(-1)


def slope_stat(pred_C: np.ndarray) -> Callable:
  """OLS slope of log observed on log predicted (nan on a resample with one distinct prediction)."""
  def fn(idx, mean):
    x, y = np.log(pred_C[idx]), np.log(mean)
    x = x - x.mean(-1, keepdims=True)
    sxx = (x * x).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(sxx > 0, (x * (y - y.mean(-1, keepdims=True))).sum(-1) / sxx, np.nan)
  return fn


def spearman_rows(a_BxF: np.ndarray, b_BxF: np.ndarray) -> np.ndarray:
  """Spearman correlation of two rankings per row (no ties among float errors)."""
  ra, rb = np.argsort(np.argsort(a_BxF, -1), -1), np.argsort(np.argsort(b_BxF, -1), -1)
  f = a_BxF.shape[-1]
  return 1 - 6 * ((ra - rb) ** 2).sum(-1) / (f * (f * f - 1))


@dataclasses.dataclass
class Scored:
  """One form's forecast of one loss at the held-out cells: plain and anchored."""
  form: str
  fit: fit_lib.FitResult
  anchored: fit_lib.FitResult | None
  pred: np.ndarray             # (C_eval,) plain forecast
  pred_anchored: np.ndarray    # (C_eval,) anchored forecast (= pred without anchors)
  metrics: dict[str, stats.Interval]
  metrics_anchored: dict[str, stats.Interval]


def forecast(cells: Cells, fit_idx, anchor_idx, eval_idx, target: str, forms, anchor_method: str = "refit",
             **fit_kw) -> dict[str, Scored]:
  """Fit each form on the fit cells, recalibrate on the anchors, score on the eval cells (with intervals)."""
  X = Inputs.from_table(cells.table(slice(None)), target)
  y = cells.mean(target)
  Xf, yf, Xa, ya, Xe = X.take(fit_idx), y[fit_idx], X.take(anchor_idx), y[anchor_idx], X.take(eval_idx)
  obs = [cells.seeds(i, target) for i in eval_idx]
  out: dict[str, Scored] = {}
  base = None
  for name in forms:
    form = laws.FORMS[name]
    init = ()
    if base is not None:
      start = {**base.params, **NEUTRAL.get(name, {})}
      init = [start] if set(form.param_names) <= set(start) else ()
    r = fit_lib.fit(form, Xf, yf, delta=DELTA, init=init, **fit_kw)
    if name == "dcpt":
      base = r
    ra = fit_lib.recalibrate(r, Xf, yf, Xa, ya, anchor_method, delta=DELTA) if len(anchor_idx) else None
    pred = r.predict(Xe)
    pa = ra.predict(Xe) if ra is not None else pred
    m = lambda p: {"huber_log": stats.cluster_bootstrap(huber_stat(p), obs),
                   "mae_rel": stats.cluster_bootstrap(mae_rel_stat(p), obs),
                   "calibration_slope": stats.cluster_bootstrap(slope_stat(p), obs)}
    out[name] = Scored(name, r, ra, pred, pa, m(pred), m(pa) if ra is not None else {})
  return out


def plan_form(scored: dict[str, Scored], choice: str = "auto") -> str:
  """The form a plan uses for one loss: `choice`, or ("auto") the lowest fit-set Huber-on-log, which only
  the early stages decide (choosing by held-out error would let the checked cells pick their own law)."""
  return min(scored, key=lambda f: scored[f].fit.objective) if choice == "auto" else choice


def paired(stat_a: Callable, stat_b: Callable, obs) -> stats.Interval:
  """stat_a − stat_b on the same resamples of cells and seeds."""
  return stats.cluster_bootstrap(lambda idx, mean: stat_a(idx, mean) - stat_b(idx, mean), obs)
