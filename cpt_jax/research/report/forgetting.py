"""Study 2 (seed 001): forgetting by replay source, loss and λ, in two pretraining regimes, over seeds.

results.csv has one row per adaptation run (cell × seed): replay_kind (none | real | self), replay_loss
(ntp | kl), replay_coeff (λ), replay_ratio, target_loss, base_loss, base_loss_before, forgetting, seed.
A *regime* is one pretraining run, (size, PTPP): low vs high tokens per parameter, each with its own
validation curve in DIR/pretrain/<size>_ptpp<P>/metrics.jsonl (`eval/base/loss` at `tokens`).

Every quantity is a mean over seeds with a 95 % bootstrap interval and every verdict is read off an
interval (cpt_jax/research/stats.py), never off a point estimate:
  (a) each replay method (real/self × NTP/KL, at the λ they share) forgets less than no replay; and
      self-generated replay "nearly eliminates" it at low PTPP: forgetting ÷ no replay < `nearly_eliminates`
  (b) self ≈ real: (self − real) ÷ no-replay forgetting within ±`same_as_real`, for NTP and for KL
  (c) KL vs NTP: KL forgets less on real (off-policy) data, and by more than on self-generated data
  (λ) a larger λ trades less forgetting for a higher target loss (smallest vs largest λ of the sweep)
  (d) capacity: the forgetting floor (least forgetting over no replay and the λ sweep, per seed, among runs
      keeping ≥ `floor_min_gain_share` of the no-replay target gain) is higher at high PTPP
and each run's compute multiplier (Marek et al., arXiv 2605.26097): the first point of its regime's pretraining
curve whose base loss ≤ the run's base loss after adapting, ÷ the regime's pretraining tokens, clipped to
[0, 1] (1 if never reached): the share of pretraining compute the adapted model is still worth.

`claims` keys: nearly_eliminates, same_as_real; optional floor_min_gain_share (0.9) and compare_coeff (the λ
at which methods are compared; default: the λ most replay methods share).
"""

from __future__ import annotations


import numpy as np

from cpt_jax.research import stats
from cpt_jax.research.report.common import Claim, Study, _plt, markdown_table
from cpt_jax.research.report.forgetting_runs import METHODS, NO_REPLAY, Runs, method_label

# ------------------------------------------------------------------------------------------- report

def _fmt(iv: stats.Interval, spec: str = "+.4f") -> str:
  return iv.format(spec)


def _claim(text: str, measured: str, v: stats.Verdict) -> Claim:
  return Claim(text, measured if v.answer == "yes" else f"{measured}. Verdict {v.answer}: {v.why}", v.reproduced)


def _regime_name(g, sizes) -> str:
  return f"PTPP {g[1]:g}" + (f", size {g[0]}" if len(sizes) > 1 else "")


