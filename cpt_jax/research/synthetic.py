"""Results tables (the study runner's CSV) and a synthetic generator drawing them from known laws.

Columns: params, ptpp, atpp, adapt_tokens, replay_ratio, target_loss, base_loss, base_loss_before, seed.

The generator evaluates a target law (share s = 1 − r) and a base law (s = r) on the full grid
params × ptpp × atpp × replay, and multiplies each loss by exp(σ·z), z ~ N(0, 1) (σ = 0.01 is "1 %
noise"). base_loss_before is the base law at s = 1 with D → ∞ (all base data, no adaptation term),
with its own noise, so forgetting = base_loss − base_loss_before ≈ the base law's adaptation terms.

Why these defaults identify the parameters (docs/scaling_laws.md has the numbers):
* six model sizes over 30× separate E from A/N^α;
* five ATPP values over 25× at each N separate the data term (through D = ATPP·N) from A/N^α;
* replay 0 … 0.5 moves the target share 1 − r over 2×, enough for η (a D×s interaction) and γ;
  ε is not identifiable for the target loss (s ≥ 0.5 ≫ ε), so recovery fixes it;
* three fit stages (15, 31, 63) pin κ before extrapolating to 279.
"""

from __future__ import annotations

import csv
import itertools
from typing import Mapping, Sequence

import numpy as np

from cpt_jax.research import laws

COLUMNS = ("params", "ptpp", "atpp", "adapt_tokens", "replay_ratio", "target_loss", "base_loss",
           "base_loss_before", "seed")

# Target (French) loss: adaptation terms grow with PTPP ("ossification"), κ = 0.25.
TARGET_TRUTH = dict(E=0.6, A=0.6, alpha=0.35, B=0.6, beta=0.35, eta=-0.6, C=0.5, gamma=1.0, eps=0.02, kappa=0.3)
# The same law without PTPP (D-CPT), for the PTPP-independent control.
TARGET_TRUTH_DCPT = {k: v for k, v in TARGET_TRUTH.items() if k != "kappa"}
# Base (EN/AR) loss: a pre-training term G/P^κ plus D-CPT adaptation terms in the replay share.
BASE_TRUTH = dict(E=1.6, A=0.7, alpha=0.3, B=0.1, beta=0.3, eta=0.3, C=0.05, gamma=0.5, eps=0.02, G=2.0, kappa=0.4)

GRID = dict(params=(1e7, 3e7, 1e8, 3e8, 1e9, 3e9), ptpp=(15, 31, 63, 279), atpp=(1, 3, 10, 30, 100),
            replay=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9))


def make_table(target_form: str = "ptpp_modulated", target_params: Mapping[str, float] = TARGET_TRUTH,
               base_form: str = "ptpp_additive", base_params: Mapping[str, float] = BASE_TRUTH, *,
               params=GRID["params"], ptpp=GRID["ptpp"], atpp=GRID["atpp"], replay=GRID["replay"],
               noise: float = 0.01, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  rows = np.array(list(itertools.product(params, ptpp, atpp, replay)), np.float64)
  n_, p_, a_, r_ = rows.T
  tokens = a_ * n_
  tgt = laws.FORMS[target_form].predict(target_params, laws.Inputs.make(n_, p_, tokens, r_, "target_loss"))
  base = laws.FORMS[base_form].predict(base_params, laws.Inputs.make(n_, p_, tokens, r_, "base_loss"))
  before = laws.FORMS[base_form].predict(base_params, laws.Inputs.make(n_, p_, np.inf, 1.0, "base_loss"))
  jitter = lambda v: v * np.exp(noise * rng.standard_normal(len(v)))
  return dict(params=n_, ptpp=p_, atpp=a_, adapt_tokens=tokens, replay_ratio=r_, target_loss=jitter(tgt),
              base_loss=jitter(base), base_loss_before=jitter(before), seed=np.full(len(n_), float(seed)))


def subsample(table: Mapping[str, np.ndarray], n: int, seed: int = 0) -> dict[str, np.ndarray]:
  idx = np.sort(np.random.default_rng(seed).choice(len(table["params"]), n, replace=False))
  return {k: np.asarray(v)[idx] for k, v in table.items()}


def write_results(table: Mapping[str, np.ndarray], path) -> None:
  cols = [c for c in COLUMNS if c in table] + [c for c in table if c not in COLUMNS]
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols)
    for row in zip(*(table[c] for c in cols)):
      w.writerow([repr(float(v)) for v in row])


def load_results(path, needed: Sequence[str] = ()) -> dict[str, np.ndarray]:
  """A results CSV as float columns (non-numeric columns are kept as strings); `needed`: columns it must
  have ("a|b": either), else a ValueError naming the missing ones."""
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f"{path}: no rows")
  missing = [c for c in needed if not any(alt in rows[0] for alt in c.split("|"))]
  if missing:
    raise ValueError(f"{path} lacks the columns {', '.join(m.replace('|', ' or ') for m in missing)} "
                     f"(it has: {', '.join(rows[0])})")
  out = {}
  for k in rows[0]:
    vals = [r[k] for r in rows]
    try:
      out[k] = np.array([float(v) for v in vals])
    except ValueError:
      out[k] = np.array(vals)
  return out
