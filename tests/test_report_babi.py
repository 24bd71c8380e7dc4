"""The bAbI study's report from made-up results: claims against the majority answer, stopped grids, the replay
guideline, and the copying phase's offset on forgetting."""

import json

import numpy as np

from cpt_jax.research import report
from tests.test_report import _row, _write


def test_babi_report_checks_the_claims(tmp_path):
  rows = []
  for data, bonus in (("synthetic", 0.1), ("original", 0.0)):
    for b in (4e4, 1.2e5, 3.6e5):
      for r in (0, 1 / 32, 1 / 8, 1 / 2):
        acc = min(0.3 + bonus, 0.1 * np.log10(b) - 0.2 + bonus)
        forget = 0.2 * (1 - r) ** 6 * np.log10(b) / 5.5
        rows.append(_row(axis_data=data, adapt_tokens=b, replay_ratio=r, babi_accuracy=acc,
                         base_loss=5.0 + forget, copy_gain_before=0.05, copy_gain=0.5 * np.log10(b) - 2.0,
                         replay_token_share=r / (r + (1 - r) * 0.1)))  # a bAbI row scores a tenth of its tokens
  root = _write(tmp_path / "s", "babi", rows, {"forgetting_threshold_rel": 0.01, "plateau_tolerance": 0.02})
  md = report.study_report(root, tmp_path / "out")
  text = md.read_text()
  assert md.name == "study_babi.md"
  assert (tmp_path / "out" / "study_babi" / "heatmaps.png").exists()
  assert (tmp_path / "out" / "study_babi" / "results.csv").exists()
  assert "| bAbI-Synthetic (diverse) gives much better task mastery than bAbI-Original |" in text
  assert "2 CPU cores" in text or "CPU cores" in text
  assert "the base model 0.05 (< 0.5: it does not look tokens up in its context" in text  # the copying probe
  assert "without replay: bAbI-synthetic 40k 0.30" in text
  assert "- Seeds: at most 1 per cell (< 3), so no interval decides a claim" in text and "Resolution:" not in text
  g = report.babi_guideline([r for r in rows if r["axis_data"] == "synthetic"], 0.01)
  assert g[4e4] <= g[3.6e5]  # forgetting grows with the budget here: more replay needed at larger budgets
  assert "Forgetting is measured from where adaptation starts" not in text  # no copying phase here
  acc_table = text.split("### bAbI-synthetic: accuracy on its own test per replay ratio × budget")[1].split("###")[0]
  assert "| 0 % | 0.360" in acc_table and "| 50 % | 0.360" in acc_table, acc_table  # accuracy per ratio, own test
  share_table = text.split("### bAbI-synthetic: replay's share of the scored tokens")[1].split("###")[0]
  assert "| 12.5 % | 58.8% (1 seed) | 58.8% (1 seed) | 58.8% (1 seed) |" in share_table, share_table
  # with a copying phase before adaptation, forgetting counts from its end, and the report says by how much
  mid = root / "midtrain" / "small_ptpp8"
  mid.mkdir(parents=True)
  (mid / "summary.json").write_text(json.dumps({"before": {"eval/base/loss": 4.6}, "final": {"eval/base/loss": 5.0},
                                                "tokens": 1000, "wall_seconds": 60.0}))
  (mid / "config.json").write_text(json.dumps({"data": {"copy_share": 0.5}, "opt": {"lr": 1e-3}}))
  text = report.study_report(root, tmp_path / "out_mid").read_text()
  assert ("the end of the copying phase `midtrain/small_ptpp8`, base loss 5.000, +0.400 nats from the pretrained "
          "model's 4.600") in text
  assert f"forgetting below 0 (0 of {len(rows)} runs so far)" in text


