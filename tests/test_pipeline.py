import json
import logging

import jax
import numpy as np
import pytest

from cpt_jax import objective as objective_lib
from cpt_jax.data import pipeline
from cpt_jax.data.records import DataError
from cpt_jax.data.sources import ListSource
from cpt_jax.data.tokenizer import BOS, EOS, train_tokenizer
from cpt_jax.replay import self_replay_rows


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  from tests.conftest import synthetic_document  # noqa: PLC0415
  import random
  rng = random.Random(1)
  texts = [synthetic_document(rng, 30) for _ in range(40)] + ["Story: Mary went to the kitchen. Answer: kitchen"]
  return train_tokenizer(texts, tmp_path_factory.mktemp("tok") / "t.model", vocab_size=400)


def _text_source(n=30):
  return ListSource([{"text": f"document {i} " + "word " * (i % 7 + 3)} for i in range(n)], "texts")


def _example_source(n=40):
  return ListSource([{"prompt": f"Mary went to room {i}. Where is Mary? Answer:", "completion": f" room {i}"}
                     for i in range(n)], "examples")


def _id_source(n, first, name):
  """Pre-tokenized rows whose tokens all are the record's id: a row names the record it came from."""
  return ListSource([{"tokens": np.full(9, first + i, np.int32)} for i in range(n)], name)


def _checkpointed(state):
  """As Orbax's JSON item gives it back."""
  return json.loads(json.dumps({"process_0": state}))


@pytest.mark.parametrize("source_fn,make_rows", [(_text_source, pipeline.rows), (_example_source, pipeline.rows),
                                                 (_text_source, pipeline.copy_rows)])
def test_rows_resume_exactly_through_a_checkpoint(tokenizer, source_fn, make_rows):
  def loader():
    rows = make_rows(source_fn(), tokenizer, 16, seed=3)
    return pipeline.BatchLoader([("target", rows, 2)],
                                pipeline.ROW_KEYS, batch_shards=1)
  first = loader()
  for _ in range(4):  # 8 rows: mid-document, mid-epoch
    next(first)
  saved = _checkpointed(first.state)
  want = [next(first) for _ in range(15)]  # crosses epochs
  first.close()
  resumed = loader()
  resumed.set_state(saved)
  for a, b in zip(want, [next(resumed) for _ in range(15)]):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  resumed.close()


def test_text_rows_start_with_bos_and_shift_targets(tokenizer):
  rows = pipeline.take(pipeline.rows(_text_source(), tokenizer, row_len=16, seed=0), 5)
  for inputs, targets, mask in zip(rows["inputs"], rows["targets"], rows["loss_mask"]):
    assert inputs[0] == BOS
    np.testing.assert_array_equal(inputs[1:], targets[:-1])
    assert mask.sum() == 16
  assert (rows["targets"] == EOS).sum() >= 1  # documents are separated by EOS
  # rows continue the concatenated documents: no token is dropped or repeated between rows
  again = pipeline.take(pipeline.rows(_text_source(), tokenizer, row_len=80, seed=0), 1)
  np.testing.assert_array_equal(rows["targets"].ravel(), again["targets"].ravel())


def test_copy_rows_show_spans_from_unrelated_places_twice_and_score_the_repeats(tokenizer):
  """A copy row is [BOS, s1, s1, s2, s2, …], each span a piece of the corpus's text (where in it: test_copy_probe),
  scored on each repeat's tokens 2…n only (under half the row)."""
  text = pipeline.take(pipeline.rows(_text_source(), tokenizer, row_len=32, seed=5), 40 * pipeline.SPAN_SOURCES)
  stream = np.concatenate([np.concatenate([i[:1], t]) for i, t in zip(text["inputs"], text["targets"])])
  copies = pipeline.take(pipeline.copy_rows(_text_source(), tokenizer, row_len=32, seed=5), 40)

  def in_text(span):
    return any(np.array_equal(stream[j:j + len(span)], span) for j in range(len(stream) - len(span) + 1))

  for x_in, x_out, mask in zip(copies["inputs"], copies["targets"], copies["loss_mask"]):
    x = np.concatenate([x_in[:1], x_out])
    assert x[0] == BOS and 0 < mask.sum() < 16
    scored = np.flatnonzero(mask)
    for t in scored:  # a scored token continues an earlier copy of its span
      assert any(x[j] == x[t + 1] and x[j - 1] == x[t] for j in range(1, t + 1)), t
    n = int(scored[0]) - 1  # the first repeat is x[1 + n:1 + 2n]: its token 2, x[2 + n], is target 1 + n
    span = x[1:1 + n]
    np.testing.assert_array_equal(x[1 + n:1 + 2 * n], span)
    assert in_text(span)



