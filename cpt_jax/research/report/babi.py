"""Study 1 (seed 000): bAbI as the target — data variant × budget × replay ratio × seed; the replay guideline.

Every accuracy is read against its task's majority-answer baseline, and every verdict comes from a 95 %
bootstrap interval over seeds (`cpt_jax.research.stats`): yes only when the interval excludes the
alternative, no when it excludes the claim, else inconclusive (always so with fewer than 3 seeds). Synthetic
and original runs are compared on the same test stories (crossed scoring, `babi_<variant>_accuracy`); where a
study did not score them so, that comparison is not made.
"""

from __future__ import annotations

import math
import re

import numpy as np

from cpt_jax.research import stats
from cpt_jax.research.report.common import Claim, Study, _heatmap, _pct, _plt, _tokens

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
  for t in g.tasks:
    iv = stats.mean_ci(g.values(v, b, q, f"{prefix}_accuracy_qa{t}"))
    maj = g.majority(f"{prefix}_majority_qa{t}", v if prefix == "babi" else None)  # own test: v's
    vd = stats.verdict(iv, ">", maj) if maj is not None else stats.Verdict(stats.INCONCLUSIVE, "no majority baseline")
    out[t] = (iv, maj, vd)
  return out


def _gap_to_majority(g: _Grid, v: str, b: float, q: float) -> list[float]:
  """Per seed: the mean over tasks of (own-test accuracy − the task's majority baseline); the mean accuracy −
  the mean baseline where per-task values were not recorded."""
  out = []
  for r in g.cells.get((v, b, q), []):
    pairs = [(f"babi_accuracy_qa{t}", f"babi_majority_qa{t}") for t in g.tasks] or [
        ("babi_accuracy", "babi_majority_baseline")]
    gaps = [acc - maj for a, m in pairs for acc, maj in [(_num(r.get(a)), _num(r.get(m)))]
            if acc is not None and maj is not None]
    if gaps:
      out.append(float(np.mean(gaps)))
  return out


