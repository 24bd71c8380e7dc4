import numpy as np
import pytest

from cpt_jax.data import pipeline
from cpt_jax.data.records import DataError
from cpt_jax.data.sources import ListSource
from cpt_jax.data.tokenizer import BOS, EOS, train_tokenizer


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


def _rows(packer, n):
  return [next(packer) for _ in range(n)]


@pytest.mark.parametrize("source_fn", [_text_source, _example_source])
def test_packers_resume_exactly(tokenizer, source_fn):
  packer = pipeline.make_packer(source_fn(), tokenizer, row_len=16, seed=3)
  _rows(packer, 7)
  state = dict(packer.state)
  want = _rows(packer, 25)  # crosses epochs
  fresh = pipeline.make_packer(source_fn(), tokenizer, row_len=16, seed=3)
  fresh.set_state(state)
  for a, b in zip(want, _rows(fresh, 25)):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_concat_rows_start_with_bos_and_shift_targets(tokenizer):
  packer = pipeline.make_packer(_text_source(), tokenizer, row_len=16, seed=0)
  rows = _rows(packer, 5)
  for r in rows:
    assert r["inputs"][0] == BOS
    np.testing.assert_array_equal(r["inputs"][1:], r["targets"][:-1])
    assert r["loss_mask"].sum() == 16
  stream = np.concatenate([r["targets"] for r in rows])
  assert (stream == EOS).sum() >= 1  # documents are separated by EOS


def test_example_packing_is_answer_only_and_segmented(tokenizer):
  packer = pipeline.make_packer(_example_source(), tokenizer, row_len=128, seed=0, shuffle=False)
  row = next(packer)
  segs = row["segment_ids"]
  assert segs.max() >= 2  # several whole examples in one row
  for s in range(1, segs.max() + 1):
    idx = np.where(segs == s)[0]
    np.testing.assert_array_equal(row["positions"][idx], np.arange(len(idx)))
    target_text = tokenizer.decode(row["targets"][idx][row["loss_mask"][idx] > 0])
    assert target_text.strip().startswith("room")  # loss only on the answer (and EOS)
  assert row["loss_mask"][segs == 0].sum() == 0  # padding carries no loss
  full = pipeline.make_packer(_example_source(), tokenizer, 128, 0, shuffle=False, answer_only=False)
  assert next(full)["loss_mask"].sum() > row["loss_mask"].sum()


def test_shards_are_disjoint(tokenizer):
  src = ListSource([{"tokens": np.full(17, i, np.int32)} for i in range(10)], "rows")
  seen = []
  for shard in range(2):
    packer = pipeline.make_packer(src, tokenizer, 16, seed=0, shard_index=shard, shard_count=2)
    seen.append({int(next(packer)["targets"][0]) for _ in range(5)})
  assert seen[0].isdisjoint(seen[1]) and len(seen[0] | seen[1]) == 10


def test_batch_loader_layout_gives_exact_replay_rows(tokenizer):
  target = ListSource([{"tokens": np.full(9, 1, np.int32)}] * 5, "target")
  replay = ListSource([{"tokens": np.full(9, 2, np.int32)}] * 5, "replay")
  loader = pipeline.BatchLoader(
      [(k, [("target", pipeline.make_packer(target, tokenizer, 8, 0, True, k, 2), 3),
            ("replay", pipeline.make_packer(replay, tokenizer, 8, 0, True, k, 2), 1)]) for k in range(2)],
      keys=("targets",), batch_shards=2)
  for _ in range(3):
    kinds = next(loader)["targets"][:, 0]
    np.testing.assert_array_equal(kinds, [1, 1, 1, 2, 1, 1, 1, 2])  # per shard: target rows, then replay


def _text_loader(src, tokenizer, shards, local):
  return pipeline.BatchLoader([(k, [("target", pipeline.make_packer(src, tokenizer, 8, 0, True, k, shards), 2)])
                               for k in local], keys=("targets",), batch_shards=shards)


def _ids(batch):
  return [int(t) for t in batch["targets"][:, 0]]


def test_batch_shards_give_the_same_global_batch_on_any_process_count(tokenizer):
  src = ListSource([{"tokens": np.full(9, i, np.int32)} for i in range(40)], "rows")
  one = _text_loader(src, tokenizer, 4, range(4))
  two = [_text_loader(src, tokenizer, 4, [0, 1]), _text_loader(src, tokenizer, 4, [2, 3])]
  for _ in range(3):
    assert _ids(next(one)) == _ids(next(two[0])) + _ids(next(two[1]))
  # saved by 2 processes, restored by 1 (same 4 batch shards): exact
  saved = {"process_0": two[0].state, "process_1": two[1].state}
  resumed = _text_loader(src, tokenizer, 4, range(4))
  resumed.set_state(saved)
  for _ in range(4):
    assert _ids(next(resumed)) == _ids(next(two[0])) + _ids(next(two[1]))


def test_changed_batch_shards_restart_at_the_consumed_fraction(tokenizer, caplog):
  src = ListSource([{"tokens": np.full(9, i, np.int32)} for i in range(40)], "rows")
  old = _text_loader(src, tokenizer, 4, range(4))
  for _ in range(7):  # 14 of 10 records per shard: epoch 1, index 4
    next(old)
  new = _text_loader(src, tokenizer, 2, range(2))
  with caplog.at_level("WARNING"):
    new.set_state({"process_0": old.state})
  assert "data order cannot carry over" in caplog.text and "4 batch shards" in caplog.text
  assert [p.state for _, streams in new.shards for _, p, _ in streams] == [{"epoch": 1, "index": 8}] * 2
  # legacy states (one stream per process) read as per-process shards
  legacy = {"process_0": {"target": {"epoch": 0, "index": 5}}, "process_1": {"target": {"epoch": 0, "index": 5}}}
  exact = _text_loader(src, tokenizer, 2, range(2))
  exact.set_state(legacy)
  assert [p.state for _, streams in exact.shards for _, p, _ in streams] == [{"epoch": 0, "index": 5}] * 2


def test_bad_records_are_named(tokenizer):
  with pytest.raises(DataError, match="expected 'text'"):
    pipeline.make_packer(ListSource([{"body": "x"}], "bad"), tokenizer, 8, 0)
  short = ListSource([{"tokens": np.ones(5, np.int32)}], "short")
  with pytest.raises(DataError, match="context needs 9"):
    next(pipeline.make_packer(short, tokenizer, 8, 0))


def test_unigram_entropy():
  targets = np.array([[1, 1, 2, 2]])
  assert pipeline.unigram_entropy(targets, np.ones((1, 4)), 5) == pytest.approx(np.log(2))