def test_babi_report_of_a_stopped_grid_decides_nothing_it_has_not_run(tmp_path):
  """Own-test baselines are each variant's own (a run trained on bAbI-original answers the original test), and a
  budget whose larger replay ratios have not run yet gives no guideline verdict, whatever the smaller ones say."""
  rows = []
  for seed in (0, 1, 2):
    for data, maj in (("synthetic", 0.1), ("original", 0.3)):
      for b in (4e4, 3.6e5):
        for r in ((0, 1 / 8, 1 / 2) if data == "synthetic" else (0,)):
          if b == 3.6e5 and r == 1 / 2:
            continue  # the study stopped before the largest budget's 50 % cells
          rows.append(_row(axis_data=data, adapt_tokens=b, replay_ratio=r, seed=seed, babi_accuracy=0.5,
                           babi_accuracy_qa1=0.35 + 0.01 * seed, babi_majority_qa1=maj,
                           base_loss=5.0 + 0.5 * (1 - r) ** 2 + 0.001 * seed))
  root = _write(tmp_path / "s", "babi", rows, {"forgetting_threshold_rel": 0.01, "plateau_tolerance": 0.02})
  text = report.study_report(root, tmp_path / "out").read_text()
  assert "| qa1 | 0.100 | 0.360 [0.350, 0.370] ▲ | 0.300 | 0.360 [0.350, 0.370] ▲ |" in text
  assert "- Resolution: ≥ 3 seeds in 7 of the 7 cells run;" in text and "- Seeds:" not in text
  claim = next(line for line in text.splitlines() if line.startswith("| Lower compute budgets need higher replay"))
  assert "undecided (50 % and up not run yet)" in claim and claim.endswith("| inconclusive |"), claim
  # the no-replay cells of two budgets, no replay cell yet: no guideline, not "no"
  root = _write(tmp_path / "r0", "babi", [r for r in rows if r["replay_ratio"] == 0],
                {"forgetting_threshold_rel": 0.01, "plateau_tolerance": 0.02})
  text = report.study_report(root, tmp_path / "out_r0").read_text()
  claim = next(line for line in text.splitlines() if line.startswith("| Lower compute budgets need higher replay"))
  assert "no replay run yet" in claim and claim.endswith("| inconclusive |"), claim
  # one more cell with a single seed so far: the others still decide, that one is named
  root = _write(tmp_path / "s1", "babi", rows + [dict(rows[0], adapt_tokens=1.2e5, axis_data="original")],
                {"forgetting_threshold_rel": 0.01, "plateau_tolerance": 0.02})
  text = report.study_report(root, tmp_path / "out_s1").read_text()
  assert "- Seeds: 1 of the 8 cells run have fewer than 3 seeds so far;" in text
  assert "- Resolution: ≥ 3 seeds in 7 of the 8 cells run;" in text


def test_babi_accuracy_at_the_ceiling_in_every_seed_is_above_the_majority(tmp_path):
  """A variant scoring 1.000 on every task in every seed (100 questions each) is above its majority answer, with
  the questions' binomial interval; the same at 0.30 against a 0.30 majority is not."""
  rows = []
  for seed in (0, 1, 2):
    for data, acc in (("synthetic", 0.30), ("original", 1.0)):
      rows.append(_row(axis_data=data, adapt_tokens=3.6e5, replay_ratio=0.0, seed=seed, babi_accuracy=acc,
                       babi_examples=200, babi_accuracy_qa1=acc, babi_majority_qa1=0.3, babi_accuracy_qa2=acc,
                       babi_majority_qa2=0.3))
  root = _write(tmp_path / "s", "babi", rows, {"forgetting_threshold_rel": 0.01, "plateau_tolerance": 0.02})
  text = report.study_report(root, tmp_path / "out").read_text()
  assert "| qa1 | 0.300 | 0.300 [0.300, 0.300] | 0.300 | 1.000 [0.964, 1.000] ▲ |" in text, text
  lifted = [line for line in text.splitlines() if line.startswith("| Adapting to bAbI-")]
  assert lifted[0].endswith("| inconclusive |") and "0 yes" in lifted[0], lifted[0]
  assert lifted[1].endswith("| **yes** |") and "2 yes, 0 no, 0 undecided of 2" in lifted[1], lifted[1]
  assert "did not all start from the same base" not in text
  rows[-1]["base_loss_before"] = 5.01  # a cell restored from an archive, run on a base that came out different
  root = _write(tmp_path / "s2", "babi", rows, {"forgetting_threshold_rel": 0.01, "plateau_tolerance": 0.02})
  text = report.study_report(root, tmp_path / "out2").read_text()
  assert "the cells of small at PTPP 8 did not all start from the same base**: base loss before adapting " \
         "5.000000, 5.010000" in text