def forgetting_report(st: Study):
  cc = st.claims_cfg
  near, same = float(cc.get("nearly_eliminates", 0.25)), float(cc.get("same_as_real", 0.25))
  gain_share = float(cc.get("floor_min_gain_share", 0.9))
  R = Runs.of(st)
  regimes, sizes = R.regimes, R.sizes
  ref = R.reference(cc.get("compare_coeff"))
  ratio, lam = (next(iter(ref.values())).ratio, next(iter(ref.values())).coeff) if ref else (0.0, 0.0)
  sweep = R.sweep(ratio)
  name = lambda g: _regime_name(g, sizes)
  claims: list[Claim] = []
  diffs: list[stats.Interval] = []  # every between-setting difference, for the resolution section

  # (a) replay reduces forgetting; self-generated replay nearly eliminates it at low PTPP
  for g in regimes:
    none = R.values(g, NO_REPLAY, "forgetting")
    parts, vs = [], []
    for m in METHODS:
      if m in ref and len(R.runs(g, ref[m])) and len(none):
        iv = stats.diff_ci(none, R.values(g, ref[m], "forgetting"))
        diffs.append(iv)
        parts.append(f"{method_label(m)} {_fmt(iv)}")
        vs.append(stats.verdict(iv, ">", 0.0, what=method_label(m)))
    if vs:
      claims.append(_claim(
          f"Replay (real/self-generated, NTP/KL) reduces forgetting vs no replay ({name(g)}, λ={lam:g})",
          "no-replay − replay forgetting, nats: " + "; ".join(parts) + " (claim: > 0 for each)", stats.all_of(*vs)))
  for size in sizes:
    low = min(g for g in regimes if g[0] == size)
    none = R.values(low, NO_REPLAY, "forgetting")
    parts, vs = [], []
    for m in (("self", "ntp"), ("self", "kl")):
      if m in ref and len(R.runs(low, ref[m])) and len(none):
        iv = stats.ratio_ci(R.values(low, ref[m], "forgetting"), none)
        parts.append(f"{method_label(m)} {_fmt(iv, '.3f')}")
        vs.append(stats.verdict(iv, "<", near, what=method_label(m)))
    if vs:
      claims.append(_claim(
          f"Self-generated replay nearly eliminates forgetting with spare capacity ({name(low)}, the low-PTPP regime)",
          "forgetting ÷ no-replay forgetting: " + "; ".join(parts) + f" ('nearly eliminates' = < {near:g})",
          stats.all_of(*vs)))

  # (b) self ≈ real, relative to no-replay forgetting
  rel = lambda s, r, n: (s.mean(-1) - r.mean(-1)) / n.mean(-1)
  for g in regimes:
    none = R.values(g, NO_REPLAY, "forgetting")
    parts, vs = [], []
    for loss in ("ntp", "kl"):
      s, r = ref.get(("self", loss)), ref.get(("real", loss))
      if s and r and len(R.runs(g, s)) and len(R.runs(g, r)) and len(none):
        iv = stats.bootstrap(rel, R.values(g, s, "forgetting"), R.values(g, r, "forgetting"), none)
        parts.append(f"{loss.upper()} {_fmt(iv, '+.3f')}")
        vs.append(stats.verdict(iv, "within", same, what=loss.upper()))
    if vs:
      claims.append(_claim(
          f"Self-generated replay works about as well as real data ({name(g)})",
          "(self − real forgetting) ÷ no-replay forgetting: " + "; ".join(parts)
          + f" ('about as well' = within ±{same:g})", stats.all_of(*vs)))

  # (c) KL vs NTP: better on real (off-policy) data, and by more than on self-generated data
  adv = lambda rn, rk, sn, sk: (rn.mean(-1) - rk.mean(-1)) - (sn.mean(-1) - sk.mean(-1))
  for g in regimes:
    need = [ref.get(m) for m in (("real", "ntp"), ("real", "kl"), ("self", "ntp"), ("self", "kl"))]
    if not all(s and len(R.runs(g, s)) for s in need):
      continue
    rn, rk, sn, sk = (R.values(g, s, "forgetting") for s in need)
    real, selfg, gap = stats.diff_ci(rn, rk), stats.diff_ci(sn, sk), stats.bootstrap(adv, rn, rk, sn, sk)
    diffs += [real, selfg]
    claims.append(_claim(
        f"KL beats NTP: much on off-policy (real) data, slightly on self-generated data ({name(g)})",
        f"NTP − KL forgetting, nats: real {_fmt(real)}; self-generated {_fmt(selfg)}; real − self advantage "
        f"{_fmt(gap)} (claim: the real advantage > 0 and > the self-generated one)",
        stats.all_of(stats.verdict(real, ">", 0.0, what="real"), stats.verdict(gap, ">", 0.0, what="real − self"))))

  # (λ) larger λ: less forgetting, higher target loss
  if len(sweep) >= 2:
    lo_s, hi_s = sweep[0], sweep[-1]
    for g in regimes:
      if not (len(R.runs(g, lo_s)) and len(R.runs(g, hi_s))):
        continue
      f = stats.diff_ci(R.values(g, lo_s, "forgetting"), R.values(g, hi_s, "forgetting"))
      t = stats.diff_ci(R.values(g, hi_s, "target_loss"), R.values(g, lo_s, "target_loss"))
      claims.append(_claim(
          f"Larger λ trades less forgetting for a higher target loss ({name(g)})",
          f"{method_label(lo_s.method)} λ {lo_s.coeff:g} → {hi_s.coeff:g}: forgetting falls by {_fmt(f)} nats, target "
          f"loss rises by {_fmt(t)} (claim: both > 0)",
          stats.all_of(stats.verdict(f, ">", 0.0, what="forgetting"), stats.verdict(t, ">", 0.0, what="target loss"))))

  # (d) capacity: the forgetting floor is higher at high PTPP
  floor_by = {}
  for g in regimes:
    floor_by[g] = R.floors(g, sweep, gain_share)
  for size in sizes:
    gs = [g for g in regimes if g[0] == size]
    if len(gs) < 2:
      continue
    low, high = gs[0], gs[-1]
    (fl, rule), (fh, _) = floor_by[low], floor_by[high]
    vl, vh = (np.array([r["forgetting"] for r in x]) for x in (fl, fh))
    d = stats.diff_ci(vh, vl)
    cm = lambda rows: stats.mean_ci([r["compute_multiplier"] for r in rows if r["compute_multiplier"] is not None])
    cml, cmh = cm(fl), cm(fh)
    n0 = stats.diff_ci(R.values(high, NO_REPLAY, "forgetting"), R.values(low, NO_REPLAY, "forgetting"))
    cm_txt = (f"; compute multiplier of the floor runs: {name(low)} {_fmt(cml, '.2f')}, {name(high)} "
              f"{_fmt(cmh, '.2f')}" if cml.finite or cmh.finite else "; no pretraining curves: no compute multiplier")
    sweep_txt = f"{method_label(sweep[0].method)} λ ∈ {{{', '.join(f'{s.coeff:g}' for s in sweep)}}}" if sweep \
        else "no λ sweep"
    claims.append(_claim(
        "Forgetting persists without spare capacity: the forgetting floor is higher at high PTPP",
        f"floor per seed (least forgetting over no replay and {sweep_txt}, among runs with {rule}): "
        f"{name(low)} {_fmt(stats.mean_ci(vl))} ({len(vl)} seeds), {name(high)} {_fmt(stats.mean_ci(vh))} "
        f"({len(vh)} seeds); high − low {_fmt(d)} nats{cm_txt}; no-replay forgetting high − low {_fmt(n0)} "
        "(claim: high − low floor > 0)", stats.verdict(d, ">", 0.0)))

  body = _tables(R, regimes, name) + _figures(st, R, regimes, name) + _scale_section(R, regimes, ref, diffs, floor_by,
                                                                                     gain_share, name)
  title = "Study 2 (seed 001): forgetting — replay source, loss, λ, and capacity (English → Spanish)"
  intro = ("Forgetting = English (base) validation loss after adapting − before, in nats; target = Spanish validation "
           "loss. Each value is the mean over seeds with its 95 % bootstrap interval `mean [lo, hi]` (expanded "
           "percentile bootstrap, 10,000 resamples, fixed seed: `cpt_jax/research/stats.py`); a verdict is **yes** "
           "only when the whole interval lies on the claim's side, **no** when it lies wholly on the other side, "
           "else inconclusive, and inconclusive with fewer than 3 seeds. Compute multiplier = the first point of the "
           "regime's own pretraining curve whose base loss ≤ the run's base loss after adapting, ÷ that run's "
           "pretraining tokens (1 = nothing lost).\n\n")
  return title, "## Results\n\n" + intro + "\n".join(body), claims


