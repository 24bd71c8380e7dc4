"""Grain pipelines from records to training batches: one global order of rows per stream, exactly resumable.

Every stream (target, real replay, a self-generated replay dataset) is one Grain dataset; batches zip the
streams and cut the global batch into the step's layout:

  MapDataset.source(records)
    → .shuffle(seed) → .repeat()                    each epoch reshuffled (Grain reseeds per epoch)
    → .map(tokenize)                                 text: doc + EOS | example: BOS prompt completion EOS
    → .to_iter_dataset()                             tokenized in Grain's reader threads
    → pack:  text     ConcatThenSplitIterDataset(L)  → .map(BOS + chunk)        rows that start with BOS
             example  FirstFitPackIterDataset(L, 1 bin, in order)               whole examples, per-example
                                                                                  positions and segment ids
             tokens   (records already are rows of L+1 tokens)
    → .batch(rows of this stream per global batch)
  ZipIterDataset([target batches, replay batches])     self-replay on the fly: cpt_jax/replay.py, same shape
    → .map(shard layout)                              per batch shard k: its target rows, then its replay rows
    → ThreadPrefetchIterDataset(buffer)               made ahead on a background thread; bounded buffer

The order of rows does not depend on how many batch shards (mesh.data × mesh.fsdp) or processes there are:
global batch t is rows [t·n, (t+1)·n) of each stream, and batch shard k of K takes the k-th K-th of each
stream's rows. So a checkpoint's data state (the Grain iterator's state, a small JSON dict) resumes the same
sequence of global batches on any topology (docs/multihost.md). Each process runs the whole pipeline and
keeps its batch shards' rows.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Protocol, Sequence

import grain
import numpy as np

from cpt_jax.data import copy_probe
from cpt_jax.data.records import DataError
from cpt_jax.data.tokenizer import Tokenizer

Row = dict[str, np.ndarray]  # inputs, targets, loss_mask, positions, segment_ids: each [L]
ROW_KEYS = ("inputs", "targets", "loss_mask", "positions", "segment_ids")
STATE_VERSION = 2  # checkpointed data states before it were per batch shard (k::K records), not one global order
# Tokenization runs in Grain's reader threads, a few documents ahead of packing.
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=64)


class Source(Protocol):

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> dict[str, Any]: ...


def record_kind(record: dict[str, Any]) -> str:
  if "tokens" in record:
    return "tokens"
  if "prompt" in record and "completion" in record:
    return "example"
  if "text" in record:
    return "text"
  raise DataError(f"record has fields {sorted(record)}; expected 'text', 'prompt'+'completion' or 'tokens'")


def token_row(tokens_T: np.ndarray) -> Row:
  """L+1 tokens of one sequence → a row predicting tokens 1..L from 0..L-1, every target scored."""
  n = len(tokens_T) - 1
  return {"inputs": tokens_T[:-1], "targets": tokens_T[1:], "loss_mask": np.ones(n, np.float32),
          "positions": np.arange(n, dtype=np.int32), "segment_ids": np.ones(n, np.int32)}


def _text_row(bos: int, chunk: dict[str, np.ndarray]) -> Row:
  """L tokens of the concatenated documents → a row that starts with BOS (inputs) and predicts them (targets)."""
  return token_row(np.concatenate([np.array([bos], np.int32), chunk["tokens"].astype(np.int32)]))


def _example_row(packed: dict[str, np.ndarray]) -> Row:
  return {"inputs": packed["inputs"].astype(np.int32), "targets": packed["targets"].astype(np.int32),
          "loss_mask": packed["loss_mask"].astype(np.float32),
          "positions": packed["inputs_positions"].astype(np.int32),
          "segment_ids": packed["inputs_segment_ids"].astype(np.int32)}


class _TokenizeExample:
  """BOS prompt completion EOS, shifted into inputs/targets; an example longer than a row keeps its end
  (question and answer). How many were cut is logged once, when the share is known (`TRUNCATION_SAMPLE`
  examples or a whole epoch)."""

  TRUNCATION_SAMPLE = 2000

  def __init__(self, tokenizer: Tokenizer, row_len: int, answer_only: bool, name: str, num_records: int,
               report: bool):
    self._tok, self._row_len, self._answer_only, self._name = tokenizer, row_len, answer_only, name
    self._sample = min(self.TRUNCATION_SAMPLE, num_records)
    self._seen, self._cut, self._longest = set(), 0, 0
    self._reported = not report
    self._lock = threading.Lock()  # Grain's reader threads call this concurrently

  def _count(self, index: int, n_tokens: int) -> None:
    if self._reported or index >= self._sample:  # after the first examples of epoch 0: no lock per example
      return
    with self._lock:
      if self._reported or index >= self._sample or index in self._seen:  # the first examples of epoch 0
        return
      self._seen.add(index)
      if n_tokens > self._row_len:
        self._cut += 1
        self._longest = max(self._longest, n_tokens)
      if len(self._seen) >= self._sample:
        self._reported, seen, self._seen = True, len(self._seen), set()
        if self._cut:
          logging.warning(
              "%d of %d examples (%.0f %%) of %s are longer than the context of %d tokens (the longest: %d) and "
              "lose their start; raise model.max_len or shorten the stories",
              self._cut, seen, 100 * self._cut / seen, self._name, self._row_len, self._longest)

  def __call__(self, index: int, record: dict[str, Any]) -> dict[str, np.ndarray]:
    prompt, completion = self._tok.encode(record["prompt"]), self._tok.encode(record["completion"])
    tokens = np.asarray([self._tok.bos_id] + prompt + completion + [self._tok.eos_id], np.int32)
    mask = np.zeros(len(tokens), np.float32) if self._answer_only else np.ones(len(tokens), np.float32)
    mask[1 + len(prompt):] = 1.0  # completion and EOS; index 0 (BOS) is never a target
    self._count(index, len(tokens) - 1)
    tokens, mask = tokens[-(self._row_len + 1):], mask[-(self._row_len + 1):]
    return {"inputs": tokens[:-1], "targets": tokens[1:], "loss_mask": mask[1:]}


def _token_row(row_len: int):
  def row(record: dict[str, Any]) -> Row:
    tokens = np.asarray(record["tokens"], np.int32)
    if len(tokens) != row_len + 1:
      raise DataError(f"a pre-tokenized record has {len(tokens)} tokens; the context needs {row_len + 1}")
    return token_row(tokens)
  return row


SPAN_SOURCES = 4  # text rows a copy row draws its spans from, in turn


class _CopyRow:
  """K text rows -> one copy row (copy_probe.spans_across). Grain seeds the generator from the seed and the count
  of rows produced, which the data state checkpoints, so a resumed run makes the same rows."""

  def __call__(self, rows: Row, rng: np.random.Generator) -> Row:
    x_N, repeats_L = copy_probe.spans_across(np.concatenate([rows["inputs"][:, :1], rows["targets"]], axis=1), rng)
    return {**token_row(x_N), "loss_mask": repeats_L}


def rows(source: Source, tokenizer: Tokenizer, row_len: int, seed: int, shuffle: bool = True,
         answer_only: bool = True, report: bool = True) -> grain.IterDataset:
  """The endless stream of packed rows of `source`: shuffled by `seed` (reshuffled every epoch), tokenized,
  packed by what a record holds (see the module docstring). `report`: log the share of cut examples."""
  if len(source) == 0:
    raise DataError(f"{source!r} has no records")
  kind = record_kind(source[0])
  ds = grain.MapDataset.source(source)
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat()
  if kind == "text":
    ds = ds.map(lambda r: {"tokens": np.asarray(tokenizer.encode(r["text"]) + [tokenizer.eos_id], np.int32)})
    packed = grain.experimental.ConcatThenSplitIterDataset(ds.to_iter_dataset(READ_OPTIONS),
                                                           length_struct={"tokens": row_len})
    return packed.map(functools.partial(_text_row, tokenizer.bos_id))
  if kind == "example":
    ds = ds.map_with_index(_TokenizeExample(tokenizer, row_len, answer_only, repr(source), len(source), report))
    packed = grain.experimental.FirstFitPackIterDataset(
        ds.to_iter_dataset(READ_OPTIONS), length_struct={k: row_len for k in ("inputs", "targets", "loss_mask")},
        padding_struct={"inputs": tokenizer.pad_id, "targets": tokenizer.pad_id, "loss_mask": 0.0},
        num_packing_bins=1, shuffle_bins=False)  # one bin, in order: an example that does not fit starts the next row
    return packed.map(_example_row)
  return ds.map(_token_row(row_len)).to_iter_dataset(READ_OPTIONS)


def copy_rows(source: Source, tokenizer: Tokenizer, row_len: int, seed: int) -> grain.IterDataset:
  """The endless stream of copy rows (`data.copy_share`): each made of spans from SPAN_SOURCES text rows of
  `source` (its own shuffled order, `seed`), shown twice and scored on the repeats."""
  if len(source) and record_kind(source[0]) != "text":
    raise DataError(f"data.copy_share makes copy rows from text, but {source!r} (data.base) holds "
                    f"{record_kind(source[0])} records; set data.copy_share=0 or give data.base a text corpus")
  text_rows = rows(source, tokenizer, row_len, seed)
  return text_rows.batch(SPAN_SOURCES, drop_remainder=True).random_map(_CopyRow(), seed=seed)


def take(stream: grain.IterDataset, n: int) -> Row:
  """The first `n` rows of a stream, stacked: [n, L] each."""
  it = iter(stream.batch(n))
  return next(it)


def source_unigram_entropy(source: Source, tokenizer: Tokenizer, max_tokens: int = 5_000_000) -> float:
  """Unigram entropy (nats/token) of a text split's tokens, documents each followed by EOS as in training."""
  counts = np.zeros(tokenizer.vocab_size, np.int64)
  seen = 0
  for i in range(len(source)):
    ids = tokenizer.encode(source[i]["text"]) + [tokenizer.eos_id]
    counts += np.bincount(ids, minlength=tokenizer.vocab_size)
    seen += len(ids)
    if seen >= max_tokens:
      break
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())


