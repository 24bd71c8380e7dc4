"""Study 1 (seed 000): bAbI as the target — data variant × budget × replay ratio × seed; the replay guideline.

Every accuracy is read against its task's majority-answer baseline, and every verdict comes from a 95 %
bootstrap interval over seeds (`cpt_jax.research.stats`): yes only when the interval excludes the
alternative, no when it excludes the claim, else inconclusive (always so with fewer than 3 seeds). Synthetic
and original runs are compared on the same test stories (crossed scoring, `babi_<variant>_accuracy`); where a
study did not score them so, that comparison is not made.
"""

from __future__ import annotations

import math

import numpy as np

from cpt_jax.research import stats
from cpt_jax.research.report.common import Claim, Study, _heatmap, _pct, _plt, _tokens, planned_cells
from cpt_jax.research.report.babi_grid import (_accuracy_vs_majority, _crossed_per_seed, _fmt,
                                               _gap_to_majority, _Grid, _guideline, _own_majority,
                                               _per_seed_cells, _test_majority, _test_sets, plateau_budget,
                                               rel_loss_rise)
from cpt_jax.research.report.babi_scale import _scale_section, copying_phases, pretrained_reference


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
  expected = planned_cells(st.config) or len(V) * len(B) * len(Q)
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
  share = ("replay_token_share", "replay's share of the scored tokens (the gradient's weight on replay)", ".1%")
  for v in V:
    shared = any(g.values(v, b, q, share[0]) for b in B for q in Q if q > 0)
    for key, what, spec in (("babi_accuracy", "accuracy on its own test", ".3f"),
                            ("forgetting", "forgetting (nats)", "+.3f")) + ((share,) if shared else ()):
      lines = ["| replay \\ budget | " + " | ".join(_tokens(b) for b in B) + " |", "|---|" + "---|" * len(B)]
      for q in Q:
        lines.append(f"| {_pct(q)} | " + " | ".join(
            _fmt(stats.mean_ci(g.values(v, b, q, key)), spec) if (v, b, q) in g.cells else "–" for b in B) + " |")
      body += [f"### bAbI-{v}: {what} per replay ratio × budget", "", *lines, ""]

  # --- guideline with intervals
  # forgetting counts from where adaptation starts and, after a copying phase, also from the pretrained model
  pre = pretrained_reference(copying_phases(st.root), st.rows)
  refs = [("", None)] + ([(f", from the pretrained model ({pre:.3f})", pre)] if pre is not None else [])
  guides = [{v: _guideline(g, v, thr, p) for v in V} for _, p in refs]
  guide = guides[0]
  # the variants and budgets with replay cells: a guideline elsewhere would only restate the no-replay cell
  replayed = {(v, b) for v, b, q in g.cells if q > 0}
  RV, RB = [v for v in V if any(v == x for x, _ in replayed)], [b for b in B if any(b == y for _, y in replayed)]
  lines = ["| budget | " + " | ".join(f"bAbI-{v}{label}" for v in RV for label, _ in refs) + " |",
           "|---|" + "---|" * (len(RV) * len(refs))]
  for b in RB:
    lines.append(f"| {_tokens(b)} | " + " | ".join(gd[v][b]["text"] for v in RV for gd in guides) + " |")
  unreplayed = [f"bAbI-{v}" for v in V if v not in RV] + [f"{_tokens(b)} tokens" for b in B if b not in RB]
  body += ["### Guideline: smallest replay ratio keeping forgetting under the threshold", "",
           f"Threshold: forgetting (base-domain loss after − before) ≤ {_pct(thr)} of the base loss before "
           "adapting" + (f"; in the columns \"from the pretrained model\", the base loss after adapting ≤ "
                         f"{_pct(thr)} above the pretrained model's ({pre:.3f}, before the copying phase)"
                         if pre is not None else "")
           + ". Each entry: the smallest ratio whose mean over seeds is under it (its relative forgetting [95 % "
           "interval]), and the smallest ratio whose whole interval is under it (\"sure from\")."
           + (f" Not in the table (no replay cell run): {', '.join(unreplayed)}." if unreplayed else ""),
           "", *(lines if RV else ["No replay cell has run yet."]), ""]

  # --- plateau
  pl, acc_by, per_budget = {}, {}, {}
  for v in V:
    qs = g.ratios_at_every_budget(v) or [q0]  # ratios run at every budget: like is compared with like
    per_budget[v] = {b: g.per_seed(v, "babi_accuracy", [b], qs) for b in B}
    acc_by[v] = {b: float(np.mean(x)) if x else float("nan") for b, x in per_budget[v].items()}
    pl[v] = plateau_budget({b: a for b, a in acc_by[v].items() if not math.isnan(a)}, tol)
  body += [f"Plateau budget (mean accuracy over seeds and the replay ratios run at every budget, within {tol:.2f} "
           "of the best budget's): " + ", ".join(
               f"bAbI-{v}: " + (f"{_tokens(pl[v])} tokens" if pl[v] != B[-1] or len(B) < 2 else
                                f"{_tokens(B[-1])} tokens, the largest budget run (no plateau located)")
               for v in V) + ".", ""]

  # ------------------------------------------------------------------------------------------------ claims
  for v in V:
    iv = _gap_to_majority(g, v, b_max, q0)
    vd = stats.verdict(iv, ">", 0.0)
    per_task = _accuracy_vs_majority(g, v, "babi", b_max, q0)
    counts = {a: sum(x[2].answer == a for x in per_task.values()) for a in ("yes", "no", "inconclusive")}
    claims.append(_claim(
        f"Adapting to bAbI-{v} lifts accuracy above the per-task majority-answer baseline",
        f"at {_tokens(b_max)} tokens, {_pct(q0)} replay, own test: mean over tasks of accuracy − majority "
        f"{_fmt(iv, '+.3f')}" + (f"; tasks above their baseline: {counts['yes']} yes, {counts['no']} no, "
                                 f"{counts['inconclusive']} undecided of {len(per_task)}" if per_task else ""), vd))
  # plateau
  rising = None
  if len(B) >= 2:
    first, prev, last = per_budget[syn][B[0]], per_budget[syn][B[-2]], per_budget[syn][B[-1]]
    learned = stats.verdict(stats.diff_ci(last, first), ">", tol)
    step = stats.diff_ci(last, prev)
    little = stats.verdict(step, "<", tol)
    vd = little if learned.answer == stats.YES else stats.Verdict(
        stats.INCONCLUSIVE, f"no learning to plateau established ({learned.why})")
    if vd.answer == stats.NO:  # still rising at the grid's end says nothing of a plateau beyond it
      rising = (B[-2], B[-1], step)
      vd = stats.Verdict(stats.INCONCLUSIVE, f"still rising at the largest budget run ({little.why}): a plateau, if "
                                             f"there is one, lies beyond {_tokens(B[-1])} tokens")
    claims.append(_claim(
        "Task accuracy plateaus at a budget (≈10^8.5 tokens for 1.7B); larger budgets add little",
        f"bAbI-{syn} mean accuracy by budget: " + ", ".join(f"{_tokens(b)}: {acc_by[syn][b]:.3f}" for b in B)
        + f"; gain over the range {_fmt(stats.diff_ci(last, first), '+.3f')}, from {_tokens(B[-2])} to "
        f"{_tokens(B[-1])} {_fmt(step, '+.3f')} ('little' = < {tol:.2f}); point plateau from {_tokens(pl[syn])}",
        vd))
  # 5–10 % replay enough
  q10 = [q for q in Q if 0 < q <= 0.10 + 1e-9]
  q_ref = q10[-1] if q10 else next((q for q in Q if q > 0.10), None)
  # the budgets the replay ratios ran at (a design may run its largest budgets without replay only; a grid whose
  # replay cells have not run yet has none)
  GB = [b for b in B if any((syn, b, q) in g.cells for q in Q if q > 0)]
  if q_ref is not None:
    parts, none_parts = [], []
    for b in GB:
      parts.append(stats.verdict(stats.mean_ci(g.per_seed(syn, "rel_forgetting", [b], [q_ref])), "<", thr))
      none_parts.append(stats.verdict(stats.mean_ci(g.per_seed(syn, "rel_forgetting", [b], [q0])), "<", thr))
    vd = stats.all_of(*parts)
    nothing = q0 == 0 and all(p.answer == stats.YES for p in none_parts)
    if nothing:
      vd = stats.Verdict(stats.INCONCLUSIVE, "no replay already stays under the threshold: nothing to preserve")
    # after a copying phase, forgetting from the adapted start can hide a loss against the pretrained model (and
    # replay can win the phase's loss back): the claim holds only if it holds from both
    from_pretrained = ""
    if pre is not None:
      rel = {b: stats.mean_ci(rel_loss_rise(g, syn, b, q_ref, pre)) for b in GB}
      from_pretrained = (f"; from the pretrained model instead (before the copying phase, base loss {pre:.3f}): "
                          + ", ".join(f"{_tokens(b)}: {_fmt(iv, '+.2%')}" for b, iv in rel.items()))
      other = stats.all_of(*(stats.verdict(iv, "<", thr) for iv in rel.values()))
      if vd.answer != stats.INCONCLUSIVE and other.answer != vd.answer and not nothing:
        vd = stats.Verdict(stats.INCONCLUSIVE, f"{vd.answer} from where adaptation starts, {other.answer} from "
                                               "the pretrained model (before the copying phase)")
    claims.append(_claim(
        "5–10 % replay is enough to preserve general knowledge",
        f"bAbI-{syn}, {_pct(q_ref)} replay{'' if q10 else ' (the grid has no ratio in 5–10 %: the nearest above)'}:"
        f" relative forgetting by budget " + ", ".join(
            f"{_tokens(b)}: {_fmt(stats.mean_ci(g.per_seed(syn, 'rel_forgetting', [b], [q_ref])), '.2%')}"
            for b in GB) + f" against ≤ {_pct(thr)}" + from_pretrained, vd))
  # lower budgets need higher replay
  per_ref = [_lower_budgets_need_more(gd[syn], GB) for gd in guides]
  vd = per_ref[0]
  if len(per_ref) > 1 and per_ref[1].answer != vd.answer:
    vd = stats.Verdict(stats.INCONCLUSIVE, f"{vd.answer} from where adaptation starts ({vd.why}), {per_ref[1].answer} "
                                           f"from the pretrained model before the copying phase ({per_ref[1].why}); "
                                           "neither separates forgetting from winning back the copying phase's loss")
  claims.append(_claim(
      "Lower compute budgets need higher replay ratios to prevent forgetting",
      f"bAbI-{syn} guideline, smallest → largest budget with replay: " + "; ".join(
          ("from the pretrained model: " if k else "")
          + (" → ".join(gd[syn][b]["short"] for b in GB) if GB else "no replay run yet")
          for k, gd in enumerate(guides)), vd))
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

  body += _scale_section(st, g, syn, thr, tol, guide, rising)
  title = ("Study 1 (seed 000): bAbI adaptation — data variant × token budget × replay ratio × seed, synthetic vs "
           "original data")
  return title, "## Results\n\n" + "\n".join(body), claims