def babi_report(st: Study):
  plt = _plt()
  cc = st.claims_cfg
  thr, tol = cc.get("forgetting_threshold_rel", 0.01), cc.get("plateau_tolerance", 0.02)
  margin = cc.get("much_better", tol)
  g = _Grid(st.rows)
  V, B, Q = g.variants, g.budgets, g.ratios
  b_max, q0 = B[-1], Q[0]
  syn = "synthetic" if "synthetic" in V else V[0]
  oth = next((v for v in V if v != syn), None)
  body, claims = [], []
  n_seeds = sorted({len(runs) for runs in g.cells.values()})
  seeds_txt = f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}–{n_seeds[-1]}"
  expected = len(V) * len(B) * len(Q)
  body += ["### Design", "",
           f"Data variant {' | '.join(V)} × budget {', '.join(_tokens(b) for b in B)} tokens × replay ratio "
           f"{', '.join(_pct(q) for q in Q)} (mixture) × seed {', '.join(_seed_label(x) for x in g.seeds)}: "
           f"{len(g.cells)} of {expected} cells run, {seeds_txt} seed{'s' if n_seeds[-1] > 1 else ''} each. "
           "Intervals are 95 % bootstrap intervals over seeds; a verdict needs ≥ "
           f"{stats.MIN_VALUES} seeds. Test sets: " + "; ".join(f"{n}: {w}" for n, _, w in _test_sets(g)) + ".", ""]

  # --- per task at the largest budget, own test and (where scored) the shared test sets
  if not g.tasks:
    body += ["Per-task accuracy was not recorded (results.csv without `babi_accuracy_qaN` columns).", ""]
  for label, prefix, what in [("own test", "babi", "each run's own variant's test stories")] + [
      t for t in _test_sets(g) if t[1] != "babi"]:
    if not g.tasks:
      break
    own = prefix == "babi"
    res = {v: _accuracy_vs_majority(g, v, prefix, b_max, q0) for v in V}
    cols = [c for v in V for c in ((f"majority ({v} test)", f"trained on {v}") if own else (f"trained on {v}",))]
    lines = ["| task | " + ("" if own else "majority | ") + " | ".join(cols) + " |",
             "|---|" + "---|" * (len(cols) + (not own))]
    for t in g.tasks:
      cells = [] if own else [_f(res[V[0]][t][1])]
      for v in V:
        iv, maj, vd = res[v][t]
        cells += ([_f(maj)] if own else []) + [_fmt(iv) + {"yes": " ▲", "no": " ▼"}.get(vd.answer, "")]
      lines.append(f"| qa{t} | " + " | ".join(cells) + " |")
    body += [f"### Per task at {_tokens(b_max)} tokens, {_pct(q0)} replay: {label}", "",
             f"Accuracy over seeds [95 % interval] on {what}; ▲ above the task's majority-answer baseline (the "
             "interval excludes it), ▼ at or below it, unmarked: undecided.", "", *lines, ""]

  # --- synthetic vs original on the same test stories
  if oth is not None and g.crossed:
    lines = ["| test set | budget | trained on synthetic | trained on original | synthetic − original | better? |",
             "|---|---|---|---|---|---|"]
    for m in g.crossed:
      for b in B:
        a, o = g.values(syn, b, q0, f"babi_{m}_accuracy"), g.values(oth, b, q0, f"babi_{m}_accuracy")
        d = stats.diff_ci(a, o)
        lines.append(f"| bAbI-{m} (majority {_f(_test_majority(g, m))}) | "
                     f"{_tokens(b)} | {_fmt(stats.mean_ci(a))} | {_fmt(stats.mean_ci(o))} | {_fmt(d, '+.3f')} | "
                     f"{stats.verdict(d, '>', 0.0).answer} |")
    body += [f"### Synthetic vs original on the same test stories ({_pct(q0)} replay)", "",
             "Both variants' runs scored on each variant's held-out test stories (none of which is in either "
             "variant's training data).", "", *lines, ""]
  elif oth is not None:
    body += ["### Synthetic vs original", "", "Not compared on the same test stories: these runs were scored on "
             "their own variant's test only (train.babi_eval_modes unset), so their accuracies are on different "
             "questions.", ""]

  # --- learning curves
  sets = _test_sets(g)
  fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.2), squeeze=False)
  curves = {}
  for k, (label, prefix, _) in enumerate(sets):
    ax = axes[0, k]
    for i, v in enumerate(V):
      ivs = [stats.mean_ci(g.values(v, b, q0, f"{prefix}_accuracy")) for b in B]
      curves[(prefix, v)] = ivs
      ax.plot(B, [iv.estimate for iv in ivs], "o-", color=f"C{i}", label=f"trained on {v}")
      if all(iv.finite for iv in ivs):
        ax.fill_between(B, [iv.lo for iv in ivs], [iv.hi for iv in ivs], color=f"C{i}", alpha=0.15)
      maj = _own_majority(g, v) if prefix == "babi" else None
      if maj is not None:  # each run's own test: one baseline per variant
        ax.axhline(maj, color=f"C{i}", ls="--", lw=1, label=f"majority answer ({v} test) {maj:.3f}")
    maj = _test_majority(g, prefix[5:]) if prefix != "babi" else None
    if maj is not None:  # a shared test set: one baseline
      ax.axhline(maj, color="0.3", ls="--", lw=1, label=f"majority answer {maj:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("adaptation tokens")
    ax.set_ylabel("bAbI accuracy (mean over tasks)")
    ax.set_title(f"{label}, {_pct(q0)} replay (bands: 95 % over seeds)", fontsize=10)
    ax.legend(fontsize=7)
  body.append(st.figure(fig, "accuracy_vs_budget.png", "bAbI accuracy against the token budget, mean over seeds "
                        "with its 95 % bootstrap band, and the majority-answer baseline (dashed)"))
  lines = ["| test set | trained on | " + " | ".join(_tokens(b) for b in B) + " |", "|---|---|" + "---|" * len(B)]
  for label, prefix, _ in sets:
    for v in V:
      lines.append(f"| {label} | {v} | " + " | ".join(_fmt(iv) for iv in curves[(prefix, v)]) + " |")
  body += ["### Learning curves", "", *lines, ""]

  # --- heatmaps: accuracy and forgetting over ratio × budget (means over seeds)
  fig, axes = plt.subplots(len(V), 2, figsize=(10, 3.6 * len(V)), squeeze=False)
  mean = lambda xs: float(np.mean(xs)) if xs else np.nan
  for k, v in enumerate(V):
    acc = np.array([[mean(g.values(v, b, q, "babi_accuracy")) for b in B] for q in Q])
    fg = np.array([[mean(g.values(v, b, q, "forgetting")) for b in B] for q in Q])
    _heatmap(axes[k, 0], acc, B, Q, f"bAbI-{v}: accuracy on its own test, seed mean", ".2f", "viridis")
    _heatmap(axes[k, 1], fg, B, Q, f"bAbI-{v}: forgetting (base loss rise, nats), seed mean", ".3f", "magma_r")
  body.append(st.figure(fig, "heatmaps.png", "bAbI accuracy (left) and base-domain forgetting (right) over "
                           "budget × replay ratio, per target data variant, means over seeds"))
  for v in V:
    lines = ["| replay \\ budget | " + " | ".join(_tokens(b) for b in B) + " |", "|---|" + "---|" * len(B)]
    for q in Q:
      lines.append(f"| {_pct(q)} | " + " | ".join(
          _fmt(stats.mean_ci(g.values(v, b, q, "forgetting")), "+.3f") if (v, b, q) in g.cells else "–"
          for b in B) + " |")
    body += [f"### bAbI-{v}: forgetting (nats) per replay ratio × budget", "", *lines, ""]

  # --- guideline with intervals
  guide = {v: _guideline(g, v, thr) for v in V}
  lines = ["| budget | " + " | ".join(f"bAbI-{v}" for v in V) + " |", "|---|" + "---|" * len(V)]
  for b in B:
    lines.append(f"| {_tokens(b)} | " + " | ".join(guide[v][b]["text"] for v in V) + " |")
  body += ["### Guideline: smallest replay ratio keeping forgetting under the threshold", "",
           f"Threshold: forgetting (base-domain loss after − before) ≤ {_pct(thr)} of the base loss before "
           "adapting. Each entry: the smallest ratio whose mean over seeds is under it (its relative forgetting [95 % "
           "interval]), and the smallest ratio whose whole interval is under it (\"sure from\").", "", *lines, ""]

  # --- plateau
  pl, acc_by, per_budget = {}, {}, {}
  for v in V:
    qs = g.ratios_at_every_budget(v) or [q0]  # ratios run at every budget: like is compared with like
    per_budget[v] = {b: g.per_seed(v, "babi_accuracy", [b], qs) for b in B}
    acc_by[v] = {b: float(np.mean(x)) if x else float("nan") for b, x in per_budget[v].items()}
    pl[v] = plateau_budget({b: a for b, a in acc_by[v].items() if not math.isnan(a)}, tol)
  body += [f"Plateau budget (mean accuracy over seeds and the replay ratios run at every budget, within {tol:.2f} "
           "of the best budget's): " + ", ".join(f"bAbI-{v}: {_tokens(pl[v])} tokens" for v in V) + ".", ""]

  # ------------------------------------------------------------------------------------------------ claims
  for v in V:
    gaps = _gap_to_majority(g, v, b_max, q0)
    iv = stats.mean_ci(gaps)
    vd = stats.verdict(iv, ">", 0.0)
    per_task = _accuracy_vs_majority(g, v, "babi", b_max, q0)
    counts = {a: sum(x[2].answer == a for x in per_task.values()) for a in ("yes", "no", "inconclusive")}
    claims.append(_claim(
        f"Adapting to bAbI-{v} lifts accuracy above the per-task majority-answer baseline",
        f"at {_tokens(b_max)} tokens, {_pct(q0)} replay, own test: mean over tasks of accuracy − majority "
        f"{_fmt(iv, '+.3f')}" + (f"; tasks above their baseline: {counts['yes']} yes, {counts['no']} no, "
                                 f"{counts['inconclusive']} undecided of {len(per_task)}" if per_task else ""), vd))
  # plateau
  if len(B) >= 2:
    first, prev, last = per_budget[syn][B[0]], per_budget[syn][B[-2]], per_budget[syn][B[-1]]
    learned = stats.verdict(stats.diff_ci(last, first), ">", tol)
    step = stats.diff_ci(last, prev)
    little = stats.verdict(step, "<", tol)
    vd = little if learned.answer == stats.YES else stats.Verdict(
        stats.INCONCLUSIVE, f"no learning to plateau established ({learned.why})")
    claims.append(_claim(
        "Task accuracy plateaus at a budget (≈10^8.5 tokens for 1.7B); larger budgets add little",
        f"bAbI-{syn} mean accuracy by budget: " + ", ".join(f"{_tokens(b)}: {acc_by[syn][b]:.3f}" for b in B)
        + f"; gain over the range {_fmt(stats.diff_ci(last, first), '+.3f')}, from {_tokens(B[-2])} to "
        f"{_tokens(B[-1])} {_fmt(step, '+.3f')} ('little' = < {tol:.2f}); point plateau from {_tokens(pl[syn])}",
        vd))
  # 5–10 % replay enough
  q10 = [q for q in Q if 0 < q <= 0.10 + 1e-9]
  q_ref = q10[-1] if q10 else next((q for q in Q if q > 0.10), None)
  if q_ref is not None:
    parts, none_parts = [], []
    for b in B:
      parts.append(stats.verdict(stats.mean_ci(g.per_seed(syn, "rel_forgetting", [b], [q_ref])), "<", thr))
      none_parts.append(stats.verdict(stats.mean_ci(g.per_seed(syn, "rel_forgetting", [b], [q0])), "<", thr))
    vd = stats.all_of(*parts)
    nothing = q0 == 0 and all(p.answer == stats.YES for p in none_parts)
    if nothing:
      vd = stats.Verdict(stats.INCONCLUSIVE, "no replay already stays under the threshold: nothing to preserve")
    claims.append(_claim(
        "5–10 % replay is enough to preserve general knowledge",
        f"bAbI-{syn}, {_pct(q_ref)} replay{'' if q10 else ' (the grid has no ratio in 5–10 %: the nearest above)'}:"
        f" relative forgetting by budget " + ", ".join(
            f"{_tokens(b)}: {_fmt(stats.mean_ci(g.per_seed(syn, 'rel_forgetting', [b], [q_ref])), '.2%')}"
            for b in B) + f" against ≤ {_pct(thr)}", vd))
  # lower budgets need higher replay
  gs = guide[syn]
  small, large = gs[B[0]], gs[B[-1]]
  if not (small["complete"] and large["complete"]):
    vd = stats.Verdict(stats.INCONCLUSIVE, "not every replay ratio has run at both budgets yet")
  elif small["sure"] is None or large["sure"] is None:
    vd = stats.Verdict(stats.INCONCLUSIVE, f"fewer than {stats.MIN_VALUES} seeds: no interval decides a ratio")
  elif small["maybe"] > large["sure"]:
    vd = stats.Verdict(stats.YES, "even the least replay the smallest budget may need exceeds what the largest "
                                  "surely needs")
  elif small["sure"] <= large["maybe"]:
    vd = stats.Verdict(stats.NO, "the smallest budget surely needs no more replay than the largest may need")
  else:
    vd = stats.Verdict(stats.INCONCLUSIVE, "the guideline intervals of the two budgets overlap")
  claims.append(_claim(
      "Lower compute budgets need higher replay ratios to prevent forgetting",
      f"bAbI-{syn} guideline, smallest → largest budget: " + " → ".join(gs[b]["short"] for b in B), vd))
  # synthetic vs original
  if oth is not None:
    rq = [q for q in Q if (syn, b_max, q) in g.cells and (oth, b_max, q) in g.cells]
    if g.crossed:
      a = _crossed_per_seed(g, syn, b_max, rq)
      o = _crossed_per_seed(g, oth, b_max, rq)
      d = stats.diff_ci(a, o)
      vd = stats.verdict(d, ">", margin)
      what = (f"on the same held-out test stories ({' and '.join(f'bAbI-{m}' for m in g.crossed)}, mean), "
              f"{_tokens(b_max)} tokens, replay {', '.join(_pct(q) for q in rq)}: synthetic "
              f"{_fmt(stats.mean_ci(a))} vs original {_fmt(stats.mean_ci(o))}; difference {_fmt(d, '+.3f')}; "
              f"'much better' = > {margin:.2f}")
    else:
      a, o = g.per_seed(syn, "babi_accuracy", [b_max], rq), g.per_seed(oth, "babi_accuracy", [b_max], rq)
      vd = stats.Verdict(stats.INCONCLUSIVE, "each variant was scored on its own test stories only (different "
                                             "questions); set train.babi_eval_modes to compare them")
      what = (f"own test stories only: synthetic {_fmt(stats.mean_ci(a))} vs original {_fmt(stats.mean_ci(o))} at "
              f"{_tokens(b_max)} tokens")
    claims.append(_claim("bAbI-Synthetic (diverse) gives much better task mastery than bAbI-Original", what, vd))
    cells = [(b, q) for b in B for q in Q if (syn, b, q) in g.cells and (oth, b, q) in g.cells]
    fs = _per_seed_cells(g, syn, "forgetting", cells)
    fo = _per_seed_cells(g, oth, "forgetting", cells)
    d = stats.diff_ci(fs, fo)
    claims.append(_claim(
        "bAbI-Synthetic also retains general knowledge better",
        f"mean forgetting over {len(cells)} matched cells: synthetic {_fmt(stats.mean_ci(fs), '+.4f')} vs original "
        f"{_fmt(stats.mean_ci(fo), '+.4f')} nats; difference {_fmt(d, '+.4f')}", stats.verdict(d, "<", 0.0)))

  body += _scale_section(st, g, syn, thr, tol, guide)
  title = ("Study 1 (seed 000): bAbI adaptation — data variant × token budget × replay ratio × seed, synthetic vs "
           "original data")
  return title, "## Results\n\n" + "\n".join(body), claims


def _seed_label(x) -> str:
  return f"{x:g}" if isinstance(x, float) else str(x)


def _claim(claim: str, measured: str, vd: stats.Verdict) -> Claim:
  return Claim(claim, f"{measured} → {vd.answer}: {vd.why}", vd.reproduced)


def _f(v, spec=".3f") -> str:
  return "–" if v is None else format(v, spec)


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


def _guideline(g: _Grid, v: str, thr: float) -> dict:
  """Per budget: the smallest ratio under the threshold by its mean over seeds ("point"), surely (its interval
  under it: "sure") and possibly (its interval not wholly above it: "maybe"); a ratio above the grid is 1.0;
  "sure" and "maybe" are None where too few seeds decide anything. With text for the tables."""
  out = {}
  for b in g.budgets:
    ivs = {q: stats.mean_ci(rel) for q in g.ratios for rel in [g.per_seed(v, "rel_forgetting", [b], [q])] if rel}
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


def _what_it_would_take(g: _Grid, v: str, mastery: float) -> list[str]:
  """Budget at which each task's no-replay learning curve would reach `mastery`, by a straight line in
  log10(budget) through the seed means (≥ 2 budgets), and what one such run costs at the measured speed."""
  budgets = [b for b in g.budgets if g.values(v, b, 0.0, "babi_accuracy")]
  if len(budgets) < 2 or not g.tasks:
    return []
  reach = {}
  for t in g.tasks:
    acc = [float(np.mean(g.values(v, b, 0.0, f"babi_accuracy_qa{t}") or [np.nan])) for b in budgets]
    slope, icpt = np.polyfit(np.log10(budgets), acc, 1) if all(map(math.isfinite, acc)) else (np.nan, np.nan)
    reach[t] = 10 ** min((mastery - icpt) / slope, 13.0) if slope > 0 else None  # 10^13: "beyond 10^12"
  ranked = sorted((b, t) for t, b in reach.items() if b is not None)
  speed = [r["adapt_tokens"] / r["wall_seconds"] for b in budgets for r in g.cells[(v, b, 0.0)]
           if _num(r.get("wall_seconds"))]
  text = (f"What it would take, bAbI-{v}: a straight line in log(budget) through the no-replay means at "
          f"{', '.join(_tokens(b) for b in budgets)} tokens reaches {mastery:g} at "
          + ", ".join(f"qa{t} ≈ {_tokens(b) if b < 1e12 else 'beyond 10^12'}" for b, t in ranked)
          + (f"; never for {', '.join(f'qa{t}' for t, b in reach.items() if b is None)} (flat)"
             if any(b is None for b in reach.values()) else "") + " tokens")
  if len(ranked) >= 3 and speed:
    need = ranked[2][0]
    text += (f". The third task would need ≈ {_tokens(need)} tokens per run: ≈ {need / np.median(speed) / 3600:.1f} h "
             f"for each seed and replay ratio at the {np.median(speed):,.0f} tokens/s these runs measured (an "
             f"extrapolation from {len(budgets)} budgets, not a measurement; learning often turns on abruptly, so "
             "it may come sooner or later)")
  return [text + "."]


COPY_GAIN_MIN = 0.5  # nats: below it a model barely retrieves tokens from its context


def _copying(g: _Grid) -> tuple[bool, str] | None:
  """(whether the base lacks in-context copying, a line on it) from `copy_gain_before` / `copy_gain`: the base
  model's gain on a repeated random sequence, and per variant the no-replay runs' after adapting, per budget
  (runs that recorded it)."""
  before = [x for r in g.rows for x in [_num(r.get("copy_gain_before"))] if x is not None]
  if not before:
    return None
  lacks = float(np.mean(before)) < COPY_GAIN_MIN
  after = []
  for v in g.variants:
    gains = {b: [x for r in g.cells.get((v, b, 0.0), []) for x in [_num(r.get("copy_gain"))] if x is not None]
             for b in g.budgets}
    if any(gains.values()):
      after.append(f"bAbI-{v} " + ", ".join(f"{_tokens(b)} {_fmt(stats.mean_ci(x), '.2f')}"
                                            for b, x in gains.items() if x))
  text = (f"In-context copying (`eval/copy/gain`, data/copy_probe.py: how much lower the loss is on the second copy "
          f"of a repeated random sequence than on the first, nats): the base model {np.mean(before):.2f}"
          + (f" (< {COPY_GAIN_MIN:g}: it does not look tokens up in its context, which every question that asks "
             "for an entity named in the story needs)" if lacks else "")
          + ("; after adapting without replay: " + "; ".join(after) if after else "") + ".")
  return lacks, text


def _scale_section(st: Study, g: _Grid, syn: str, thr: float, tol: float, guide) -> list[str]:
  """What this scale can and cannot show, from the numbers: model, seeds, test size, resolution, floor effects."""
  rows = g.rows
  params = [x for r in rows for x in [_num(r.get("params"))] if x is not None]
  examples = [x for r in rows for x in [_num(r.get("babi_examples"))] if x is not None]
  widths = [stats.mean_ci(g.values(v, b, q, "babi_accuracy")).width for (v, b, q) in g.cells]
  widths = [w for w in widths if math.isfinite(w)]
  can, cannot = [], []
  seeds = min(len(runs) for runs in g.cells.values())
  size = f"{np.mean(params) / 1e6:.2g}M-parameter model" if params else "model"
  cannot.append(f"Scale: a {size} adapted with {_tokens(g.budgets[0])}–{_tokens(g.budgets[-1])} tokens; the paper's "
                "plateau (≈10^8.5 tokens for 1.7B parameters) and replay ratios are not tested at their scale, and "
                "nothing here extrapolates to it.")
  if seeds < stats.MIN_VALUES:
    cannot.append(f"Seeds: {seeds} per cell (< {stats.MIN_VALUES}), so no interval decides a claim: every verdict "
                  "is inconclusive whatever the means say.")
  elif widths:
    can.append(f"Resolution: ≥ {seeds} seeds per cell; the median 95 % interval of a cell's accuracy is "
               f"{np.median(widths):.3f} wide, so differences much smaller than that are not resolved.")
  if examples and g.tasks:
    can.append(f"Test size: ≈{np.mean(examples) / len(g.tasks):.0f} questions per task and run "
               f"({np.mean(examples):.0f} per run over {len(g.tasks)} tasks).")
  above = {v: sum(x[2].answer == stats.YES for x in _accuracy_vs_majority(
      g, v, "babi", g.budgets[-1], g.ratios[0]).values()) for v in g.variants}
  if g.tasks:
    for v, k in above.items():
      (can if k else cannot).append(
          f"bAbI-{v}: {k} of {len(g.tasks)} tasks surely above their majority-answer baseline at the largest budget"
          + ("; the others show no learning this model resolves, so mastery claims cover only those tasks." if k < len(
              g.tasks) else "."))
  mastery = st.claims_cfg.get("mastery_accuracy", 0.8)
  for v in g.variants:
    res = _accuracy_vs_majority(g, v, "babi", g.budgets[-1], g.ratios[0])
    sure = [t for t, (iv, _, _) in res.items() if iv.finite and min(iv.n) >= stats.MIN_VALUES and iv.lo >= mastery]
    means = [t for t, (iv, _, _) in res.items() if iv.estimate >= mastery]
    (can if len(sure) >= 3 else cannot).append(
        f"Mastery, bAbI-{v} at {_tokens(g.budgets[-1])} tokens without replay: {len(means)} of {len(g.tasks)} tasks "
        f"at mean accuracy ≥ {mastery:g} ({', '.join(f'qa{t}' for t in means) or 'none'}), {len(sure)} with the "
        f"whole interval (≥ {stats.MIN_VALUES} seeds) there (the design aims at ≥ 3)"
        + ("." if len(sure) >= 3 else "; the learning curves show how far the largest budget got."))
    if len(sure) < 3:
      cannot.extend(_what_it_would_take(g, v, mastery))
  copying = _copying(g)
  if copying:
    (cannot if copying[0] else can).append(copying[1])
  if g.crossed:
    can.append("Synthetic vs original is compared on the same held-out test stories of both variants.")
  else:
    cannot.append("Synthetic vs original: each run was scored on its own variant's test only, so the two are not "
                  "compared on the same questions.")
  cannot.append("The two variants differ in vocabulary and in the size of their story pool at once; which of the "
                "two causes a difference is not separated by this design.")
  none = [guide[syn][b]["point"] == 0 for b in g.budgets]
  if g.ratios[0] == 0 and all(none):
    cannot.append(f"Forgetting without replay already stays under {_pct(thr)} of the base loss at every budget: "
                  "the replay guideline has nothing to prevent here.")
  return (["### What this scale can and cannot show", ""] + (["Can show:", ""] + [f"- {x}" for x in can] + [""]
                                                             if can else []) +
          ["Cannot show:", ""] + [f"- {x}" for x in cannot] + [""])