def unigram_entropy(targets: np.ndarray, mask: np.ndarray, vocab_size: int) -> float:
  """Entropy (nats/token) of the masked targets' token frequencies: the loss of a unigram model."""
  counts = np.bincount(targets[mask > 0].ravel(), minlength=vocab_size).astype(np.float64)
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())


def shard_layout(parts: Sequence[Row], batch_shards: int, local_shards: Sequence[int],
                 keys: Sequence[str]) -> dict[str, np.ndarray]:
  """This process's part of a global batch in the step's layout: for each of its batch shards k (in global
  order), the k-th `batch_shards`-th of every stream's rows, streams in order (target rows, then replay rows)."""
  out = {}
  for key in keys:
    pieces = []
    for k in local_shards:
      for part in parts:
        per_shard = len(part[key]) // batch_shards
        pieces.append(part[key][k * per_shard:(k + 1) * per_shard])
    out[key] = np.concatenate(pieces)
  return out


class BatchLoader:
  """Local batches in the step's layout (step.py relies on it), prepared on a background thread.

  `streams`: (name, rows dataset, rows per global batch); every count a multiple of `batch_shards`.
  State (saved with the train state, see checkpoint.gather_data_states):
    {"version": 2, "streams": [names], "iterator": the Grain iterator's state}, the same on every process.
  """

  def __init__(self, streams: Sequence[tuple[str, grain.IterDataset, int]], keys: Sequence[str], batch_shards: int,
               local_shards: Sequence[int] | None = None, prefetch: int = 2):
    streams = [(name, ds, int(n)) for name, ds, n in streams if n]
    for name, _, n in streams:
      if n % batch_shards:
        raise ValueError(f"{name}: {n} rows per batch do not split over {batch_shards} batch shards")
    self.names = [name for name, _, _ in streams]
    self.keys, self.batch_shards = tuple(keys), int(batch_shards)
    local = list(range(self.batch_shards)) if local_shards is None else [int(k) for k in local_shards]
    batches = grain.experimental.ZipIterDataset([ds.batch(n, drop_remainder=True) for _, ds, n in streams])
    ds = batches.map(lambda parts: shard_layout(parts, self.batch_shards, local, self.keys))
    if prefetch:
      ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch)
    self._it = iter(ds)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._it)

  def close(self) -> None:
    self._it.close()

  @property
  def state(self) -> dict[str, Any]:
    """Of the batches taken so far (not of those prefetched)."""
    return {"version": STATE_VERSION, "streams": self.names, "iterator": self._it.get_state()}

  def set_state(self, saved: dict[str, Any]) -> None:
    """Restores from all processes' saved states ({"process_<i>": state}, as checkpointed): the global order
    continues exactly, whatever the number of batch shards or processes now."""
    states = [saved[k] for k in sorted(saved, key=lambda s: int(s.rsplit("_", 1)[-1]))]
    if not states:
      raise DataError("the checkpoint holds no data state")
    state = states[0]
    if state.get("version") != STATE_VERSION:
      logging.warning(
          "data order cannot carry over: the checkpoint's data state was saved per batch shard (records k::shards) "
          "by an older version; this version reads one global order that batch shards slice. The data streams "
          "start again from the beginning of their order.")
      return
    if any(s != state for s in states[1:]):
      raise DataError("the checkpoint's data states differ between processes; were they saved by one run?")
    if list(state["streams"]) != self.names:
      raise DataError(f"the checkpoint's data state has streams {state['streams']}, not {self.names}; was it "
                      "saved by a run with another replay setting?")
    self._it.set_state(_from_json(state["iterator"]))


def _from_json(state: Any) -> Any:
  """A Grain iterator state as it was before its JSON round trip: ConcatThenSplitIterDataset compares its
  slices with the tuple (-1, -1), and JSON gives them back as lists."""
  if isinstance(state, dict):
    return {k: ({f: tuple(sl) for f, sl in v.items()} if k == "remainder_slices" else _from_json(v))
            for k, v in state.items()}
  if isinstance(state, list):
    return [_from_json(v) for v in state]
  return state