def _lower_budgets_need_more(gs: dict, GB: list) -> stats.Verdict:
  """Does the smallest budget with replay need a larger replay ratio than the largest, by the guideline `gs`?"""
  small, large = (gs[GB[0]], gs[GB[-1]]) if GB else (None, None)
  if len(GB) < 2:
    return stats.Verdict(stats.INCONCLUSIVE, f"the replay ratios ran at {'one budget only' if GB else 'no budget yet'}")
  if small["sure"] is None or large["sure"] is None:  # (a ratio not run yet below a decided one makes it None)
    complete = small["complete"] and large["complete"]
    return stats.Verdict(stats.INCONCLUSIVE, f"fewer than {stats.MIN_VALUES} seeds: no interval decides a ratio"
                         if complete else "not every replay ratio has run at both budgets yet")
  # each budget's need lies above the ratio below its "maybe" and at most at its "sure"
  if small["maybe"] > large["sure"]:
    return stats.Verdict(stats.YES, "even the least replay the smallest budget may need exceeds what the largest "
                                    "surely needs")
  if small["sure"] < large["maybe"]:
    return stats.Verdict(stats.NO, "the smallest budget surely needs less replay than the largest may need")
  return stats.Verdict(stats.INCONCLUSIVE, "the guideline intervals of the two budgets overlap")


def _seed_label(x) -> str:
  return f"{x:g}" if isinstance(x, float) else str(x)


def _claim(claim: str, measured: str, vd: stats.Verdict) -> Claim:
  return Claim(claim, f"{measured} → {vd.answer}: {vd.why}", vd.reproduced)


def _f(v, spec=".3f") -> str:
  return "–" if v is None else format(v, spec)
