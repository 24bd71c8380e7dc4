"""The bAbI study's results as a grid: runs by (data variant, budget, replay ratio), one per seed, and the
statistics the report and its scale section read from it (majority baselines, per-seed means, the replay
guideline)."""

from __future__ import annotations

import math
import re

import numpy as np

from cpt_jax.research import stats
from cpt_jax.research.report.common import _pct


VARIANTS = ("synthetic", "original")
_TASK = re.compile(r"babi_accuracy_qa(\d+)")


def _num(v) -> float | None:
  return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _seed(r):
  for key in ("seed", "axis_seed"):
    if r.get(key) is not None:
      return r[key]
  return 0


def _rel_forgetting(r) -> float | None:
  f, b = _num(r.get("forgetting")), _num(r.get("base_loss_before"))
  return f / b if f is not None and b else None


def babi_guideline(rows, threshold_rel: float) -> dict[float, float | None]:
  """Per budget: the smallest replay ratio whose mean forgetting over seeds ≤ threshold_rel × the base loss
  before adapting (None: no ratio of the grid)."""
  out = {}
  for b in sorted({r["adapt_tokens"] for r in rows}):
    ok = []
    for q in sorted({r["replay_ratio"] for r in rows if r["adapt_tokens"] == b}):
      rel = [x for r in rows if r["adapt_tokens"] == b and r["replay_ratio"] == q
             for x in [_rel_forgetting(r)] if x is not None]
      if rel and np.mean(rel) <= threshold_rel:
        ok.append(q)
    out[b] = ok[0] if ok else None
  return out


def plateau_budget(acc_by_budget: dict[float, float], tol: float) -> float:
  """The smallest budget whose accuracy is within `tol` of the best budget's."""
  best = max(acc_by_budget.values())
  return min(b for b, a in acc_by_budget.items() if a >= best - tol)


class _Grid:
  """The study's rows by (variant, budget, ratio), each cell a list of runs (one per seed)."""

  def __init__(self, rows):
    self.rows = rows
    present = {r["axis_data"] for r in rows}
    self.variants = [v for v in VARIANTS if v in present] + sorted(present - set(VARIANTS))
    self.budgets = sorted({r["adapt_tokens"] for r in rows})
    self.ratios = sorted({r["replay_ratio"] for r in rows})
    self.seeds = sorted({_seed(r) for r in rows}, key=lambda x: (isinstance(x, str), x))
    self.cells: dict[tuple, list] = {}
    for r in rows:
      self.cells.setdefault((r["axis_data"], r["adapt_tokens"], r["replay_ratio"]), []).append(r)
    self.tasks = sorted({int(m[1]) for r in rows for k in r for m in [_TASK.fullmatch(k)]
                         if m and _num(r[k]) is not None})
    self.crossed = [m for m in VARIANTS if any(_num(r.get(f"babi_{m}_accuracy")) is not None for r in rows)]

  def values(self, v, b, q, key) -> list[float]:
    return [x for r in self.cells.get((v, b, q), []) for x in [_num(r.get(key))] if x is not None]

  def per_seed(self, v, key, budgets=None, ratios=None) -> list[float]:
    """One value per seed: the mean of `key` over the given (budget, ratio) cells of variant v."""
    cells = [(b, q) for b in budgets or self.budgets for q in ratios or self.ratios]
    by_seed: dict = {}
    for b, q in cells:
      for r in self.cells.get((v, b, q), []):
        x = _num(r.get(key)) if key != "rel_forgetting" else _rel_forgetting(r)
        if x is not None:
          by_seed.setdefault(_seed(r), []).append(x)
    return [float(np.mean(xs)) for _, xs in sorted(by_seed.items(), key=lambda kv: str(kv[0]))]

  def questions(self, v, b, q) -> int | None:
    """The bAbI test questions behind one run's accuracy in cell (v, b, q), all tasks together."""
    xs = self.values(v, b, q, "babi_examples")
    return int(min(xs)) if xs else None

  def majority(self, key, variant: str | None = None) -> float | None:
    """A test set's fixed majority baseline (the mean over the runs that recorded it); `variant`: of the runs
    trained on it only (each run's own test set differs by variant)."""
    xs = [x for r in self.rows if variant is None or r["axis_data"] == variant for x in [_num(r.get(key))]
          if x is not None]
    return float(np.mean(xs)) if xs else None

  def ratios_at_every_budget(self, v) -> list[float]:
    return [q for q in self.ratios if all((v, b, q) in self.cells for b in self.budgets)]


def _test_sets(g: _Grid) -> list[tuple[str, str, str]]:
  """(label, accuracy column prefix, what it means) of each test set: the crossed ones where present, else each
  run's own variant."""
  out = [(f"bAbI-{m} test", f"babi_{m}", f"the {m} held-out test stories, the same for every run") for m in g.crossed]
  return out or [("own test", "babi", "each run's own variant's test stories")]


def _fmt(iv: stats.Interval, spec: str = ".3f") -> str:
  """'0.512 [0.480, 0.550]'; the value alone from one seed (a bootstrap of one value says nothing)."""
  if min(iv.n, default=0) < 2:
    return "–" if not math.isfinite(iv.estimate) else f"{iv.estimate:{spec}} (1 seed)"
  return iv.format(spec)


