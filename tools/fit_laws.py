"""Fit adaptation scaling laws on early PTPP stages and score their forecast of a later stage.

    python tools/fit_laws.py RESULTS.csv --fit-ptpp 15,31 --test-ptpp 279 --anchors 20 [--target base_loss]
        [--forms dcpt,gated_floor] [--anchor-method refit|offset|affine] [--delta 1e-3] [--bootstrap B]
        [--out DIR] [--json]

Example, on the PTPP study's published results (stages 1, 2, 4; fit on the first two, forecast the third):

    python tools/fit_laws.py docs/results/study_ptpp/results.csv --fit-ptpp 15,31 --test-ptpp 279 --out runs/laws

RESULTS.csv: one row per adaptation run, as `python -m cpt_jax.study` writes it (DIR/results.csv), with the
columns params (model parameters N), ptpp (pretraining tokens per parameter of the start checkpoint),
adapt_tokens (or atpp: adaptation tokens per parameter), replay_ratio (0..1), and the loss to fit:
target_loss (default) or base_loss. Other columns are ignored.

Prints one row of held-out metrics per form (anchors excluded from the scored rows; with --anchors k
also the anchored row), writes DIR/heldout_<target>_<form>.png (observed vs predicted on the held-out
stage) and DIR/fits_<target>.json (fitted parameters). DIR is --out; without it, <CSV stem>_laws/ next to
the CSV, or runs/laws/<CSV's directory name>/ when the CSV is inside this repository's docs/.
With --json, prints only {form: {huber_log, mae_rel, calibration_slope, rmse, mape}} for the held-out
stage (anchored when --anchors > 0) and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpt_jax import console  # noqa: E402
from cpt_jax.research import fit, laws, synthetic  # noqa: E402
from cpt_jax.research.metrics import METRIC_NAMES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("params", "ptpp", "adapt_tokens|atpp", "replay_ratio")


def floats(s: str) -> list[float]:
  return [float(v) for v in s.split(",") if v]


def plot_heldout(fc: fit.Forecast, name: str, target: str, path: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(4.6, 4.4))
  y = fc.y_eval
  ax.scatter(y, fc.fit.predict(fc.X_eval), s=10, label=f"fit (MAE_rel {fc.metrics['mae_rel']:.3f})")
  if fc.anchored is not None:
    ax.scatter(y, fc.anchored.predict(fc.X_eval), s=10, marker="x",
               label=f"anchored (MAE_rel {fc.metrics_anchored['mae_rel']:.3f})")
  lo, hi = ax.get_xlim()
  ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xlabel(f"observed {target}")
  ax.set_ylabel(f"predicted {target}")
  ax.set_title(f"{name}: held-out stage")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None) -> int:
  ap = console.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("csv", type=Path)
  ap.add_argument("--fit-ptpp", type=floats, required=True, help="comma-separated PTPP stages to fit on")
  ap.add_argument("--test-ptpp", type=floats, required=True, help="comma-separated held-out PTPP stages")
  ap.add_argument("--anchors", type=int, default=0, help="measured held-out points used to recalibrate")
  ap.add_argument("--anchor-method", default="refit", choices=fit.ANCHOR_METHODS)
  ap.add_argument("--anchor-seed", type=int, default=0)
  ap.add_argument("--target", default="target_loss", choices=("target_loss", "base_loss"))
  ap.add_argument("--forms", default=",".join(laws.ADAPTATION_FORMS), help="comma-separated form names")
  ap.add_argument("--delta", type=float, default=1e-3, help="Huber δ on log loss (fit and metric)")
  ap.add_argument("--seed", type=int, default=0, help="seed of the Sobol starting grid")
  ap.add_argument("--starts", type=int, default=6, help="L-BFGS starts per fit (best of the Sobol grid)")
  ap.add_argument("--bootstrap", type=int, default=0, help="row resamples for 95%% parameter intervals")
  ap.add_argument("--out", type=Path, default=None)
  ap.add_argument("--json", action="store_true")
  args = ap.parse_args(argv)

  forms = [f for f in args.forms.split(",") if f]
  unknown = [f for f in forms if f not in laws.FORMS]
  if unknown:
    ap.error(f"unknown forms {unknown}; known: {sorted(laws.FORMS)}")
  if not args.csv.is_file():
    console.fail(f"{args.csv} is not a file; give a study's results.csv (python -m cpt_jax.study writes "
                 "DIR/results.csv), e.g. docs/results/study_ptpp/results.csv")
  try:
    table = synthetic.load_results(args.csv, COLUMNS + (args.target,))
    stages = set(np.asarray(table["ptpp"]).tolist())
    absent = [p for p in args.fit_ptpp + args.test_ptpp if p not in stages]
    if absent:
      raise ValueError(f"{args.csv} has no rows at PTPP {', '.join(f'{p:g}' for p in absent)}; its stages: "
                       f"{', '.join(f'{p:g}' for p in sorted(stages))}")
    t0 = time.perf_counter()
    res = fit.forecast(table, forms, fit_ptpp=args.fit_ptpp, test_ptpp=args.test_ptpp, target=args.target,
                       anchors=args.anchors, anchor_method=args.anchor_method, anchor_seed=args.anchor_seed,
                       delta=args.delta, seed=args.seed, n_starts=args.starts)
  except (OSError, ValueError) as e:
    console.fail(str(e))
  seconds = time.perf_counter() - t0
  if args.json:
    print(json.dumps({name: fc.best for name, fc in res.items()}, indent=1))
    return 0

  out = args.out or default_out(args.csv)
  out.mkdir(parents=True, exist_ok=True)
  n_eval = len(next(iter(res.values())).y_eval)
  print(f"{args.target}: fit on PTPP {args.fit_ptpp}, scored on PTPP {args.test_ptpp} "
        f"({n_eval} rows; {args.anchors} anchors, method {args.anchor_method}, excluded); {seconds:.1f} s")
  head = f"{'form':16s} {'anchors':>7s} " + " ".join(f"{m:>17s}" for m in METRIC_NAMES)
  print(head)
  print("-" * len(head))
  for name, fc in res.items():
    rows = [(0, fc.metrics)] + ([(args.anchors, fc.metrics_anchored)] if fc.anchored is not None else [])
    for k, m in rows:
      print(f"{name:16s} {k:7d} " + " ".join(f"{m[c]:17.6g}" for c in METRIC_NAMES))
    plot_heldout(fc, name, args.target, out / f"heldout_{args.target}_{name}.png")
  cis = {}
  if args.bootstrap:
    rows = np.isin(table["ptpp"], args.fit_ptpp)
    X, y = laws.Inputs.from_table(table, args.target).take(rows), np.asarray(table[args.target])[rows]
    print(f"95% bootstrap intervals ({args.bootstrap} row resamples of the fit rows):")
    for name, fc in res.items():
      cis[name] = fit.bootstrap(fc.fit, X, y, args.bootstrap, seed=args.seed, delta=args.delta).ci(0.95)
      print(f"  {name}: " + ", ".join(f"{k} {fc.fit.params[k]:.4g} [{lo:.4g}, {hi:.4g}]"
                                       for k, (lo, hi) in cis[name].items()))
  params = {name: {"params": fc.fit.params, "ci95": cis.get(name), "objective": fc.fit.objective,
                   "formula": fc.fit.form.formula,
                   "anchored_params": fc.anchored.params if fc.anchored else None,
                   "anchored_calib": fc.anchored.calib if fc.anchored else None}
            for name, fc in res.items()}
  (out / f"fits_{args.target}.json").write_text(json.dumps(params, indent=1))
  print(f"wrote the plots and fitted parameters to {console.where(out)}")
  return 0


def default_out(csv: Path) -> Path:
  """Next to the CSV, unless that is the repository's published docs/: then under runs/laws/."""
  if csv.resolve().is_relative_to(REPO / "docs"):
    return Path("runs") / "laws" / csv.resolve().parent.name
  return csv.parent / f"{csv.stem}_laws"


if __name__ == "__main__":
  sys.exit(main())
