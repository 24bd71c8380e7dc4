"""The bAbI report's "what this scale can and cannot show": model size, seeds, test size, mastery, what reaching
it would take, the base model's in-context copying, and what the design cannot separate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from cpt_jax.research import stats
from cpt_jax.research.report.babi_grid import _accuracy_vs_majority, _fmt, _Grid, _num
from cpt_jax.research.report.common import Study, _pct, _tokens


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


def copying_phases(root: Path) -> list[tuple[str, float, float]]:
  """(name, base loss before, base loss after) of each copying phase (`midtrain/*`) the adaptation runs start from:
  their "before" is the phase's end, not the pretrained model."""
  out = []
  for run in sorted((root / "midtrain").glob("*/summary.json")) if (root / "midtrain").is_dir() else []:
    s = json.loads(run.read_text())
    before, after = (s.get("before") or {}).get("eval/base/loss"), (s.get("final") or {}).get("eval/base/loss")
    if before is not None and after is not None:
      out.append((run.parent.name, float(before), float(after)))
  return out


def pretrained_reference(phases: list[tuple[str, float, float]], rows) -> float | None:
  """The pretrained model's base loss, where every run with a recorded start began from the end of one copying
  phase (its final base loss is their `base_loss_before`); None without one, or where runs began from several."""
  starts = {x for r in rows for x in [_num(r.get("base_loss_before"))] if x is not None}
  pretrained = {next((before for _, before, after in phases if math.isclose(after, x, rel_tol=1e-6)), None)
                for x in starts}
  return pretrained.pop() if len(pretrained) == 1 and None not in pretrained else None


def _forgetting_origin(root: Path, rows) -> list[str]:
  """Forgetting counts from where adaptation starts. After a copying phase that start is above the pretrained
  model's base loss, and replaying base text can win part of that back: negative forgetting then means recovery
  of the phase's loss, not English learned beyond pretraining."""
  negative = sum(1 for r in rows if (_num(r.get("forgetting")) or 0) < 0)
  return [f"Forgetting is measured from where adaptation starts: the end of the copying phase `midtrain/{name}`, "
          f"base loss {after:.3f}, {after - before:+.3f} nats from the pretrained model's {before:.3f}. Replaying "
          f"base text can win part of that back, so forgetting below 0 ({negative} of {len(rows)} runs so far) means "
          "recovery from the phase, not more English than after pretraining. Measured from the pretrained model "
          f"instead, a run must first win those {after - before:.3f} nats back, so a guideline read from there "
          "measures that recovery as much as forgetting: neither reference separates the two in this design."
          for name, before, after in copying_phases(root)]


def _plateau_beyond(g: _Grid, v: str, prev: float, last: float, step: stats.Interval, tol: float) -> str:
  """Where the learning curve stands at its end, and what one more budget step would cost at the measured rate."""
  hours = [x / 3600 for x in g.values(v, last, g.ratios[0], "wall_seconds")]
  nxt = last * last / prev
  cost = (f"; the next budget at the same step (×{last / prev:.3g}, {_tokens(nxt)} tokens) would take "
          f"≈{np.mean(hours) * nxt / last:.1f} h per seed, scaled from the {_tokens(last)} cells' measured "
          f"{np.mean(hours):.1f} h each (as they ran: several at a time where the runner had --jobs)" if hours else "")
  return (f"Plateau: bAbI-{v}'s accuracy still rises at the largest budget, {_fmt(step, '+.3f')} "
          f"from {_tokens(prev)} to {_tokens(last)} tokens ('little' is < {tol:.2f}), so where it flattens is not "
          f"measured{cost}.")


def _scale_section(st: Study, g: _Grid, syn: str, thr: float, tol: float, guide, rising=None) -> list[str]:
  """What this scale can and cannot show, from the numbers: model, seeds, test size, resolution, floor effects.
  `rising`: (budget before the largest, the largest, the accuracy gain between them) where the learning curve
  still rises at its end."""
  rows = g.rows
  params = [x for r in rows for x in [_num(r.get("params"))] if x is not None]
  examples = [x for r in rows for x in [_num(r.get("babi_examples"))] if x is not None]
  seeded = [cell for cell, runs in g.cells.items() if len(runs) >= stats.MIN_VALUES]
  widths = [stats.mean_ci(g.values(v, b, q, "babi_accuracy")).width for (v, b, q) in seeded]
  widths = [w for w in widths if math.isfinite(w)]
  can, cannot = [], []
  seeds = min(len(g.cells[cell]) for cell in seeded) if seeded else max(len(runs) for runs in g.cells.values())
  few = len(g.cells) - len(seeded)
  size = f"{np.mean(params) / 1e6:.2g}M-parameter model" if params else "model"
  cannot.append(f"Scale: a {size} adapted with {_tokens(g.budgets[0])}–{_tokens(g.budgets[-1])} tokens; the paper's "
                "plateau (≈10^8.5 tokens for 1.7B parameters) and replay ratios are not tested at their scale, and "
                "nothing here extrapolates to it.")
  if not seeded:
    cannot.append(f"Seeds: at most {seeds} per cell (< {stats.MIN_VALUES}), so no interval decides a claim: every "
                  "verdict is inconclusive whatever the means say.")
  else:
    if few:
      cannot.append(f"Seeds: {few} of the {len(g.cells)} cells run have fewer than {stats.MIN_VALUES} seeds so far; "
                    "a comparison of one of them alone is inconclusive.")
    if widths:
      can.append(f"Resolution: ≥ {seeds} seeds in {len(seeded)} of the {len(g.cells)} cells run; the median 95 % "
                 f"interval of their accuracy is {np.median(widths):.3f} wide, so differences much smaller than "
                 "that are not resolved.")
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
  if rising:
    cannot.append(_plateau_beyond(g, syn, *rising, tol))
  copying = _copying(g)
  if copying:
    (cannot if copying[0] else can).append(copying[1])
  if g.crossed and len(g.variants) < 2:
    cannot.append(f"Synthetic vs original: every run answers both variants' held-out test stories, but only "
                  f"bAbI-{g.variants[0]} has been trained on so far.")
  elif g.crossed:
    can.append("Synthetic vs original is compared on the same held-out test stories of both variants.")
  else:
    cannot.append("Synthetic vs original: each run was scored on its own variant's test only, so the two are not "
                  "compared on the same questions.")
  cannot.append("The two variants differ in vocabulary and in the size of their story pool at once; which of the "
                "two causes a difference is not separated by this design.")
  cannot.extend(_forgetting_origin(st.root, rows))
  none = [guide[syn][b]["point"] == 0 for b in g.budgets]
  if g.ratios[0] == 0 and all(none):
    cannot.append(f"Forgetting without replay already stays under {_pct(thr)} of the base loss at every budget: "
                  "the replay guideline has nothing to prevent here.")
  return (["### What this scale can and cannot show", ""] + (["Can show:", ""] + [f"- {x}" for x in can] + [""]
                                                             if can else []) +
          ["Cannot show:", ""] + [f"- {x}" for x in cannot] + [""])