def test_copy_rows_need_text_records(tokenizer):
  with pytest.raises(DataError, match="data.copy_share"):
    pipeline.copy_rows(_example_source(), tokenizer, 16, seed=0)


def test_epochs_are_reshuffled_and_cover_every_record(tokenizer):
  src = _id_source(10, 0, "ids")
  ids = pipeline.take(pipeline.rows(src, tokenizer, 8, seed=0), 30)["targets"][:, 0]
  epochs = ids.reshape(3, 10)
  assert all(sorted(e) == list(range(10)) for e in epochs)
  assert len({tuple(e) for e in epochs}) == 3
  unshuffled = pipeline.take(pipeline.rows(src, tokenizer, 8, seed=0, shuffle=False), 10)["targets"][:, 0]
  assert list(unshuffled) == list(range(10))


def test_example_packing_is_answer_only_and_segmented(tokenizer):
  row = pipeline.take(pipeline.rows(_example_source(), tokenizer, row_len=128, seed=0, shuffle=False), 1)
  row = {k: v[0] for k, v in row.items()}
  segs = row["segment_ids"]
  assert segs.max() >= 2  # several whole examples in one row
  for s in range(1, segs.max() + 1):
    idx = np.where(segs == s)[0]
    np.testing.assert_array_equal(row["positions"][idx], np.arange(len(idx)))
    target_text = tokenizer.decode(row["targets"][idx][row["loss_mask"][idx] > 0])
    assert target_text.strip().startswith("room")  # loss only on the answer (and EOS)
  assert row["loss_mask"][segs == 0].sum() == 0  # padding carries no loss
  full = pipeline.take(pipeline.rows(_example_source(), tokenizer, 128, 0, shuffle=False, answer_only=False), 1)
  assert full["loss_mask"].sum() > row["loss_mask"].sum()


def test_long_examples_keep_their_end_and_are_counted_once(tokenizer, caplog):
  src = ListSource([{"prompt": "Mary went to the kitchen. " * (8 if i % 4 == 0 else 1) + "Where is Mary?",
                     "completion": " kitchen"} for i in range(20)], "stories")
  with caplog.at_level(logging.WARNING):
    rows = pipeline.take(pipeline.rows(src, tokenizer, 32, seed=0), 40)
  assert (rows["loss_mask"].sum(axis=1) > 0).all()  # every row still scores an answer
  lines = [r.getMessage() for r in caplog.records if "longer than the context" in r.getMessage()]
  assert len(lines) == 1 and lines[0].startswith("5 of 20 examples (25 %) of") and "stories" in lines[0], lines


def _mixture(batch, ratio, shards, local=None):
  replay_cfg = {"ratio": ratio, "semantics": "mixture", "loss": "ntp", "coeff": 1.0, "kind": "real", "samples": ""}
  obj = objective_lib.resolve(_Cfg(replay_cfg), "adapt", batch, shards)
  loader = pipeline.BatchLoader(
      [("target", pipeline.rows(_id_source(50, 0, "target"), None, 8, seed=1), shards * obj.target_rows_per_shard),
       ("replay", pipeline.rows(_id_source(30, 1000, "replay"), None, 8, seed=2),
        shards * obj.replay_rows_per_shard)], ("targets",), shards, local)
  return obj, loader


class _Cfg(dict):
  __getattr__ = dict.__getitem__


def _ids(batch):
  return [int(t) for t in batch["targets"][:, 0]]


def _streams(obj, ids):
  """(target ids, replay ids) of a global batch in the step's layout, each in its stream's order."""
  per = obj.target_rows_per_shard + obj.replay_rows_per_shard
  shards = [ids[k * per:(k + 1) * per] for k in range(obj.batch_shards)]
  return ([i for s in shards for i in s[:obj.target_rows_per_shard]],
          [i for s in shards for i in s[obj.target_rows_per_shard:]])


@pytest.mark.parametrize("batch,ratio,shards", [(8, 0.25, 2), (16, 0.5, 4), (12, 1 / 3, 4), (32, 0.125, 4),
                                                (6, 0.5, 1)])
