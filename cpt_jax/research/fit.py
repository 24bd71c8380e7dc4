"""Fit scaling-law forms: Huber on log-loss residuals, L-BFGS from a grid of starts, anchors, bootstrap.

Objective: Σ_i w_i·H_δ(log L̂_i − log L_i) / (δ·Σ_i w_i)  (division by δ only rescales for the optimiser).
Each parameter lives in its box through a sigmoid: θ = lo + (hi − lo)·σ(u), or on a log scale
θ = exp(ln lo + (ln hi − ln lo)·σ(u)) when the box spans ≥ 100×, and L-BFGS-B works on u (kept in
[−30, 30] so σ never saturates to exactly 0 or 1). Gradients are forward differences (h = 1e-7 in u), all p+1
points in one vectorised predict call.

Starts: `n_grid` scrambled-Sobol points over the unit box (the "grid of initialisations", plus any
`init` given), all scored in one batched pass; L-BFGS runs from the best `n_starts`; the best end wins.

Anchors (k measured points at the held-out stage, never scored as held-out points) recalibrate a fit:
  "refit"  (default) all free parameters refit from the current values on fit rows ∪ anchors, each
           anchor weighted n_fit/k so the anchors together count as much as the whole fit set;
  "offset" log L̂' = log L̂ + a, a fitted by Huber on the anchors (a multiplicative loss factor);
  "affine" log L̂' = a + b·log L̂, a and b by Huber on the anchors (post-hoc calibration).
`refit` also takes `free=[names]` to refit a subset with the rest frozen.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Mapping, Sequence

import numpy as np
from scipy import optimize, stats

from cpt_jax.research import laws
from cpt_jax.research.laws import Form, Inputs
from cpt_jax.research.metrics import all_metrics, huber

try:  # multi-threaded BLAS makes each tiny L-BFGS-B step ~50x slower; one thread is right here
  from threadpoolctl import threadpool_limits as _limit_threads
except ImportError:  # pragma: no cover
  _limit_threads = lambda limits: contextlib.nullcontext()

U_BOUND = 30.0


@dataclasses.dataclass
class FitResult:
  form: Form
  params: dict[str, float]
  objective: float          # final weighted Huber objective (÷ δ)
  n: int                    # rows fitted
  success: bool
  nit: int
  calib: tuple[float, float] = (0.0, 1.0)  # (a, b): log L̂' = a + b·log L̂ (anchors "offset"/"affine")
  free: tuple[str, ...] = ()

  @classmethod
  def of(cls, form: Form | str, params: Mapping[str, float]) -> "FitResult":
    """A law with known parameters (not fitted): for synthetic truths and tests."""
    form = laws.FORMS[form] if isinstance(form, str) else form
    return cls(form, {k: float(params[k]) for k in form.param_names}, float("nan"), 0, True, 0)

  def predict(self, X: Inputs) -> np.ndarray:
    a, b = self.calib
    return np.exp(a + b * np.log(self.form.predict(self.params, X)))


class _Box:
  """u ∈ R^p ↔ θ in each free parameter's box; fixed parameters are filled in."""

  def __init__(self, form: Form, fixed: Mapping[str, float]):
    self.form = form
    names = form.param_names
    self.free = tuple(k for k in names if k not in fixed)
    self.free_idx = np.array([names.index(k) for k in self.free], int)
    self.base = np.array([fixed.get(k, np.nan) for k in names], np.float64)
    lo, hi = zip(*(form.bounds[k] for k in self.free))
    self.log = np.array([form.is_log(k) for k in self.free])
    lo, hi = np.array(lo, np.float64), np.array(hi, np.float64)
    self.lo = np.where(self.log, np.log(np.where(self.log, lo, 1.0)), lo)
    self.hi = np.where(self.log, np.log(np.where(self.log, hi, 1.0)), hi)

  def theta(self, U: np.ndarray) -> np.ndarray:
    v = self.lo + (self.hi - self.lo) * laws.sigmoid(U)
    v = np.where(self.log, np.exp(v), v)
    out = np.broadcast_to(self.base, U.shape[:-1] + self.base.shape).copy()
    out[..., self.free_idx] = v
    return out

  def u(self, values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, np.float64)
    v = np.where(self.log, np.log(np.maximum(v, 1e-300)), v)
    q = np.clip((v - self.lo) / (self.hi - self.lo), 1e-9, 1 - 1e-9)
    return np.clip(np.log(q) - np.log1p(-q), -U_BOUND, U_BOUND)


