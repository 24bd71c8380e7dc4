"""The in-context copying probe: rows that score each copy of a repeated random sequence, and its metric."""

import numpy as np
import pytest

from cpt_jax import build, evaluation, metrics, sharding
from cpt_jax.data import copy_probe, sources


def test_rows_score_the_same_tokens_once_unseen_and_once_repeated():
  sets = copy_probe.copy_rows(vocab_size=50, specials={0, 1, 2, 3}, bos_id=2, pad_id=0, max_len=40, rows=6, seed=0)
  first, second = sets["copy_first"], sets["copy_second"]
  length = (40 - 1) // 2  # 19 tokens per copy: two copies and BOS fill 39 of 40 positions
  assert first["inputs"].shape == first["targets"].shape == (6, 40)
  assert (first["inputs"].dtype, first["loss_mask"].dtype) == (np.int32, np.float32)  # as the pipeline's rows
  seq = first["inputs"][:, 1:length + 1]
  assert (first["inputs"][:, 0] == 2).all() and all(len(set(row)) == length for row in seq)  # distinct tokens
  assert not set(np.unique(seq)) & {0, 1, 2, 3}
  np.testing.assert_array_equal(first["inputs"][:, length + 1:2 * length], seq[:, :-1])  # shown again
  scored_first = first["targets"][first["loss_mask"] == 1].reshape(6, -1)
  scored_second = second["targets"][second["loss_mask"] == 1].reshape(6, -1)
  np.testing.assert_array_equal(scored_first, seq[:, 1:])  # copy tokens 2…L, the first time
  np.testing.assert_array_equal(scored_second, seq[:, 1:])  # and the second
  assert not (first["loss_mask"] * second["loss_mask"]).any()
  again = copy_probe.copy_rows(50, {0, 1, 2, 3}, 2, 0, 40, 6, seed=0)
  np.testing.assert_array_equal(again["copy_first"]["inputs"], first["inputs"])  # the same rows in every run
  assert copy_probe.copy_rows(50, {0}, 2, 0, 8, 6) == {}  # 3 tokens per copy: too short to say anything


def test_runs_report_the_copying_gain_without_another_compile(pretrained):
  """A model trained on text only a little has not learned to copy: its gain is near 0 at every evaluation
  (while its first-copy loss is that of unseen random tokens, several nats). The probe's sets share the text
  sets' compiled eval step."""
  workdir, _ = pretrained
  rows = [r for r in metrics.read_metrics(str(workdir)) if "eval/copy/gain" in r]
  assert rows and rows[0]["step"] == 0
  for r in rows:
    assert r["eval/copy/gain"] == pytest.approx(r["eval/copy_first/loss"] - r["eval/copy_second/loss"])
    assert r["eval/copy_first/loss"] > 3.0 and abs(r["eval/copy/gain"]) < 0.5
  cfg, bundle, params, tokenizer, _ = build.load_run(str(workdir))
  data_dir = sources.data_dir_of(cfg.data)
  evals, entropy = build.eval_sets(cfg, tokenizer, data_dir)
  assert set(copy_probe.SETS) <= set(evals)
  evaluator = evaluation.Evaluator(bundle, sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}), evals,
                                   entropy, [], tokenizer)
  result = evaluator(params)
  assert result["eval/copy/gain"] == pytest.approx(rows[-1]["eval/copy/gain"], abs=1e-4)
  assert evaluator._step._cache_size() == 1  # pylint: disable=protected-access
