import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cpt_jax.research import fit, plan, synthetic
from cpt_jax.research.laws import Inputs

ROOT = Path(__file__).resolve().parents[1]
SETTING = dict(params=1e9, ptpp=279, max_target_loss=2.6, max_forgetting=0.05)


@pytest.fixture(scope="module")
def fitted():
  """Target and base laws fitted on a 200-row synthetic table; base loss before from the table."""
  t = synthetic.subsample(synthetic.make_table(seed=2), 200, seed=2)
  laws_ = {k: fit.fit(form, Inputs.from_table(t, k), t[k], n_starts=3)
           for k, form in (("target_loss", "ptpp_modulated"), ("base_loss", "ptpp_additive"))}
  before, _ = plan.base_loss_before(synthetic.make_table(seed=2), 1e9, 279)
  return laws_["target_loss"], laws_["base_loss"], before


def test_plan_equals_brute_force_grid_search(fitted):
  """Acceptance 3: without refinement the plan is exactly the brute-force answer on the same grid."""
  tl, bl, before = fitted
  p = plan.plan(tl, bl, base_loss_before=before, max_atpp=100, n_atpp=60, n_replay=26, refine=0, **SETTING)
  ref = plan.brute_force(tl, bl, base_loss_before=before, atpp_grid=p.grid_atpp, replay_grid=p.grid_replay,
                         **SETTING)
  assert p.feasible and ref is not None
  assert (p.atpp, p.replay_ratio) == ref[:2]
  np.testing.assert_allclose([p.target_loss, p.base_loss, p.forgetting], ref[2:], rtol=1e-12)
  # the mask is the brute-force feasibility of every cell
  for i in range(0, 26, 5):
    for j in range(0, 60, 7):
      t, _, f = plan.predict(tl, bl, 1e9, 279, p.grid_atpp[j], p.grid_replay[i], before)
      assert p.mask[i, j] == bool(t <= 2.6 and f <= 0.05)


def test_refinement_is_feasible_and_never_costlier(fitted):
  tl, bl, before = fitted
  coarse = plan.plan(tl, bl, base_loss_before=before, max_atpp=100, n_atpp=60, n_replay=26, refine=0, **SETTING)
  fine = plan.plan(tl, bl, base_loss_before=before, max_atpp=100, n_atpp=60, n_replay=26, refine=3, **SETTING)
  assert fine.feasible and fine.atpp <= coarse.atpp
  assert fine.target_loss <= 2.6 and fine.forgetting <= 0.05
  # the region is a thin wedge here: a 10x finer plain grid does better than the coarse one, but not than
  # the refined plan, which sits at the wedge's tip where both constraints bind
  dense = plan.plan(tl, bl, base_loss_before=before, max_atpp=100, n_atpp=600, n_replay=251, refine=0, **SETTING)
  assert dense.atpp < coarse.atpp and fine.atpp <= dense.atpp
  assert fine.target_loss == pytest.approx(2.6, abs=1e-6) and fine.forgetting == pytest.approx(0.05, abs=1e-6)


def test_infeasible_thresholds_and_compute_limit(fitted):
  tl, bl, before = fitted
  p = plan.plan(tl, bl, base_loss_before=before, max_atpp=100, **(SETTING | dict(max_target_loss=1.0)))
  assert not p.feasible and np.isnan(p.atpp) and not p.mask.any()
  p = plan.plan(tl, bl, base_loss_before=before, max_atpp=5, **SETTING)  # the budget is too small
  assert not p.feasible


def test_base_loss_before_from_table_or_pretrain_law():
  t = synthetic.make_table(seed=0)
  same = (t["params"] == 1e9) & (t["ptpp"] == 279)
  v, src = plan.base_loss_before(t, 1e9, 279)
  assert src == "table" and v == pytest.approx(np.median(t["base_loss_before"][same]))
  v, src = plan.base_loss_before(t, 2e9, 279)  # between sizes: the fitted E + A/N^α + G/P^κ
  truth = synthetic.BASE_TRUTH
  want = (truth["E"] + truth["A"] / 2.0 ** truth["alpha"] + truth["G"] / 279 ** truth["kappa"]
          + truth["C"] / (1 + truth["eps"]) ** truth["gamma"])
  assert src == "pretrain-law" and v == pytest.approx(want, rel=0.01)


def test_plan_cli_and_plot(tmp_path):
  t = synthetic.subsample(synthetic.make_table(seed=2), 200, seed=2)
  synthetic.write_results(t, tmp_path / "results.csv")
  cmd = [sys.executable, "tools/plan.py", str(tmp_path / "results.csv"), "--params", "1e9", "--ptpp", "279",
         "--max-target-loss", "2.6", "--max-forgetting", "0.05", "--max-atpp", "100", "--form", "ptpp_modulated",
         "--base-form", "ptpp_additive", "--starts", "3", "--json", "--plot", str(tmp_path / "plan.png")]
  out = json.loads(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
  assert out["feasible"] and 0 < out["atpp"] <= 100 and out["target_loss"] <= 2.6
  assert out["forgetting"] <= 0.05 and out["base_loss_before_source"] == "table"
  assert (tmp_path / "plan.png").stat().st_size > 1000