def test_babi_replay_claim_after_a_copying_phase_needs_both_references(tmp_path):
  """Runs that start after a copying phase count forgetting from its end. When 5 % replay stays under the
  threshold from there but not from the pretrained model, the claim is undecided, and both figures are shown."""
  rows = [_row(axis_data="synthetic", adapt_tokens=b, replay_ratio=r, seed=seed, babi_accuracy=0.5,
               base_loss=5.0 + (0.3 if r == 0 else 0.01) + 0.001 * seed)
          for seed in (0, 1, 2) for b in (1e6, 3e6) for r in (0, 0.05)]
  root = _write(tmp_path / "s", "babi", rows, {"forgetting_threshold_rel": 0.01, "plateau_tolerance": 0.02})

  def claim(out):
    text = report.study_report(root, tmp_path / out).read_text()
    return next(line for line in text.splitlines() if line.startswith("| 5–10 % replay is enough"))

  assert claim("out_plain").endswith("| **yes** |") and "pretrained model" not in claim("out_plain")
  mid = root / "midtrain" / "small_ptpp8"
  mid.mkdir(parents=True)
  (mid / "config.json").write_text(json.dumps({"data": {"copy_share": 0.5}, "opt": {"lr": 1e-3}}))
  for pre, answer in ((4.9, "| inconclusive |"), (4.99, "| **yes** |")):  # +2.2 % vs +0.4 % from pretrained
    (mid / "summary.json").write_text(json.dumps({"before": {"eval/base/loss": pre}, "final": {
        "eval/base/loss": 5.0}, "tokens": 1000, "wall_seconds": 60.0}))
    line = claim(f"out_{pre}")
    assert line.endswith(answer) and f"from the pretrained model instead (before the copying phase, base loss " \
                                      f"{pre:.3f}): 1M: +" in line, line
    assert ("yes from where adaptation starts, no from the pretrained model" in line) == (pre == 4.9), line


def test_babi_guideline_compares_the_budgets_the_replay_ratios_ran_at(tmp_path):
  """A design that runs its largest budget without replay (the learning curve's end) decides "lower budgets need
  higher replay" on the smallest and largest budgets with replay; replay at one budget only decides nothing."""
  def rows(budgets_with_replay):
    out = []
    for seed in (0, 1, 2):
      for b in (1e6, 3e6, 9e6):
        for r in ((0, 0.05, 0.25, 0.5) if b in budgets_with_replay else (0,)):
          forget = 0.3 * (1 - r) ** 3 if b == 1e6 or r == 0 else 0.03  # 1M needs 50 %, 3M 5 %
          out.append(_row(axis_data="synthetic", adapt_tokens=b, replay_ratio=r, seed=seed, babi_accuracy=0.5,
                          base_loss=5.0 + forget + 0.001 * seed))
    return out

  def claim(budgets_with_replay, name):
    root = _write(tmp_path / name, "babi", rows(budgets_with_replay), {"forgetting_threshold_rel": 0.01})
    text = report.study_report(root, tmp_path / f"out_{name}").read_text()
    return next(line for line in text.splitlines() if line.startswith("| Lower compute budgets need higher replay"))

  both = claim((1e6, 3e6), "both")
  assert "smallest → largest budget with replay: 50 % (sure from 50 %) → 5 % (sure from 5 %)" in both, both
  assert both.endswith("| **yes** |"), both
  assert claim((1e6,), "one").endswith("| inconclusive |")


