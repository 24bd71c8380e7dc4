"""Plan an adaptation: the cheapest (ATPP, replay ratio) whose predicted losses meet the thresholds.

Given fitted target and base laws (anything with `.predict(Inputs)`, e.g. a FitResult), a model size N,
its base checkpoint's PTPP and base loss before adaptation:

  minimise   ATPP                      (adaptation compute ∝ 6·N·ATPP·N; replay tokens count too)
  subject to L_target(N, P, ATPP·N, r) ≤ T
             L_base(N, P, ATPP·N, r) − base_loss_before ≤ F       (forgetting)
             min_atpp ≤ ATPP ≤ max_atpp,  r ∈ replay_range

Method: a grid, log-spaced in ATPP and linear in r; the feasible cell with the least ATPP wins (ties:
lowest predicted target loss, then lowest r). With `refine`, the search zooms `refine` times into the
ATPP interval just below the winner × its r neighbourhood (±2 cells) on a 41×41 grid (every zoom grid
contains the previous winner), then SLSQP on (ln ATPP, r) from that winner slides to the tip of a thin
feasible wedge that grids step over; if it stops a hair outside the region it
backs off towards the grid winner by bisection, and its answer is kept only if feasible and cheaper. So a refined plan
is never costlier than the grid's, nor infeasible.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
from scipy import optimize

from cpt_jax.research import fit as fitting
from cpt_jax.research import laws
from cpt_jax.research.laws import Inputs


@dataclasses.dataclass
class Plan:
  feasible: bool
  atpp: float               # nan when infeasible
  replay_ratio: float
  adapt_tokens: float
  target_loss: float
  base_loss: float
  forgetting: float
  # the search grid (before refinement): losses and feasibility per (r, ATPP) cell
  grid_atpp: np.ndarray     # (A,)
  grid_replay: np.ndarray   # (R,)
  grid_target: np.ndarray   # (R, A)
  grid_forgetting: np.ndarray
  mask: np.ndarray          # (R, A) bool: feasible cells
  setting: dict             # N, PTPP, thresholds, limits

  def summary(self) -> dict:
    keys = ("feasible", "atpp", "replay_ratio", "adapt_tokens", "target_loss", "base_loss", "forgetting")
    return {k: getattr(self, k) for k in keys} | {"feasible_cells": int(self.mask.sum()),
                                                  "grid_cells": int(self.mask.size)} | self.setting


def predict(target_law, base_law, params: float, ptpp: float, atpp, replay, base_loss_before: float):
  """Predicted (target loss, base loss, forgetting), broadcast over atpp and replay."""
  atpp, replay = np.broadcast_arrays(np.asarray(atpp, np.float64), np.asarray(replay, np.float64))
  shape = atpp.shape
  a, r = atpp.ravel(), replay.ravel()
  tgt = target_law.predict(Inputs.make(params, ptpp, a * params, r, "target_loss")).reshape(shape)
  base = base_law.predict(Inputs.make(params, ptpp, a * params, r, "base_loss")).reshape(shape)
  return tgt, base, base - base_loss_before


def _cheapest(atpp, replay, tgt, forget, max_target_loss, max_forgetting):
  """(i_replay, j_atpp) of the cheapest feasible cell of an (R, A) grid, or None; and the mask."""
  mask = (tgt <= max_target_loss) & (forget <= max_forgetting)
  if not mask.any():
    return None, mask
  j = int(np.flatnonzero(mask.any(0))[0])      # least ATPP with a feasible r
  rows = np.flatnonzero(mask[:, j])
  i = int(rows[np.lexsort((replay[rows], tgt[rows, j]))[0]])  # lowest target loss, then lowest r
  return (i, j), mask


def plan(target_law, base_law, *, params: float, ptpp: float, base_loss_before: float,
         max_target_loss: float, max_forgetting: float, max_atpp: float, min_atpp: float | None = None,
         replay_range: tuple[float, float] = (0.0, 0.5), n_atpp: int = 121, n_replay: int = 51,
         refine: int = 3) -> Plan:
  min_atpp = max_atpp / 1000 if min_atpp is None else min_atpp
  A = np.geomspace(min_atpp, max_atpp, n_atpp)
  R = np.linspace(*replay_range, n_replay)
  pred = lambda a, r: predict(target_law, base_law, params, ptpp, a[None, :], r[:, None], base_loss_before)
  tgt, base, forget = pred(A, R)
  best, mask = _cheapest(A, R, tgt, forget, max_target_loss, max_forgetting)
  setting = dict(params=params, ptpp=ptpp, base_loss_before=base_loss_before, max_target_loss=max_target_loss,
                 max_forgetting=max_forgetting, min_atpp=min_atpp, max_atpp=max_atpp,
                 replay_range=list(replay_range))
  grids = dict(grid_atpp=A, grid_replay=R, grid_target=tgt, grid_forgetting=forget, mask=mask, setting=setting)
  if best is None:
    nan = float("nan")
    return Plan(False, nan, nan, nan, nan, nan, nan, **grids)
  i, j = best
  a_best, r_best = A[j], R[i]
  a_grid, r_grid = A, R
  for _ in range(refine):
    jj = int(np.searchsorted(a_grid, a_best))
    a_lo = a_grid[jj - 1] if jj > 0 else a_best
    ii = int(np.searchsorted(r_grid, r_best))
    r_lo, r_hi = r_grid[max(ii - 2, 0)], r_grid[min(ii + 2, len(r_grid) - 1)]
    a_grid = np.unique(np.append(np.geomspace(a_lo, a_best, 41), a_best))
    r_grid = np.unique(np.append(np.linspace(r_lo, r_hi, 41), r_best))
    t2, _, f2 = pred(a_grid, r_grid)
    (i2, j2), _ = _cheapest(a_grid, r_grid, t2, f2, max_target_loss, max_forgetting)
    a_best, r_best = a_grid[j2], r_grid[i2]
  if refine:
    a_best, r_best = _polish(pred, a_best, r_best, min_atpp, replay_range, max_target_loss, max_forgetting)
  t, b, f = (float(v) for v in predict(target_law, base_law, params, ptpp, a_best, r_best, base_loss_before))
  return Plan(True, float(a_best), float(r_best), float(a_best * params), t, b, f, **grids)


def _polish(pred, a0, r0, min_atpp, replay_range, max_target_loss, max_forgetting):
  """SLSQP on (ln ATPP, r) from a feasible point: slides along a thin feasible wedge to its tip, which a
  grid can step over. Kept only if feasible and cheaper."""
  one = lambda z: tuple(float(v[0, 0]) for v in pred(np.exp(z[:1]), z[1:])[::2])  # (target, forgetting)
  cons = [dict(type="ineq", fun=lambda z: max_target_loss - one(z)[0]),
          dict(type="ineq", fun=lambda z: max_forgetting - one(z)[1])]
  res = optimize.minimize(lambda z: z[0], [np.log(a0), r0], method="SLSQP", constraints=cons,
                          bounds=[(np.log(min_atpp), np.log(a0)), tuple(replay_range)],
                          options=dict(maxiter=200, ftol=1e-12))
  z0 = np.array([np.log(a0), r0])
  z1 = np.array([res.x[0], np.clip(res.x[1], *replay_range)])
  ok = lambda z: all(v <= m for v, m in zip(one(z), (max_target_loss, max_forgetting)))
  if not ok(z1):  # SLSQP stops on the boundary, maybe a hair outside: back off towards z0 (feasible)
    lo, hi = 0.0, 1.0
    for _ in range(50):
      mid = 0.5 * (lo + hi)
      lo, hi = (lo, mid) if ok(z1 + mid * (z0 - z1)) else (mid, hi)
    z1 = z1 + hi * (z0 - z1)
  if ok(z1) and z1[0] < z0[0]:
    return float(np.exp(z1[0])), float(z1[1])
  return a0, r0


def brute_force(target_law, base_law, *, params, ptpp, base_loss_before, max_target_loss, max_forgetting,
                atpp_grid: Sequence[float], replay_grid: Sequence[float]):
  """Reference: loop over every (ATPP, r), one prediction at a time; same ranking as `plan`."""
  best = None
  for a in atpp_grid:
    for r in replay_grid:
      t, b, f = (float(v) for v in predict(target_law, base_law, params, ptpp, a, r, base_loss_before))
      if t <= max_target_loss and f <= max_forgetting:
        key = (a, t, r)
        if best is None or key < best[0]:
          best = (key, (float(a), float(r), t, b, f))
  return None if best is None else best[1]


def base_loss_before(table: Mapping[str, np.ndarray], params: float, ptpp: float, **fit_kw) -> tuple[float, str]:
  """Base loss of the (params, ptpp) checkpoint before adaptation, and where it came from.

  The median of matching rows' base_loss_before if any; else the `pretrain` law E + A/N^α + G/P^κ
  fitted to the per-checkpoint medians (an extrapolation; needs ≥ 5 checkpoints)."""
  n, p, b = (np.asarray(table[k], np.float64) for k in ("params", "ptpp", "base_loss_before"))
  same = np.isclose(n, params, rtol=1e-6) & np.isclose(p, ptpp, rtol=1e-6)
  if same.any():
    return float(np.median(b[same])), "table"
  keys = sorted(set(zip(n.tolist(), p.tolist())))
  if len(keys) < 5:
    raise ValueError(f"no rows at params={params:g}, ptpp={ptpp:g} and only {len(keys)} checkpoints to fit "
                     "a pre-training law: pass base_loss_before")
  med = np.array([np.median(b[(n == k[0]) & (p == k[1])]) for k in keys])
  kn, kp = np.array(keys).T
  X = Inputs.make(kn, kp, np.inf, 1.0, "base_loss")
  law = fitting.fit(laws.FORMS["pretrain"], X, med, **fit_kw)
  return float(law.predict(Inputs.make(params, ptpp, np.inf, 1.0, "base_loss"))[0]), "pretrain-law"


def plot(p: Plan, path) -> None:
  """Feasible region over (ATPP, r), the two threshold contours and the chosen plan, as a PNG."""
  import matplotlib  # ~0.6 s to import; only the figure needs it
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # after choosing the headless backend
  from matplotlib.colors import ListedColormap  # with pyplot, only for the figure
  s = p.setting
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  ax.pcolormesh(p.grid_atpp, p.grid_replay, p.mask.astype(float), cmap=ListedColormap(["#eeeeee", "#8fd19e"]),
                vmin=0, vmax=1, shading="nearest")
  ct = ax.contour(p.grid_atpp, p.grid_replay, p.grid_target, levels=[s["max_target_loss"]], colors="C0")
  cf = ax.contour(p.grid_atpp, p.grid_replay, p.grid_forgetting, levels=[s["max_forgetting"]], colors="C3")
  handles = [plt.Line2D([], [], color="C0", label=f"target loss = {s['max_target_loss']:g}"),
             plt.Line2D([], [], color="C3", label=f"forgetting = {s['max_forgetting']:g}")]
  if p.feasible:
    handles.append(ax.plot(p.atpp, p.replay_ratio, "k*", ms=12,
                           label=f"cheapest: ATPP {p.atpp:.3g}, r {p.replay_ratio:.3f}")[0])
  del ct, cf
  ax.set_xscale("log")
  ax.set_xlabel("ATPP (adaptation tokens / parameter)")
  ax.set_ylabel("replay ratio r")
  ax.set_title(f"feasible region (green), N = {s['params']:.3g}, PTPP = {s['ptpp']:g}")
  ax.legend(handles=handles, loc="best", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