def _tables(R: Runs, regimes, name) -> list[str]:
  out = []
  for g in regimes:
    none_f = R.values(g, NO_REPLAY, "forgetting")
    rows = []
    for s in R.settings(g):
      f = R.values(g, s, "forgetting")
      rows.append({
          "setting": s.label, "ratio": f"{s.ratio:g}" if s.kind != "none" else "–", "n": len(R.runs(g, s)),
          "forgetting": _fmt(stats.mean_ci(f)), "target": _fmt(stats.mean_ci(R.values(g, s, "target_loss")), ".3f"),
          "cm": _fmt(stats.mean_ci(R.values(g, s, "compute_multiplier")), ".2f"),
          "share": _fmt(stats.ratio_ci(f, none_f), ".2f") if len(none_f) and s.kind != "none" else "–"})
    first = R.runs(g, R.settings(g)[0])[0]
    c = R.curves[g]
    curve = (f"pretraining curve `{c.source}`: {len(c.tokens)} evaluations up to {c.total:,.0f} tokens" if c else
             "no pretraining curve found (compute multipliers undefined)")
    out += [f"### {name(g)} (base loss before adapting {first['base_loss_before']:.3f}; {curve})", "",
            markdown_table(rows, [("setting", "setting", "s"), ("replay ratio", "ratio", "s"), ("seeds", "n", "d"),
                                  ("forgetting (nats)", "forgetting", "s"), ("÷ no replay", "share", "s"),
                                  ("Spanish loss after", "target", "s"), ("compute multiplier", "cm", "s")]), ""]
  return out


