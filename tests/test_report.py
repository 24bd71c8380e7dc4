"""Study reports from made-up results: every figure and claim is produced, verdicts follow the numbers."""

import csv
import json

import numpy as np

from cpt_jax import study_results
from cpt_jax.research import report


def _write(root, report_kind, rows, claims=None):
  root.mkdir(parents=True)
  (root / "study_config.json").write_text(json.dumps({"report": report_kind, "claims": claims or {}}))
  cols = study_results.RESULT_COLUMNS + sorted({k for r in rows for k in r} - set(study_results.RESULT_COLUMNS))
  with open(root / "results.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
  (root / "invocations.jsonl").write_text(json.dumps(
      {"started": 0.0, "finished": 600.0, "seconds": 600.0, "cells_run": ["a"], "failed": [], "jobs": 1,
       "argv": ["study.py", "--config", "configs/x.py", "--workdir", str(root)]}) + "\n")
  return root


def _row(**kw):
  base = {"size": "small", "params": 6e5, "ptpp": 8.0, "atpp": 0.1, "adapt_tokens": 6e4, "replay_ratio": 0.0,
          "replay_kind": "none", "replay_loss": "ntp", "replay_coeff": 1.0, "target_loss": 3.0, "base_loss": 5.1,
          "base_loss_before": 5.0, "target_loss_before": 6.0, "forgetting": 0.1, "babi_accuracy": None,
          "babi_tasks_passed": None, "wall_seconds": 30.0}
  base.update(kw)
  base["forgetting"] = base["base_loss"] - base["base_loss_before"]
  return base


def test_planned_cells_leave_out_the_excluded_ones():
  axis = lambda name, labels: [name, [[label, {}] for label in labels]]
  config = {"axes": [axis("data", ["synthetic", "original"]), axis("replay", ["r0", "r5", "r10"]),
                     axis("budget", ["500k", "1.5M"])],
            "exclude": [{"data": "original", "replay": "r5"}, {"data": "original", "replay": "r10"}]}
  assert report.common.planned_cells(config) == 2 * 3 * 2 - 2 * 2
  assert report.common.planned_cells({**config, "exclude": []}) == 12


FORGETTING_METHODS = {  # axis label: (kind, loss, λ)
    "none": ("none", "ntp", 1.0), "real_ntp": ("real", "ntp", 1.0), "real_kl": ("real", "kl", 1.0),
    "self_ntp": ("self", "ntp", 1.0), "self_kl_l0.3": ("self", "kl", 0.3), "self_kl_l1": ("self", "kl", 1.0),
    "self_kl_l3": ("self", "kl", 3.0), "self_kl_l10": ("self", "kl", 10.0)}
# the paper's picture: replay nearly removes forgetting, self ≈ real, KL ≪ NTP on real data, λ trades
# forgetting for target loss, and the high-PTPP regime keeps a floor
FORGETTING_PRESENT = {"none": 0.30, "real_ntp": 0.07, "real_kl": 0.02, "self_ntp": 0.035, "self_kl_l0.3": 0.08,
                      "self_kl_l1": 0.025, "self_kl_l3": 0.01, "self_kl_l10": 0.005}


def _forgetting_study(root, present: bool, seeds=(0, 1, 2)):
  """Rows for two regimes (PTPP 20, 500) × the methods × seeds, and each regime's pretraining curve.

  present: the effects above with ±0.003 seed noise; absent: every setting forgets 0.3 ± 0.1 (the same three
  values, assigned to seeds in a different order), so nothing differs beyond seed noise."""
  rows = []
  offsets = np.array([-0.1, 0.0, 0.1])
  for p, before in ((20.0, 5.0), (500.0, 4.5)):
    for k, (m, (kind, loss, lam)) in enumerate(FORGETTING_METHODS.items()):
      for i, seed in enumerate(seeds):
        if present:
          f = FORGETTING_PRESENT[m] + (0.1 if p == 500 and m != "none" else 0.0) + 0.003 * (i - 1)
          tgt = 3.0 + (0.02 * lam if kind != "none" else 0.0) + 0.002 * (i - 1)
        else:
          f, tgt = 0.3 + offsets[(i + k) % 3], 3.0 + 0.01 * offsets[(i + 2 * k) % 3]
        rows.append(_row(ptpp=p, axis_method=m, replay_kind=kind, replay_loss=loss, replay_coeff=lam, seed=seed,
                         replay_ratio=0.25 if kind != "none" else 0.0, base_loss_before=before,
                         base_loss=before + f, target_loss=tgt, cell=f"small_ptpp{p:g}_{m}_s{seed}"))
  root = _write(root, "forgetting", rows, {"nearly_eliminates": 0.25, "same_as_real": 0.25})
  for p, before in ((20.0, 5.0), (500.0, 4.5)):
    run = root / "pretrain" / f"small_ptpp{p:g}"
    run.mkdir(parents=True)
    total = p * 6e5
    with open(run / "metrics.jsonl", "w") as f:
      for t in np.linspace(0, total, 41):
        f.write(json.dumps({"step": int(t // 1000), "tokens": float(t),
                            "eval/base/loss": before + 2.0 * (np.exp(-6 * t / total) - np.exp(-6))}) + "\n")
  return root


def test_compute_multiplier_is_the_first_curve_point_at_or_below_the_loss():
  from cpt_jax.research.report import forgetting_runs as forgetting  # pylint: disable=g-import-not-at-top
  tokens, loss = [0, 10, 20, 30, 40], [6.0, 5.0, 4.5, 4.2, 4.0]
  assert forgetting.compute_multiplier(tokens, loss, 4.6, 40) == 0.5
  assert forgetting.compute_multiplier(tokens, loss, 4.5, 40) == 0.5
  assert forgetting.compute_multiplier(tokens, loss, 3.9, 40) == 1.0  # never reached
  assert forgetting.compute_multiplier(tokens, loss, 7.0, 40) == 0.0
  assert forgetting.compute_multiplier(tokens, loss, 4.0, 20) == 1.0  # clipped


def _claim_rows(text):
  table = text.split("## Seed claims")[1].split("## Results")[0]
  return [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| seed claim")]


def test_forgetting_report_says_yes_when_the_effects_are_there(tmp_path):
  text = report.study_report(_forgetting_study(tmp_path / "s", True), tmp_path / "out").read_text()
  rows = _claim_rows(text)
  assert len(rows) == 10, rows
  assert all(r.endswith("| **yes** |") for r in rows), [r for r in rows if not r.endswith("| **yes** |")]
  assert "## What this scale can and cannot show" in text
  assert "41 pretraining evaluations" in text and "compute multiplier" in text
  assert (tmp_path / "out" / "study_forgetting" / "compute_multiplier.png").exists()
  # the floor runs' multipliers: the high-PTPP regime's model is worth a smaller share of its pretraining
  assert "compute multiplier of the floor runs: PTPP 20 " in text


def test_forgetting_report_never_says_yes_without_an_effect(tmp_path):
  text = report.study_report(_forgetting_study(tmp_path / "s", False), tmp_path / "out").read_text()
  rows = _claim_rows(text)
  assert len(rows) == 10
  assert "**yes**" not in "\n".join(rows)
  assert "0 of 10 reproduced" in text


def test_forgetting_report_with_two_seeds_is_inconclusive(tmp_path):
  text = report.study_report(_forgetting_study(tmp_path / "s", True, seeds=(0, 1)), tmp_path / "out").read_text()
  rows = _claim_rows(text)
  assert rows and all(r.endswith("| inconclusive |") for r in rows)
  assert "only 2 value(s)" in text


PTPP_SIZES = {"s": 1e6, "m": 3e6, "l": 1e7}
# synthetic.BASE_TRUTH with a small data term, so that replay lowers forgetting at every budget of this grid
BASE_TRUTH = {"E": 1.6, "A": 0.7, "alpha": 0.3, "B": 0.01, "beta": 0.3, "eta": 0.3, "C": 0.05, "gamma": 0.5,
              "eps": 0.02, "G": 2.0, "kappa": 0.4}


def _ptpp_study(root, kind: str, seed: int = 0):
  """3 sizes × stages 15, 31 (one seed) and 279 (three seeds) × ATPP × replay ratio, losses drawn from
  kind = "aware": a PTPP-aware target law (synthetic.TARGET_TRUTH: adaptation terms grow with PTPP) and base law;
  "agnostic": the same target law without PTPP (D-CPT), so nothing PTPP-aware is there to find;
  "noise": no structure at all, every loss the same up to seed noise.
  Seed noise: 0.2 % of each loss (0.5 % for "noise")."""
  from cpt_jax.research import laws, synthetic  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  rows = []
  for size, n in PTPP_SIZES.items():
    for p in (15.0, 31.0, 279.0):
      for a in (0.5, 1.0, 2.0, 4.0):
        for r in (0.0, 0.125, 0.25, 0.5):
          X = lambda tg, n=n, p=p, a=a, r=r: laws.Inputs.make(n, p, a * n, r, tg)
          if kind == "noise":
            tgt, base, before = 3.0, 4.2, 4.0
          else:
            law, truth = (("ptpp_modulated", synthetic.TARGET_TRUTH) if kind == "aware" else
                          ("dcpt", synthetic.TARGET_TRUTH_DCPT))
            tgt = float(laws.FORMS[law].predict(truth, X("target_loss"))[0])
            base = float(laws.FORMS["ptpp_additive"].predict(BASE_TRUTH, X("base_loss"))[0])
            before = float(laws.FORMS["ptpp_additive"].predict(
                BASE_TRUTH, laws.Inputs.make(n, p, np.inf, 1.0, "base_loss"))[0])
          sd = 0.005 if kind == "noise" else 0.002
          for s in range(3 if p == 279 else 1):
            rows.append(_row(size=size, params=n, ptpp=p, atpp=a, adapt_tokens=a * n, replay_ratio=r, seed=s,
                             replay_kind="real" if r else "none", target_loss=tgt * np.exp(sd * rng.normal()),
                             base_loss=before + (base - before) * np.exp(sd * rng.normal()), base_loss_before=before,
                             axis_atpp=f"a{a:g}", axis_replay=f"r{r:g}"))
  return _write(root, "ptpp", rows, {"anchors": 6, "plan_target_quantile": 0.5, "plan_forgetting_share": 0.5})


def test_anchors_are_spread_over_sizes_and_the_grid():
  from cpt_jax.research.report import ptpp_forecast as ptpp  # pylint: disable=g-import-not-at-top
  params = np.repeat([1e6, 3e6, 1e7], 16)
  atpp = np.tile(np.repeat([0.5, 1, 2, 4], 4), 3)
  ratio = np.tile([0, 0.125, 0.25, 0.5], 12)
  idx = ptpp.choose_anchors(params, atpp, ratio, 6)
  assert len(idx) == 6 and sorted(np.unique(params[idx], return_counts=True)[1].tolist()) == [2, 2, 2]
  assert len(set(zip(atpp[idx], ratio[idx]))) == 6  # each anchor a different grid point
  assert len(set(atpp[idx])) >= 3 and len(set(ratio[idx])) >= 3  # spread over the grid, not its first cells
  np.testing.assert_array_equal(idx, ptpp.choose_anchors(params, atpp, ratio, 6))  # a fixed rule
  assert len(ptpp.choose_anchors(params, atpp, ratio, 4)) == 4 and len(ptpp.choose_anchors(params, atpp, ratio, 0)) == 0


def test_ptpp_report_says_yes_when_the_laws_need_ptpp(tmp_path):
  text = report.study_report(_ptpp_study(tmp_path / "s", "aware"), tmp_path / "out").read_text()
  rows = _claim_rows(text)
  aware = {r.split(" law ")[1].split(" ")[0]: r for r in rows if r.startswith("| The PTPP-aware law ")}
  assert set(aware) == {"ptpp_additive", "ptpp_modulated", "ptpp_exponent", "gated_floor"}
  assert aware["ptpp_modulated"].endswith("| **yes** |")  # the true form beats D-CPT transfer
  assert "### Plan" in text and "## What this scale can and cannot show" in text and "3 model sizes" in text
  assert (tmp_path / "out" / "study_ptpp" / "plan.png").exists()
  assert "base loss" not in "\n".join(rows).lower()  # the paper forecasts the target loss only


def test_ptpp_report_without_a_ptpp_effect_never_says_ptpp_helps(tmp_path):
  text = report.study_report(_ptpp_study(tmp_path / "s", "agnostic"), tmp_path / "out").read_text()
  rows = [r for r in _claim_rows(text) if r.startswith("| The PTPP-aware law ") or "gated+floor" in r]
  assert len(rows) == 5 and not any(r.endswith("| **yes** |") for r in rows), rows


def test_ptpp_report_on_noise_never_says_yes(tmp_path):
  text = report.study_report(_ptpp_study(tmp_path / "s", "noise"), tmp_path / "out").read_text()
  rows = _claim_rows(text)
  assert len(rows) == 7 and "**yes**" not in "\n".join(rows), rows


def test_gated_form_collapsed_to_dcpt_is_not_a_win():
  """Ranked first but equal to D-CPT (its gate fitted shut) is inconclusive, not a win; clearly better is."""
  from cpt_jax.research import stats  # pylint: disable=g-import-not-at-top
  from cpt_jax.research.report import ptpp  # pylint: disable=g-import-not-at-top
  iv = lambda x, w=0.001: stats.Interval(x, x - w, x + w, (20,))
  tie = ptpp.gated_floor_claim({"dcpt": iv(0.0200), "gated_floor": iv(0.0201)}, {"ptpp_additive": iv(0.01)})
  assert tie.reproduced is None and "collapsed" in tie.measured
  win = ptpp.gated_floor_claim({"dcpt": iv(0.0200), "gated_floor": iv(0.0100)}, {"ptpp_additive": iv(0.02)})
  assert win.reproduced is True and "collapsed" not in win.measured
  lose = ptpp.gated_floor_claim({"dcpt": iv(0.0200), "gated_floor": iv(0.0150)}, {"ptpp_additive": iv(-0.003)})
  assert lose.reproduced is False
  unsure = ptpp.gated_floor_claim({"dcpt": iv(0.0200), "gated_floor": iv(0.0150)}, {"ptpp_additive": iv(0.0005)})
  assert unsure.reproduced is None


def test_reports_state_the_corpus_epochs_of_each_stage(tmp_path):
  """The epochs each pretraining run and the adaptation runs read come from the runner's cost.json (the most
  any adaptation run read, per corpus); without it the report says they were not recorded."""
  import json  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from cpt_jax.research.report import common  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  assert "not recorded" in common.corpus_epochs(tmp_path)[-1]
  cost = {"corpora": {"en": {"label": "english", "tokens": 10e6, "how": "measured", "by_design": False,
                             "estimated": False}},
          "cells": [{"cell": "pretrain/d32_ptpp500", "kind": "pretrain", "tokens": 23e6, "flops": 1.0,
                     "epochs": {"english": 2.3}},
                    {"cell": "cells/a", "kind": "adapt", "tokens": 1e6, "flops": 1.0,
                     "epochs": {"spanish": 0.25, "english": 0.01}},
                    {"cell": "cells/b", "kind": "adapt", "tokens": 1e6, "flops": 1.0,
                     "epochs": {"spanish": 0.5, "english": None}}]}
  (tmp_path / "cost.json").write_text(json.dumps(cost))
  lines = common.corpus_epochs(tmp_path)
  assert "- pretrain/d32_ptpp500: english 2.30" in lines
  assert "- adaptation runs: english 0.01, spanish 0.50" in lines
  assert lines[-1].startswith("- corpus sizes: english 10.00M tokens (measured)")


def test_an_unfinished_study_states_its_hours_left_against_its_budget(tmp_path):
  """The runs not yet finished cost their FLOPs at the rate the finished runs of their kind achieved (their own
  wall time ÷ the runs that shared the machine with them); with the runner's hours so far that is set against the
  study's wall_hours_budget."""
  from cpt_jax.research.report import common  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  hours_left = common._hours_left  # pylint: disable=protected-access
  assert "not recorded" in hours_left(tmp_path, {}, 0.0)[0]
  cells = [{"cell": "pretrain/p", "kind": "pretrain", "flops": 3.6e12, "done_file": "pretrain/p/summary.json"},
           {"cell": "cells/a", "kind": "adapt", "flops": 7.2e12, "done_file": "cells/a/summary.json"},
           {"cell": "cells/b", "kind": "adapt", "flops": 7.2e12, "done_file": "cells/b/summary.json"},
           {"cell": "cells/c", "kind": "adapt", "flops": 7.2e12, "done_file": "cells/c/summary.json"},
           {"cell": "pretrain/reused", "kind": "pretrain", "flops": 0.0, "done_file": None}]
  (tmp_path / "cost.json").write_text(json.dumps({"cells": cells}))
  # the pretraining: 1 GFLOP/s (its tokenizer and packing time); a and b side by side (2 jobs), 3,600 s each:
  # 4 GFLOP/s together
  for name, wall in (("pretrain/p", 3600.0), ("cells/a", 3600.0), ("cells/b", 3600.0)):
    (tmp_path / name).mkdir(parents=True)
    (tmp_path / name / "summary.json").write_text(json.dumps({"wall_seconds": wall}))
  (tmp_path / "invocations.jsonl").write_text(
      json.dumps({"cells_run": ["pretrain/p"], "jobs": 1}) + "\n" +
      json.dumps({"cells_run": ["cells/a", "cells/b"], "jobs": 2}) + "\n")
  lines = hours_left(tmp_path, {"wall_hours_budget": 6}, 7200.0)
  assert lines[0].startswith("Still to run: 1 of 4 training runs (7.2e+12 FLOPs), 0.5 h at the GFLOP/s"), lines[0]
  assert "(adapt 4, pretrain 1;" in lines[0]
  assert lines[1].endswith("2.0 h measured and 0.5 h still to run make 2.5 h, within it (3.5 h to spare).")
  assert hours_left(tmp_path, {"wall_hours_budget": 2}, 7200.0)[1].endswith("make 2.5 h, over it by 0.5 h.")
  assert len(hours_left(tmp_path, {}, 7200.0)) == 1
  (tmp_path / "cells/c").mkdir()
  (tmp_path / "cells/c/summary.json").write_text(json.dumps({"wall_seconds": 1800.0}))
  assert hours_left(tmp_path, {"wall_hours_budget": 6}, 9000.0) == [
      "Budget: the study is sized for 6 h of wall time on its machine; 2.5 h measured make 2.5 h, within it "
      "(3.5 h to spare)."]


def test_cells_without_a_recorded_wall_time_are_counted_apart(tmp_path):
  """A run whose wall time was not recorded (summary.json `wall_seconds` null) is left out of the sum, and said so."""
  from cpt_jax.research.report import common  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  rows = [{"cell": "cells/a", "wall_seconds": 90.0}, {"cell": "cells/b", "wall_seconds": 30.0},
          {"cell": "cells/c", "wall_seconds": None}]
  text = common.provenance(tmp_path, {}, rows)
  assert ("the 2 adaptation cells' own wall times (results.csv `wall_seconds`) sum to 2.0 min; 1 cells have no "
          "recorded wall time (their summary.json says why).") in text
  assert "have no recorded" not in common.provenance(tmp_path, {}, rows[:2])