def _accuracy_vs_majority(g: _Grid, v: str, prefix: str, b: float, q: float):
  """Per task: (interval of accuracy over seeds, majority baseline, verdict accuracy > majority)."""
  out = {}
  n = g.questions(v, b, q)
  for t in g.tasks:
    iv = stats.accuracy_ci(g.values(v, b, q, f"{prefix}_accuracy_qa{t}"), n // len(g.tasks) if n else None)
    maj = g.majority(f"{prefix}_majority_qa{t}", v if prefix == "babi" else None)  # own test: v's
    vd = stats.verdict(iv, ">", maj) if maj is not None else stats.Verdict(stats.INCONCLUSIVE, "no majority baseline")
    out[t] = (iv, maj, vd)
  return out


def _gap_to_majority(g: _Grid, v: str, b: float, q: float) -> stats.Interval:
  """The mean over tasks of (own-test accuracy − the task's majority baseline), over seeds; the mean accuracy −
  the mean baseline where per-task values were not recorded."""
  accs, majs = [], []
  for r in g.cells.get((v, b, q), []):
    pairs = [(f"babi_accuracy_qa{t}", f"babi_majority_qa{t}") for t in g.tasks] or [
        ("babi_accuracy", "babi_majority_baseline")]
    both = [(acc, maj) for a, m in pairs for acc, maj in [(_num(r.get(a)), _num(r.get(m)))]
            if acc is not None and maj is not None]
    if both:
      accs.append(float(np.mean([a for a, _ in both])))
      majs.append(float(np.mean([m for _, m in both])))
  return stats.accuracy_ci(accs, g.questions(v, b, q), offset=float(np.mean(majs)) if majs else 0.0)


def _test_majority(g: _Grid, mode: str) -> float | None:
  """The mean over tasks of a shared test set's majority baselines."""
  ms = [m for t in g.tasks for m in [g.majority(f"babi_{mode}_majority_qa{t}")] if m is not None]
  return float(np.mean(ms)) if ms else None


def _own_majority(g: _Grid, v: str) -> float | None:
  xs = [x for r in g.rows if r["axis_data"] == v for x in [_num(r.get("babi_majority_baseline"))] if x is not None]
  return float(np.mean(xs)) if xs else None


def _crossed_per_seed(g: _Grid, v: str, b: float, ratios) -> list[float]:
  """Per seed: the accuracy on the shared test sets (their mean), averaged over the given ratios."""
  by_seed: dict = {}
  for q in ratios:
    for r in g.cells.get((v, b, q), []):
      xs = [x for m in g.crossed for x in [_num(r.get(f"babi_{m}_accuracy"))] if x is not None]
      if len(xs) == len(g.crossed):
        by_seed.setdefault(_seed(r), []).append(float(np.mean(xs)))
  return [float(np.mean(x)) for x in by_seed.values()]


def _per_seed_cells(g: _Grid, v: str, key: str, cells) -> list[float]:
  by_seed: dict = {}
  for b, q in cells:
    for r in g.cells.get((v, b, q), []):
      x = _num(r.get(key))
      if x is not None:
        by_seed.setdefault(_seed(r), []).append(x)
  return [float(np.mean(x)) for x in by_seed.values()]


def rel_loss_rise(g: _Grid, v: str, b: float, q: float, pretrained: float | None = None) -> list[float]:
  """Per seed: the base loss's relative rise in cell (v, b, q), from where adaptation starts, or (`pretrained`:
  that model's base loss) from the pretrained model, which a copying phase before adaptation sets apart."""
  if pretrained is None:
    return g.per_seed(v, "rel_forgetting", [b], [q])
  return [(x - pretrained) / pretrained for x in g.per_seed(v, "base_loss", [b], [q])]


def _guideline(g: _Grid, v: str, thr: float, pretrained: float | None = None) -> dict:
  """Per budget: the smallest ratio under the threshold by its mean over seeds ("point"), surely (its interval
  under it: "sure") and possibly (its interval not wholly above it: "maybe"); a ratio above the grid is 1.0;
  "sure" and "maybe" are None where too few seeds decide anything. Forgetting counts from where adaptation
  starts, or from the pretrained model's base loss `pretrained`. With text for the tables."""
  out = {}
  for b in g.budgets:
    ivs = {q: stats.mean_ci(rel) for q in g.ratios for rel in [rel_loss_rise(g, v, b, q, pretrained)] if rel}
    answers = {q: stats.verdict(iv, "<", thr).answer for q, iv in ivs.items()}
    point = next((q for q, iv in ivs.items() if iv.estimate <= thr), None)
    sure = next((q for q, a in answers.items() if a == stats.YES), 1.0)
    maybe = next((q for q, a in answers.items() if a != stats.NO), 1.0)
    decided = any(min(iv.n) >= stats.MIN_VALUES for iv in ivs.values())
    # a ratio of the grid not run at this budget (a study stopped early) could change any answer above it
    missing = min((q for q in g.ratios if (v, b, q) not in g.cells
                   and any((v, other, q) in g.cells for other in g.budgets)), default=None)
    if missing is not None:
      point = point if point is not None and point < missing else None
      decided = decided and sure < missing and maybe < missing
    if missing is not None and point is None:
      text = short = f"undecided ({_pct(missing)} and up not run yet)"
    else:
      text = (f"{_pct(point)} ({_fmt(ivs[point], '.2%')})" if point is not None else "none of the grid") + (
          ("; sure from " + (_pct(sure) if sure < 1 else "none of the grid")) if decided else "")
      short = (_pct(point) if point is not None else "none") + (
          f" (sure from {_pct(sure) if sure < 1 else 'none'})" if decided else "")
    out[b] = {"point": point, "sure": sure if decided else None, "maybe": maybe if decided else None,
              "text": text, "short": short, "complete": missing is None}
  return out