def _figures(st: Study, R: Runs, regimes, name) -> list[str]:
  plt = _plt()
  out = []
  settings = R.settings()
  fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(settings)), 3.8))
  w = 0.8 / len(regimes)
  for k, g in enumerate(regimes):
    ivs = [stats.mean_ci(R.values(g, s, "forgetting")) for s in settings]
    x = np.arange(len(settings)) + k * w
    est = np.array([iv.estimate for iv in ivs])
    err = np.array([[iv.estimate - iv.lo, iv.hi - iv.estimate] for iv in ivs]).T
    ax.bar(x, est, w, yerr=np.nan_to_num(err), capsize=3, color=f"C{k}", alpha=0.8, label=name(g))
    for xi, s in zip(x, settings):
      v = R.values(g, s, "forgetting")
      ax.plot(np.full(len(v), xi), v, "k.", ms=3)
  ax.set_xticks(np.arange(len(settings)) + w * (len(regimes) - 1) / 2, [s.label for s in settings], rotation=20,
                fontsize=8)
  ax.axhline(0, color="gray", lw=0.5)
  ax.set_ylabel("forgetting (English loss rise, nats)")
  ax.legend(fontsize=8)
  out.append(st.figure(fig, "forgetting_by_method.png", "Forgetting per setting and regime: mean over seeds (bars), "
                       "95 % bootstrap interval, and each seed (dots)"))

  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  for k, g in enumerate(regimes):
    for s in R.settings(g):
      f, t = stats.mean_ci(R.values(g, s, "forgetting")), stats.mean_ci(R.values(g, s, "target_loss"))
      ax.errorbar(f.estimate, t.estimate, xerr=[[max(f.estimate - f.lo, 0)], [max(f.hi - f.estimate, 0)]],
                  yerr=[[max(t.estimate - t.lo, 0)], [max(t.hi - t.estimate, 0)]], fmt="o", color=f"C{k}", ms=4,
                  capsize=2, label=name(g) if s == R.settings(g)[0] else None)
      ax.annotate(s.label, (f.estimate, t.estimate), fontsize=6, xytext=(3, 3), textcoords="offset points")
  ax.set_xlabel("forgetting (nats)")
  ax.set_ylabel("Spanish loss after adapting")
  ax.legend(fontsize=8)
  out.append(st.figure(fig, "tradeoff.png", "Target loss against forgetting, means with 95 % bootstrap intervals"))

  with_curve = [g for g in regimes if R.curves[g] is not None]
  if with_curve:
    fig, axes = plt.subplots(1, len(with_curve), figsize=(5.2 * len(with_curve), 3.8), squeeze=False)
    for ax, g in zip(axes[0], with_curve):
      c = R.curves[g]
      ax.plot(c.tokens / c.total, c.loss, "k.-", lw=1, label="pretraining curve")
      for k, s in enumerate(R.settings(g)):
        b, m = R.values(g, s, "base_loss"), R.values(g, s, "compute_multiplier")
        ax.plot(m, b, "o", color=f"C{k}", ms=4, alpha=0.7, label=s.label)
      ax.set_xlabel("share of pretraining tokens")
      ax.set_ylabel("English loss")
      ax.set_ylim(min(c.loss.min(), *(r["base_loss"] for r in R.rows if r["regime"] == g)) - 0.05,
                  max(c.loss[len(c.loss) // 4:].max(), *(r["base_loss"] for r in R.rows if r["regime"] == g)) + 0.05)
      ax.set_title(name(g), fontsize=10)
      ax.legend(fontsize=6)
    out.append(st.figure(fig, "compute_multiplier.png", "Each run's English loss after adapting placed on its "
                         "regime's pretraining curve: its x is the compute multiplier"))
  return out


def _scale_section(R: Runs, regimes, ref, diffs, floor_by, gain_share, name) -> list[str]:
  """What the numbers can resolve at this scale, written from the numbers."""
  lines = ["## What this scale can and cannot show", ""]
  params = sorted({r["params"] for r in R.rows})
  ptpps = sorted({g[1] for g in regimes})
  lines.append(f"- **Model and regimes.** {', '.join(f'{p:,.0f}' for p in params)} parameters, pretrained to PTPP "
               f"{' and '.join(f'{p:g}' for p in ptpps)}"
               + (f" ({ptpps[-1] / ptpps[0]:.0f}× apart)" if len(ptpps) > 1 else "")
               + ". The paper's capacity comparison is 20 vs ~17,000 TPP (850×) on 6M-parameter models, and its "
               "size slices run 6M–46M: a smaller gap here means a smaller capacity effect to find.")
  n_seeds = [len(R.runs(g, s)) for g in regimes for s in R.settings(g)]
  if n_seeds:
    n_txt = f"{min(n_seeds)}" if min(n_seeds) == max(n_seeds) else f"{min(n_seeds)}–{max(n_seeds)}"
    lines.append(f"- **Seeds.** {n_txt} runs per setting and regime. Verdicts need ≥ 3; with 3 "
                 "vs 3 seeds even a perfect separation of the two groups happens by chance 1 time in 20, so a "
                 "**yes** from 3 seeds is a 5 %-level result at best.")
  half = [iv.width / 2 for iv in diffs if iv.finite]
  nonef = [float(np.mean(R.values(g, NO_REPLAY, "forgetting"))) for g in regimes if len(R.values(g, NO_REPLAY,
                                                                                                   "forgetting"))]
  if half:
    h = float(np.median(half))
    rel = f", {h / np.mean(nonef):.0%} of the mean no-replay forgetting ({np.mean(nonef):.3f} nats)" if nonef else ""
    lines.append(f"- **Resolution.** The median 95 % interval of a difference between two settings' mean forgetting "
                 f"is ±{h:.4f} nats{rel}: two settings closer than that cannot be told apart from seed noise here "
                 "(e.g. the paper's ≈0.005-nat spread among its four replay variants).")
  curves = {g: R.curves[g] for g in regimes if R.curves[g] is not None}
  if curves:
    lines.append("- **Compute multiplier.** " + "; ".join(
        f"{name(g)}: {len(c.tokens)} pretraining evaluations, so multipliers move in steps of up to {c.resolution:.0%}"
        for g, c in curves.items()) + ". A difference smaller than a step is invisible; the paper reads it off "
        "curves with many more points.")
  else:
    lines.append("- **Compute multiplier.** No pretraining curve was found "
                 "(DIR/pretrain/<size>_ptpp<P>/metrics.jsonl), so it is not reported.")
  lines.append("- **One pretraining run per regime.** Seeds vary the adaptation (data order, replay samples), not the "
               "pretraining, so the capacity comparison is between two pretraining runs: its interval does not include "
               "pretraining-run variance.")
  kept = "; ".join(f"{name(g)}: {len(floor_by[g][0])} of {len({r['seed'] for r in R.rows if r['regime'] == g})} seeds"
                   for g in regimes)
  lines.append(f"- **Fixed budgets.** Every run adapts for the same token budget, while the paper stops each run at a "
               f"target loss, so runs are compared at unequal target gains. The floor keeps only runs that reached "
               f"≥ {gain_share:g} of the no-replay gain (seeds with such a run: {kept}).")
  if ref:
    lam = sorted({s.coeff for s in ref.values()})
    lines.append(f"- **λ.** Methods are compared at λ = {', '.join(f'{x:g}' for x in lam)} (the λ they share); the "
                 "paper compares them at λ = 10.")
  return lines + [""]