def test_babi_guideline_after_a_copying_phase_is_read_from_both_references(tmp_path):
  """From where adaptation starts, 1M needs 5 % replay and 3M 25 %: lower budgets need *less* ("no"). From a
  pretrained model 2 % below that start, 1M needs 50 % and 3M 25 % ("yes"). The guideline shows both references,
  the claim is decided only where they agree, and the table leaves out what ran without replay."""
  loss = {(1e6, 0): 5.3, (1e6, 0.05): 4.99, (1e6, 0.25): 4.96, (1e6, 0.5): 4.92,
          (3e6, 0): 5.3, (3e6, 0.05): 5.2, (3e6, 0.25): 4.93, (3e6, 0.5): 4.92}
  rows = [_row(axis_data="synthetic", adapt_tokens=b, replay_ratio=r, seed=seed, babi_accuracy=0.5,
               base_loss=x + 0.001 * seed) for seed in (0, 1, 2) for (b, r), x in loss.items()]
  rows += [_row(axis_data=data, adapt_tokens=b, replay_ratio=0.0, seed=seed, babi_accuracy=0.5, base_loss=5.3)
           for seed in (0, 1, 2) for data, b in (("original", 1e6), ("original", 3e6), ("synthetic", 9e6))]
  root = _write(tmp_path / "s", "babi", rows, {"forgetting_threshold_rel": 0.01})
  mid = root / "midtrain" / "small_ptpp8"
  mid.mkdir(parents=True)
  (mid / "config.json").write_text(json.dumps({"data": {"copy_share": 0.5}, "opt": {"lr": 1e-3}}))
  for pre, answer in ((4.9, "| inconclusive |"), (5.01, "| **no** |")):
    (mid / "summary.json").write_text(json.dumps({"before": {"eval/base/loss": pre}, "final": {
        "eval/base/loss": 5.0}, "tokens": 1000, "wall_seconds": 60.0}))
    text = report.study_report(root, tmp_path / f"out_{pre}").read_text()
    claim = next(line for line in text.splitlines() if line.startswith("| Lower compute budgets need higher replay"))
    assert claim.endswith(answer), claim
    assert "5 % (sure from 5 %) → 25 % (sure from 25 %); from the pretrained model: " in claim, claim
    if pre == 4.9:
      assert "from the pretrained model: 50 % (sure from 50 %) → 25 % (sure from 25 %)" in claim, claim
      assert "no from where adaptation starts (" in claim and ", yes from the pretrained model before" in claim, claim
    assert f"| budget | bAbI-synthetic | bAbI-synthetic, from the pretrained model ({pre:.3f}) |" in text
    assert "Not in the table (no replay cell run): bAbI-original, 9M tokens." in text
    assert "| 9M |" not in text.split("### Guideline")[1].split("Plateau budget")[0]
  # runs that began from a base other than the phase's end get no pretrained reference
  root = _write(tmp_path / "other", "babi", [dict(r, base_loss_before=5.1) for r in rows],
                {"forgetting_threshold_rel": 0.01})
  (root / "midtrain").mkdir()
  mid.rename(root / "midtrain" / mid.name)
  text = report.study_report(root, tmp_path / "out_other").read_text()
  assert "from the pretrained model" not in text.split("### Guideline")[1].split("Plateau budget")[0]


def test_babi_learning_curve_still_rising_at_its_end_leaves_the_plateau_open(tmp_path):
  """Accuracy that still gains between the two largest budgets is no evidence against a plateau beyond them: the
  claim is inconclusive, and the report says what the next budget would cost; a flat end is a plateau (yes)."""
  def text(gain, name):
    rows = [_row(axis_data="synthetic", adapt_tokens=b, replay_ratio=0.0, seed=seed, wall_seconds=3600.0 * b / 9e6,
                 babi_accuracy=0.3 + 0.001 * seed + (0.3 if b > 1e6 else 0) + (gain if b > 3e6 else 0))
            for seed in (0, 1, 2) for b in (1e6, 3e6, 9e6)]
    root = _write(tmp_path / name, "babi", rows, {"forgetting_threshold_rel": 0.01, "plateau_tolerance": 0.02})
    return report.study_report(root, tmp_path / f"out_{name}").read_text()

  rising = text(0.1, "rising")
  claim = next(line for line in rising.splitlines() if line.startswith("| Task accuracy plateaus"))
  assert claim.endswith("| inconclusive |") and "a plateau, if there is one, lies beyond 9M tokens" in claim, claim
  assert ("the next budget at the same step (×3, 27M tokens) would take ≈3.0 h per seed, scaled from the 9M cells' "
          "measured 1.0 h") in rising
  flat = text(0.0, "flat")
  assert next(line for line in flat.splitlines() if line.startswith("| Task accuracy plateaus")).endswith(
      "| **yes** |")
  assert "where it flattens is not measured" not in flat


def test_babi_budgets_that_need_the_same_smallest_ratio_are_not_told_apart(tmp_path):
  """Both budgets fail at 0 % and pass at 5 %: each needs something in (0, 5 %], which the grid cannot order, so
  "lower budgets need higher replay" is neither yes nor no."""
  rows = [_row(axis_data="synthetic", adapt_tokens=b, replay_ratio=r, seed=seed, babi_accuracy=0.5,
               base_loss=(5.3 if r == 0 else 4.9) + 0.001 * seed)
          for seed in (0, 1, 2) for b in (1e6, 3e6) for r in (0, 0.05, 0.25)]
  root = _write(tmp_path / "s", "babi", rows, {"forgetting_threshold_rel": 0.01})
  text = report.study_report(root, tmp_path / "out").read_text()
  claim = next(line for line in text.splitlines() if line.startswith("| Lower compute budgets need higher replay"))
  assert "5 % (sure from 5 %) → 5 % (sure from 5 %)" in claim and claim.endswith("| inconclusive |"), claim
