"""tools/probe_lookup.py: its tasks' answers are what the task says (checked by reading the rows back), and a
short run reports a curve per phase."""

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("probe_lookup", ROOT / "tools" / "probe_lookup.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_latest_answer_is_the_last_place_of_the_asked_name():
  x_BxN, mask_BxN = probe.latest_rows(np.random.default_rng(3), 200)
  for row in x_BxN:
    sentences, asked, answer = row[:-3].reshape(-1, 5), row[-2], row[-1]
    assert row[-3] == probe.QUERY
    assert answer == [s[3] for s in sentences if s[0] == asked][-1]
  assert (mask_BxN.sum(1) == 1).all() and (mask_BxN[:, -2] == 1).all()
  # the task is not answerable from the last sentence alone: the heuristic sits well under 1
  assert 0.2 < probe.heuristics("latest")["last_place_named"] < 0.7


def test_recall_answer_follows_the_asked_key_and_copy_masks_only_repeats():
  x_BxN, _ = probe.recall_rows(np.random.default_rng(4), 200)
  for row in x_BxN:
    pairs = dict(row[:16].reshape(8, 2))
    assert len(pairs) == 8 and row[-1] == pairs[row[-2]]
  x_BxL, mask_BxL = probe.copy_rows(np.random.default_rng(5), 50)
  for row, mask in zip(x_BxL, mask_BxL):
    targets = np.flatnonzero(mask) + 1
    period = targets[0] - 1  # the repeat starts at the span length n; n + 1 is the first target
    assert 10 <= period <= 20 and len(targets) == period - 1
    assert (row[targets] == row[targets - period]).all()


def test_run_reports_both_phases():
  lines = []
  r = probe.run("recall", steps=3, copy_steps=2, layers=1, width=32, heads=2, batch=8, every=1, log=lines.append)
  assert [c["step"] for c in r["curves"]["copy"]] == [1, 2]
  assert [c["step"] for c in r["curves"]["recall"]] == [1, 2, 3]
  assert len(lines) == 5
  for name in ("copy", "recall"):
    assert 0.0 <= r["final_accuracy"][name] <= 1.0