def _objective(box: _Box, X: Inputs, logy, w, delta, U):
  """(K,) objective values for K points U (K, p)."""
  pred = box.form.predict(box.theta(U), X)
  with np.errstate(invalid="ignore", divide="ignore"):
    r = np.log(pred) - logy
  h = np.where(np.isfinite(r), huber(r, delta), 1e6)
  return (h * w).sum(-1) / (w.sum() * delta)


def fit(form: Form | str, X: Inputs, y, *, delta: float = 1e-3, weights=None,
        fixed: Mapping[str, float] | None = None, init: Sequence[Mapping[str, float]] | Mapping[str, float] = (),
        n_grid: int = 2048, n_starts: int = 6, seed: int = 0, maxiter: int = 1000, ftol: float = 1e-14) -> FitResult:
  """Fit `form` to losses `y` at `X`; `fixed` parameters are frozen, `init` adds starting points."""
  form = laws.FORMS[form] if isinstance(form, str) else form
  fixed = dict(fixed or {})
  box = _Box(form, fixed)
  y = np.asarray(y, np.float64)
  logy = np.log(y)
  w = np.ones_like(y) if weights is None else np.asarray(weights, np.float64)
  f = lambda U: _objective(box, X, logy, w, delta, U)
  p = len(box.free)

  inits = [init] if isinstance(init, Mapping) else list(init)
  starts = [box.u([d[k] for k in box.free]) for d in inits]
  if n_grid:
    q = stats.qmc.Sobol(p, scramble=True, seed=seed).random(n_grid)
    starts.extend(np.log(q + 1e-12) - np.log1p(-q + 1e-12))
  if not starts:
    raise ValueError("no starting point: give init= or n_grid > 0")
  starts = np.clip(np.asarray(starts), -U_BOUND, U_BOUND)
  scores = np.concatenate([f(c) for c in np.array_split(starts, max(1, len(starts) // 512))])
  order = np.argsort(scores)[:n_starts]

  h = 1e-7
  steps = np.concatenate([np.zeros((1, p)), h * np.eye(p)])

  def fun_and_grad(u):
    v = f(u + steps)
    return v[0], (v[1:] - v[0]) / h

  best = None
  with _limit_threads(1):
    for i in order:
      res = optimize.minimize(fun_and_grad, starts[i], jac=True, method="L-BFGS-B",
                              bounds=[(-U_BOUND, U_BOUND)] * p,
                              options=dict(maxiter=maxiter, ftol=ftol, gtol=1e-10, maxcor=20))
      if best is None or res.fun < best.fun:
        best = res
  theta = box.theta(best.x[None])[0]
  return FitResult(form, form.as_dict(theta), float(best.fun), len(y), bool(best.success), int(best.nit),
                   free=box.free)


# ----------------------------------------------------------------------------------------------- anchors

ANCHOR_METHODS = ("refit", "offset", "affine")


def choose_anchors(n: int, k: int, seed: int = 0) -> np.ndarray:
  """k of n row indices, drawn without replacement by `seed` (sorted)."""
  if k > n:
    raise ValueError(f"{k} anchors asked for but the held-out stage has {n} rows")
  return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def recalibrate(result: FitResult, X_fit: Inputs, y_fit, X_anchor: Inputs, y_anchor, method: str = "refit", *,
                free: Sequence[str] | None = None, anchor_share: float = 0.5, delta: float = 1e-3,
                **fit_kw) -> FitResult:
  """A new FitResult recalibrated on anchors (see the module docstring for the methods)."""
  y_anchor = np.asarray(y_anchor, np.float64)
  if method == "refit":
    names = result.form.param_names
    fixed = {k: v for k, v in result.params.items() if free is not None and k not in free}
    X = Inputs(*(np.concatenate([a, b]) for a, b in zip(dataclasses.astuple(X_fit), dataclasses.astuple(X_anchor))))
    y = np.concatenate([y_fit, y_anchor])
    w_anchor = anchor_share / (1 - anchor_share) * len(y_fit) / len(y_anchor)
    w = np.concatenate([np.ones(len(y_fit)), np.full(len(y_anchor), w_anchor)])
    kw = dict(n_grid=0, n_starts=1) | fit_kw
    out = fit(result.form, X, y, delta=delta, weights=w, fixed=fixed, init=result.params, **kw)
    assert set(out.params) == set(names)
    return out
  if method not in ("offset", "affine"):
    raise ValueError(f"anchor method must be one of {ANCHOR_METHODS}, got {method!r}")
  x = np.log(result.predict(X_anchor))
  t = np.log(y_anchor)
  if method == "offset":
    loss = lambda c: np.mean(huber(x + c[0] - t, delta))
    c = optimize.minimize(loss, [np.median(t - x)], method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-16)).x
    a, b = float(c[0]), 1.0
  else:
    loss = lambda c: np.mean(huber(c[0] + c[1] * x - t, delta))
    c = optimize.minimize(loss, [0.0, 1.0], method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-16)).x
    a, b = float(c[0]), float(c[1])
  a0, b0 = result.calib
  return dataclasses.replace(result, calib=(a + b * a0, b * b0))


# --------------------------------------------------------------------------------------------- bootstrap

@dataclasses.dataclass
class Bootstrap:
  form: Form
  samples: np.ndarray  # (B, n_params)

  def ci(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
    lo, hi = np.quantile(self.samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {k: (float(a), float(b)) for k, a, b in zip(self.form.param_names, lo, hi)}

  def predict_interval(self, X: Inputs, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    pred = self.form.predict(self.samples, X)
    return tuple(np.quantile(pred, [(1 - level) / 2, (1 + level) / 2], axis=0))


def bootstrap(result: FitResult, X: Inputs, y, n_boot: int = 100, seed: int = 0, *, delta: float = 1e-3,
              **fit_kw) -> Bootstrap:
  """Refit on `n_boot` row resamples (with replacement), each warm-started from `result`."""
  rng = np.random.default_rng(seed)
  y = np.asarray(y, np.float64)
  kw = dict(n_grid=0, n_starts=1) | fit_kw
  samples = []
  for _ in range(n_boot):
    idx = rng.integers(0, len(y), len(y))
    r = fit(result.form, X.take(idx), y[idx], delta=delta, init=result.params, **kw)
    samples.append(result.form.as_array(r.params))
  return Bootstrap(result.form, np.array(samples))


# ----------------------------------------------------------------------------------------- forecasting

@dataclasses.dataclass
class Forecast:
  """One form fitted on early stages and scored on the held-out stage (anchors excluded)."""
  fit: FitResult
  anchored: FitResult | None
  X_eval: Inputs
  y_eval: np.ndarray
  metrics: dict[str, float]              # held-out metrics of the fit as it is
  metrics_anchored: dict[str, float] | None
  eval_rows: np.ndarray                  # table rows scored (held-out stage minus anchors)
  anchor_rows: np.ndarray                # table rows used as anchors

  @property
  def best(self) -> dict[str, float]:
    return self.metrics_anchored if self.metrics_anchored is not None else self.metrics


def forecast(table: Mapping[str, np.ndarray], forms: Sequence[str] = laws.ADAPTATION_FORMS, *,
             fit_ptpp: Sequence[float], test_ptpp: Sequence[float], target: str = "target_loss",
             anchors: int = 0, anchor_method: str = "refit", anchor_seed: int = 0, anchor_share: float = 0.5,
             delta: float = 1e-3, **fit_kw) -> dict[str, Forecast]:
  """Fit each form on rows with ptpp ∈ fit_ptpp, score it on rows with ptpp ∈ test_ptpp.

  With anchors = k > 0, k held-out rows (drawn by anchor_seed) recalibrate each fit and are removed from
  the scored rows for *both* the plain and the anchored metrics, so the two are on the same points.
  """
  X_all = Inputs.from_table(table, target)
  y_all = np.asarray(table[target], np.float64)
  ptpp = np.asarray(table["ptpp"], np.float64)
  fit_rows = np.flatnonzero(np.isin(ptpp, fit_ptpp))
  test_rows = np.flatnonzero(np.isin(ptpp, test_ptpp))
  if not len(fit_rows) or not len(test_rows):
    raise ValueError(f"no rows at fit PTPP {list(fit_ptpp)} or test PTPP {list(test_ptpp)}; "
                     f"table has {sorted(set(ptpp.tolist()))}")
  anchor_rows = test_rows[choose_anchors(len(test_rows), anchors, anchor_seed)] if anchors else test_rows[:0]
  eval_rows = np.setdiff1d(test_rows, anchor_rows)
  Xf, yf = X_all.take(fit_rows), y_all[fit_rows]
  Xa, ya = X_all.take(anchor_rows), y_all[anchor_rows]
  Xe, ye = X_all.take(eval_rows), y_all[eval_rows]
  out = {}
  for name in forms:
    r = fit(name, Xf, yf, delta=delta, **fit_kw)
    m = all_metrics(r.predict(Xe), ye, delta)
    ra = ma = None
    if anchors:
      ra = recalibrate(r, Xf, yf, Xa, ya, anchor_method, anchor_share=anchor_share, delta=delta)
      ma = all_metrics(ra.predict(Xe), ye, delta)
    out[name] = Forecast(r, ra, Xe, ye, m, ma, eval_rows, anchor_rows)
  return out