def test_mixture_layout_and_ratio_hold_across_a_resume(batch, ratio, shards):
  obj, loader = _mixture(batch, ratio, shards)
  t, r = obj.target_rows_per_shard, obj.replay_rows_per_shard
  assert obj.replay_row_ratio == pytest.approx(ratio)
  history = []
  for step in range(7):
    if step == 3:  # checkpoint, then resume in a fresh loader
      saved = _checkpointed(loader.state)
      loader.close()
      obj, loader = _mixture(batch, ratio, shards)
      loader.set_state(saved)
    ids = _ids(next(loader))
    assert len(ids) == batch
    for k in range(shards):  # every shard: its target rows, then its replay rows
      shard = ids[k * (t + r):(k + 1) * (t + r)]
      assert all(i < 1000 for i in shard[:t]) and all(i >= 1000 for i in shard[t:]), (step, k, ids)
    assert sum(i >= 1000 for i in ids) / batch == pytest.approx(ratio)
    history.append(_streams(obj, ids))
  loader.close()
  _, uninterrupted = _mixture(batch, ratio, shards)
  assert [_streams(obj, _ids(next(uninterrupted))) for _ in range(7)] == history
  uninterrupted.close()


def test_global_batches_do_not_depend_on_shards_or_processes():
  def sequence(shards, local=None, n=5, resume_from=None):
    obj, loader = _mixture(16, 0.25, shards, local)
    if resume_from is not None:
      loader.set_state(resume_from)
    out = [_ids(next(loader)) for _ in range(n)]
    state = loader.state
    loader.close()
    return obj, out, state

  obj1, one, _ = sequence(1, n=8)
  want = [_streams(obj1, ids) for ids in one]
  for shards in (2, 4):
    obj, ids, _ = sequence(shards, n=8)
    assert [_streams(obj, b) for b in ids] == want
  # 2 processes × 2 batch shards each give the 4-shard global batch
  obj4, four, _ = sequence(4, n=3)
  halves = [sequence(4, local, n=3)[1] for local in ([0, 1], [2, 3])]
  assert [a + b for a, b in zip(*halves)] == four
  # saved on 1 batch shard after 3 batches, resumed on 4 (and on 2 processes): the same global sequence
  _, _, state = sequence(1, n=3)
  saved = _checkpointed(state)
  obj4, resumed, _ = sequence(4, n=5, resume_from=saved)
  assert [_streams(obj4, b) for b in resumed] == want[3:]
  halves = [sequence(4, local, n=5, resume_from=saved)[1] for local in ([0, 1], [2, 3])]
  assert [a + b for a, b in zip(*halves)] == resumed


def test_restore_checks_streams_and_warns_on_old_states(caplog):
  _, loader = _mixture(8, 0.25, 2)
  with pytest.raises(DataError, match="another replay setting"):
    loader.set_state(_checkpointed({**loader.state, "streams": ["target"]}))
  legacy = {"process_0": {"batch_shards": 2, "shards": {"0": {"target": {"epoch": 0, "index": 5}}}}}
  with caplog.at_level("WARNING"):
    loader.set_state(legacy)
  assert "data order cannot carry over" in caplog.text
  loader.close()


def test_self_replay_on_the_fly_resumes_and_never_reuses_a_sample():
  calls = []

  def sampler(params, key):
    calls.append(int(jax.random.randint(key, (), 0, 1 << 30)))
    return np.full((3, 9), calls[-1] % 1000 + params, np.int32) + np.arange(3)[:, None]

  def loader():
    return pipeline.BatchLoader([("replay", self_replay_rows(sampler, 0, jax.random.key(5), 3), 2)],
                                ("targets",), batch_shards=2)
  first = loader()
  seen = [_ids(next(first)) for _ in range(4)]  # 8 rows: chunks 0-2
  saved = _checkpointed(first.state)
  want = [_ids(next(first)) for _ in range(3)]
  first.close()
  flat = [i for ids in seen + want for i in ids]
  assert len(set(flat)) == len(flat)  # every row is a new sample
  resumed = loader()
  resumed.set_state(saved)
  assert [_ids(next(resumed)) for _ in range(3)] == want
  resumed.close()


def test_bad_records_are_named(tokenizer):
  with pytest.raises(DataError, match="expected 'text'"):
    pipeline.rows(ListSource([{"body": "x"}], "bad"), tokenizer, 8, 0)
  short = ListSource([{"tokens": np.ones(5, np.int32)}], "short")
  with pytest.raises(DataError, match="context needs 9"):
    pipeline.take(pipeline.rows(short, tokenizer, 8, 0), 1)


def test_unigram_entropy():
  targets = np.array([[1, 1, 2, 2]])
  assert pipeline.unigram_entropy(targets, np.ones((1, 4)), 5) == pytest.approx(np.log(2))
