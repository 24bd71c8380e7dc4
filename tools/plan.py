"""Cheapest (ATPP, replay ratio) meeting a target-loss and a forgetting threshold, from a results table.

    python tools/plan.py RESULTS.csv --params N --ptpp P --max-target-loss T --max-forgetting F --max-atpp A
        [--min-atpp a] [--replay-range 0,0.5] [--form auto|NAME] [--base-form auto|NAME]
        [--fit-ptpp 15,31] [--base-loss-before L0] [--plot PATH] [--json]

Fits a target-loss law and a base-loss law on the table's rows (all PTPP stages, or --fit-ptpp), then
runs `cpt_jax.research.plan.plan`. `auto` picks, per loss, the form with the lowest Huber-on-log when
fitted on all stages but the latest and scored on the latest, then refits it on all the chosen stages.
Forgetting = predicted base loss − base loss before adaptation (from the table's rows at this N and
PTPP, else a fitted pre-training law E + A/N^α + G/P^κ, else --base-loss-before).

Example, on the PTPP study's published results (the largest of its three sizes, 141k parameters, pretrained
to PTPP 279):

    python tools/plan.py docs/results/study_ptpp/results.csv --params 141056 --ptpp 279 --max-target-loss 2.5 \
        --max-forgetting 1.25 --max-atpp 20 --plot runs/plan/plan.png

RESULTS.csv: one row per adaptation run, as `python -m cpt_jax.study` writes it (DIR/results.csv), with the
columns params (model parameters N), ptpp (pretraining tokens per parameter of the start checkpoint),
adapt_tokens (or atpp: adaptation tokens per parameter), replay_ratio (0..1), target_loss and base_loss
(after adapting), and base_loss_before (unless --base-loss-before is given). Other columns are ignored.

The feasible-region plot goes to --plot; without it, plan_<N>_<P>.png next to the CSV, or under runs/plan/
when the CSV is inside this repository's docs/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpt_jax import console  # noqa: E402
from cpt_jax.research import fit, laws, synthetic  # noqa: E402
from cpt_jax.research import plan as planning  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("params", "ptpp", "adapt_tokens|atpp", "replay_ratio", "target_loss", "base_loss")


def floats(s: str) -> list[float]:
  return [float(v) for v in s.split(",") if v]


def choose_form(table, target: str, stages: list[float], name: str, **fit_kw) -> tuple[str, str]:
  """(form name, why): `name` itself, or with 'auto' the best forecaster of the latest stage."""
  if name != "auto":
    return name, "given"
  if len(stages) < 2:
    return "dcpt", "auto: one PTPP stage, no PTPP dependence can be fitted"
  res = fit.forecast(table, laws.ADAPTATION_FORMS, fit_ptpp=stages[:-1], test_ptpp=stages[-1:], target=target,
                     **fit_kw)
  best = min(res, key=lambda k: res[k].metrics["huber_log"])
  return best, f"auto: lowest held-out Huber-on-log at PTPP {stages[-1]:g} fitted on {stages[:-1]}"


def main(argv=None) -> int:
  ap = console.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("csv", type=Path)
  ap.add_argument("--params", type=float, required=True, help="model parameters N")
  ap.add_argument("--ptpp", type=float, required=True, help="PTPP of the base checkpoint")
  ap.add_argument("--max-target-loss", type=float, required=True)
  ap.add_argument("--max-forgetting", type=float, required=True, help="base loss − base loss before")
  ap.add_argument("--max-atpp", type=float, default=None, help="compute limit in adaptation tokens / N")
  ap.add_argument("--max-tokens", type=float, default=None, help="compute limit in adaptation tokens")
  ap.add_argument("--min-atpp", type=float, default=None)
  ap.add_argument("--replay-range", type=floats, default=None, help="lo,hi (default: the table's range)")
  ap.add_argument("--form", default="auto", help="target-loss form, or auto")
  ap.add_argument("--base-form", default="auto", help="base-loss form, or auto")
  ap.add_argument("--fit-ptpp", type=floats, default=None, help="stages to fit on (default: all)")
  ap.add_argument("--base-loss-before", type=float, default=None)
  ap.add_argument("--starts", type=int, default=6, help="L-BFGS starts per fit (best of the Sobol grid)")
  ap.add_argument("--plot", type=Path, default=None)
  ap.add_argument("--json", action="store_true")
  args = ap.parse_args(argv)
  if (args.max_atpp is None) == (args.max_tokens is None):
    ap.error("give exactly one of --max-atpp and --max-tokens")
  max_atpp = args.max_atpp if args.max_atpp is not None else args.max_tokens / args.params

  if not args.csv.is_file():
    console.fail(f"{args.csv} is not a file; give a study's results.csv (python -m cpt_jax.study writes "
                 "DIR/results.csv), e.g. docs/results/study_ptpp/results.csv")
  try:
    return _plan(args, max_atpp)
  except (OSError, ValueError) as e:
    console.fail(str(e))


def _plan(args, max_atpp: float) -> int:
  needed = COLUMNS + (() if args.base_loss_before is not None else ("base_loss_before",))
  table = synthetic.load_results(args.csv, needed)
  stages = sorted(set(np.asarray(table["ptpp"]).tolist()))
  if args.fit_ptpp:
    stages = [s for s in stages if s in args.fit_ptpp]
  rows = np.isin(table["ptpp"], stages)
  sub = {k: np.asarray(v)[rows] for k, v in table.items()}
  laws_fitted, why = {}, {}
  for target, name in (("target_loss", args.form), ("base_loss", args.base_form)):
    form, why[target] = choose_form(sub, target, stages, name, n_starts=args.starts)
    laws_fitted[target] = fit.fit(form, laws.Inputs.from_table(sub, target), sub[target], n_starts=args.starts)
  if args.base_loss_before is not None:
    before, source = args.base_loss_before, "given"
  else:
    before, source = planning.base_loss_before(table, args.params, args.ptpp)
  r_range = args.replay_range or [float(np.min(table["replay_ratio"])), float(np.max(table["replay_ratio"]))]
  p = planning.plan(laws_fitted["target_loss"], laws_fitted["base_loss"], params=args.params, ptpp=args.ptpp,
                    base_loss_before=before, max_target_loss=args.max_target_loss,
                    max_forgetting=args.max_forgetting, max_atpp=max_atpp, min_atpp=args.min_atpp,
                    replay_range=tuple(r_range))
  plot_path = args.plot or default_plot(args.csv, args.params, args.ptpp)
  plot_path.parent.mkdir(parents=True, exist_ok=True)
  planning.plot(p, plot_path)
  out = p.summary() | {"target_form": laws_fitted["target_loss"].form.name,
                       "base_form": laws_fitted["base_loss"].form.name, "form_choice": why,
                       "base_loss_before_source": source, "fit_ptpp": stages, "plot": str(plot_path)}
  extrapolating = []
  if not np.min(table["params"]) <= args.params <= np.max(table["params"]):
    extrapolating.append("params")
  if not np.min(table["ptpp"]) <= args.ptpp <= np.max(table["ptpp"]):
    extrapolating.append("ptpp")
  out["extrapolating_in"] = extrapolating
  if args.json:
    print(json.dumps(out, indent=1))
    return 0
  print(f"N = {args.params:.4g}, PTPP = {args.ptpp:g}; target law {out['target_form']} ({why['target_loss']}), "
        f"base law {out['base_form']} ({why['base_loss']})")
  print(f"base loss before adaptation {before:.4f} ({source}); thresholds: target ≤ {args.max_target_loss:g}, "
        f"forgetting ≤ {args.max_forgetting:g}; ATPP ≤ {max_atpp:g}, r ∈ [{r_range[0]:g}, {r_range[1]:g}]")
  if extrapolating:
    print(f"warning: extrapolating beyond the table in {', '.join(extrapolating)}")
  if p.feasible:
    print(f"cheapest plan: ATPP {p.atpp:.4g} ({p.adapt_tokens:.4g} tokens), replay ratio {p.replay_ratio:.4f}")
    print(f"  predicted target loss {p.target_loss:.4f}, base loss {p.base_loss:.4f}, forgetting {p.forgetting:.4f}")
  else:
    print(f"no feasible (ATPP, r): lowest predicted target loss on the grid "
          f"{np.min(p.grid_target):.4f}, least forgetting {np.min(p.grid_forgetting):.4f}")
  print(f"feasible cells: {int(p.mask.sum())} of {p.mask.size}; wrote the plot {console.where(plot_path)}")
  return 0


def default_plot(csv: Path, params: float, ptpp: float) -> Path:
  """Next to the CSV, unless that is the repository's published docs/: then under runs/plan/."""
  name = f"plan_{params:.3g}_{ptpp:g}.png"
  return Path("runs") / "plan" / name if csv.resolve().is_relative_to(REPO / "docs") else csv.parent / name


if __name__ == "__main__":
  sys.exit(main())
