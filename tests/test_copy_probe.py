"""The in-context copying probe: rows that score each copy of a repeated random sequence, and its metric."""

import numpy as np
import pytest

from cpt_jax import metrics
from cpt_jax.data import copy_probe


def test_rows_score_the_same_tokens_once_unseen_and_once_repeated():
  sets = copy_probe.copy_rows(vocab_size=50, specials={0, 1, 2, 3}, bos_id=2, max_len=40, rows=6, seed=0)
  first, second = sets["copy_first"], sets["copy_second"]
  length = (40 - 1) // 2  # 19 tokens per copy: two copies and BOS fill 39 of 40 positions
  assert first["inputs"].shape == first["targets"].shape == (6, 40)
  assert (first["inputs"][:, 0] == 2).all() and (first["inputs"][:, 1:] >= 4).sum() == 6 * (2 * length - 1)
  scored_first = first["targets"][first["loss_mask"] == 1].reshape(6, -1)
  scored_second = second["targets"][second["loss_mask"] == 1].reshape(6, -1)
  assert scored_first.shape == (6, length - 1)
  np.testing.assert_array_equal(scored_first, scored_second)  # the same tokens: seen before only in the second
  np.testing.assert_array_equal(first["targets"][:, :2 * length - 1], first["inputs"][:, 1:2 * length])  # next tokens
  assert not (first["loss_mask"] & second["loss_mask"]).any()
  assert not set(np.unique(first["inputs"][:, 1:2 * length])) & {0, 1, 2, 3}
  again = copy_probe.copy_rows(50, {0, 1, 2, 3}, 2, 40, 6, seed=0)
  np.testing.assert_array_equal(again["copy_first"]["inputs"], first["inputs"])  # the same rows in every run
  assert copy_probe.copy_rows(50, {0}, 2, 8, 6) == {}  # 3 tokens per copy: too short to say anything


def test_runs_report_the_copying_gain(pretrained):
  """A model trained on text only a little has not learned to copy: its gain is near 0 at every evaluation
  (while its first-copy loss is that of unseen random tokens, several nats)."""
  workdir, _ = pretrained
  rows = [r for r in metrics.read_metrics(str(workdir)) if "eval/copy/gain" in r]
  assert rows and rows[0]["step"] == 0
  for r in rows:
    assert r["eval/copy/gain"] == pytest.approx(r["eval/copy_first/loss"] - r["eval/copy_second/loss"])
    assert r["eval/copy_first/loss"] > 3.0 and abs(r["eval/copy/gain"]) < 0.5
