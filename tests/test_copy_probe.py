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
  assert set(copy_probe.SETS) <= set(evals) and set(copy_probe.TEXT_SETS) <= set(evals)
  evaluator = evaluation.Evaluator(bundle, sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}), evals,
                                   entropy, [], tokenizer)
  result = evaluator(params)
  assert result["eval/copy/gain"] == pytest.approx(rows[-1]["eval/copy/gain"], abs=1e-4)
  # text spans shown twice: the second copy is English the model has just read, so some of the gain of a text
  # model shows even without copying; the gain is the difference of the two sets' losses
  assert result["eval/copy_text/gain"] == pytest.approx(
      result["eval/copy_text_first/loss"] - result["eval/copy_text_second/loss"])
  assert evaluator._step._cache_size() == 1  # pylint: disable=protected-access
  # each probe's two sets are one forward pass with two masks, and give what each set gives alone
  shared = {tuple(names) for names, _ in evaluator._batches if len(names) > 1}  # pylint: disable=protected-access
  assert shared == {tuple(copy_probe.SETS), tuple(copy_probe.TEXT_SETS)}
  for name in copy_probe.SETS + copy_probe.TEXT_SETS:
    alone = evaluation.Evaluator(bundle, sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}),
                                 {name: evals[name]}, {}, [], tokenizer)(params)
    assert alone[f"eval/{name}/loss"] == pytest.approx(result[f"eval/{name}/loss"], rel=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_repeated_spans_score_each_copy_after_its_first_token(seed):
  """Distinct tokens, so each appears at most twice: every scored second-copy target sits one span length after
  the same token in the first copy, which the first set scores; and the two sets score as many tokens."""
  tokens_N = np.concatenate([[2], np.arange(10, 10 + 120)]).astype(np.int32)
  x_N, first, second = copy_probe.repeat_spans(tokens_N, np.random.default_rng(seed))
  assert x_N[0] == 2 and len(x_N) == len(tokens_N)
  assert 0 < second.sum() <= first.sum() < len(first)
  for t in np.flatnonzero(second):
    (j,) = [j for j in np.flatnonzero(x_N == x_N[t + 1]) if j < t + 1]
    assert first[j - 1] == 1 and x_N[j - 1] == x_N[t]
  assert not (first * second).any()
  np.testing.assert_array_equal(x_N[1:1 + copy_probe.SPAN_TOKENS[0]], tokens_N[1:1 + copy_probe.SPAN_TOKENS[0]])


@pytest.mark.parametrize("seed", range(3))
def test_training_spans_come_from_random_offsets_of_each_row_in_turn(seed):
  """Rows of distinct ids name where every token came from: span i is a run of consecutive tokens of row i mod K
  (its BOS never taken), shown twice, the repeat scored after its first token; offsets vary."""
  rows_KxN = np.concatenate([np.full((4, 1), 2), 1000 * np.arange(1, 5)[:, None] + np.arange(64)], axis=1)
  x_N, repeats_N1 = copy_probe.spans_across(rows_KxN.astype(np.int32), np.random.default_rng(seed))
  assert x_N[0] == 2 and len(x_N) == 65 and 2 not in x_N[1:]
  pos, i, offsets = 1, 0, []
  while pos + 1 < len(x_N):
    n = 1
    while pos + n < len(x_N) and x_N[pos + n] == x_N[pos + n - 1] + 1:
      n += 1
    span = x_N[pos:pos + n]
    assert span[0] // 1000 == i % 4 + 1 and copy_probe.SPAN_TOKENS[0] <= n or pos + n == len(x_N)
    offsets.append(span[0] % 1000)
    repeat = x_N[pos + n:pos + 2 * n]
    np.testing.assert_array_equal(repeat, span[:len(repeat)])
    assert not repeats_N1[pos:pos + n - 1].any() and repeats_N1[pos + n:pos + n + len(repeat) - 1].all()
    pos, i = pos + n + len(repeat), i + 1
  assert i >= 2 and len(set(offsets)) > 1
