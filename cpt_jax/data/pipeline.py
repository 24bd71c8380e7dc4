"""Grain pipelines from records to packed training rows, with exactly resumable state.

records (random access) → batch shard k of K (records k::K) → shuffle(seed, epoch) → tokenize → pack → rows.

Every *global batch shard* (a slice of the batch axes, see sharding.local_batch_shards) has its own
streams, whatever process holds it: the global batch is the same on 1 process × 8 devices as on
2 processes × 4, and a checkpoint's data state carries over exactly whenever the number of batch shards is
unchanged (docs/multihost.md).

Packing is done by small iterators whose whole state is a few integers (epoch, index, offset), so a
checkpoint restores the exact next row, and a resumed run continues the batches bit for bit. Three ways
to pack, by what a record holds:
- "text": documents are concatenated, each followed by EOS, and cut into rows; every row starts with
  BOS (as in Marek et al.: the row-start token is what self-generated replay is prompted with).
- "prompt"+"completion" (bAbI and other tasks): whole examples, first-fit in order, never split;
  positions restart and attention is masked per example (segment ids); the loss may be answer-only.
- "tokens" (self-generated replay): each record already is a row.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterator, Protocol, Sequence

import grain
import numpy as np

from cpt_jax.data.records import DataError
from cpt_jax.data.tokenizer import BOS, EOS, PAD, Tokenizer

Row = dict[str, np.ndarray]  # inputs, targets, loss_mask, positions, segment_ids: each [L]


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


class _Epochs:
  """Record i of epoch e of one batch shard's records, reshuffled every epoch (Grain MapDataset)."""

  def __init__(self, source: Source, seed: int, shuffle: bool, shard_index: int, shard_count: int,
               transform: Callable[[dict[str, Any]], Any]):
    self._base = grain.MapDataset.source(source)[shard_index::shard_count]
    self.source_len, self.shard_index, self.shard_count = len(source), shard_index, shard_count
    if len(self._base) == 0:
      raise DataError(f"{source!r} has {len(source)} records: too few for {shard_count} batch shards "
                      "(mesh.data × mesh.fsdp); give more (or smaller) documents, or fewer data shards")
    self._seed, self._shuffle, self._transform = seed, shuffle, transform
    self._epoch, self._ds = -1, None

  def __len__(self) -> int:
    return len(self._base)

  def get(self, epoch: int, index: int):
    if epoch != self._epoch:
      ds = self._base.shuffle(seed=self._seed + 7919 * epoch) if self._shuffle else self._base
      self._ds, self._epoch = ds.map(self._transform), epoch
    return self._ds[index]


class Packer:
  """Base: iterates rows; `state` / `set_state` make the iteration exactly resumable."""

  def __init__(self, epochs: _Epochs, row_len: int):
    self.epochs, self.row_len = epochs, row_len
    self.epoch, self.index = 0, 0

  def _next_item(self):
    if self.index >= len(self.epochs):
      self.epoch, self.index = self.epoch + 1, 0
    item = self.epochs.get(self.epoch, self.index)
    self.index += 1
    return item

  @property
  def state(self) -> dict[str, int]:
    return {"epoch": self.epoch, "index": self.index}

  def set_state(self, state: dict[str, int]) -> None:
    self.epoch, self.index = int(state["epoch"]), int(state["index"])

  def __iter__(self) -> Iterator[Row]:
    return self

  def __next__(self) -> Row:
    raise NotImplementedError


def _row(tokens: np.ndarray, loss_mask: np.ndarray, positions: np.ndarray, segment_ids: np.ndarray) -> Row:
  """tokens [L+1] → inputs/targets [L]; the other arrays describe the targets."""
  return {"inputs": tokens[:-1].astype(np.int32), "targets": tokens[1:].astype(np.int32),
          "loss_mask": loss_mask.astype(np.float32), "positions": positions.astype(np.int32),
          "segment_ids": segment_ids.astype(np.int32)}


class ConcatPacker(Packer):
  """Documents + EOS, concatenated and cut into rows of L tokens, each row prefixed with BOS."""

  def __init__(self, epochs: _Epochs, row_len: int):
    super().__init__(epochs, row_len)
    self.offset, self._doc = 0, None

  @property
  def state(self):
    return {**super().state, "offset": self.offset}

  def set_state(self, state):
    super().set_state(state)
    self.offset, self._doc = int(state["offset"]), None
    if self.offset:  # re-read the partly consumed document
      self.index -= 1
      self._doc = self._next_item()

  def __next__(self) -> Row:
    out = [np.array([BOS], np.int32)]
    need = self.row_len
    while need > 0:
      if self._doc is None or self.offset >= len(self._doc):
        self._doc, self.offset = self._next_item(), 0
      take = self._doc[self.offset:self.offset + need]
      out.append(take)
      self.offset += len(take)
      need -= len(take)
    tokens = np.concatenate(out)
    n = self.row_len
    return _row(tokens, np.ones(n), np.arange(n), np.ones(n))


class ExamplePacker(Packer):
  """Whole (prompt, completion) examples packed first-fit in order; pads the row's tail.

  An example that does not fit ends the row and is fetched again for the next one, so the state
  (epoch, index) always points at the first example not yet placed.
  """

  def __init__(self, epochs: _Epochs, row_len: int):
    super().__init__(epochs, row_len)
    self._warned = False

  def __next__(self) -> Row:
    L = self.row_len
    inputs, targets, mask, pos, seg = (np.full(L, PAD, np.int32), np.full(L, PAD, np.int32),
                                       np.zeros(L, np.float32), np.zeros(L, np.int32), np.zeros(L, np.int32))
    used, segment = 0, 0
    while True:
      before = (self.epoch, self.index)
      tokens, example_mask = self._next_item()
      if len(tokens) - 1 > L:  # longer than a row: keep the end (question and answer)
        if not self._warned:
          logging.warning("an example of %d tokens exceeds the context %d; its start is cut", len(tokens), L)
          self._warned = True
        tokens, example_mask = tokens[-(L + 1):], example_mask[-(L + 1):]
      n = len(tokens) - 1
      if used + n > L:
        self.epoch, self.index = before
        break
      segment += 1
      inputs[used:used + n], targets[used:used + n] = tokens[:-1], tokens[1:]
      mask[used:used + n], pos[used:used + n], seg[used:used + n] = example_mask[1:], np.arange(n), segment
      used += n
    return {"inputs": inputs, "targets": targets, "loss_mask": mask, "positions": pos, "segment_ids": seg}


class RowPacker(Packer):
  """Records that are already rows of L+1 tokens (self-generated replay)."""

  def __next__(self) -> Row:
    tokens = np.asarray(self._next_item(), np.int32)
    if len(tokens) != self.row_len + 1:
      raise DataError(f"a pre-tokenized record has {len(tokens)} tokens; the context needs {self.row_len + 1}")
    n = self.row_len
    return _row(tokens, np.ones(n), np.arange(n), np.ones(n))


def make_packer(source: Source, tokenizer: Tokenizer, row_len: int, seed: int, shuffle: bool = True,
                shard_index: int = 0, shard_count: int = 1, answer_only: bool = True) -> Packer:
  kind = record_kind(source[0])
  if kind == "text":
    transform = lambda r: np.asarray(tokenizer.encode(r["text"]) + [EOS], np.int32)
    cls = ConcatPacker
  elif kind == "example":
    def transform(r):
      prompt, completion = tokenizer.encode(r["prompt"]), tokenizer.encode(r["completion"])
      tokens = np.asarray([BOS] + prompt + completion + [EOS], np.int32)
      mask = np.zeros(len(tokens), np.float32) if answer_only else np.ones(len(tokens), np.float32)
      mask[1 + len(prompt):] = 1.0  # completion and EOS; index 0 (BOS) is never a target
      return tokens, mask
    cls = ExamplePacker
  else:
    transform = lambda r: r["tokens"]
    cls = RowPacker
  return cls(_Epochs(source, seed, shuffle, shard_index, shard_count, transform), row_len)


def take_rows(packer: Packer, n: int) -> Row:
  rows = [next(packer) for _ in range(n)]
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def source_unigram_entropy(source: Source, tokenizer: Tokenizer, max_tokens: int = 5_000_000) -> float:
  """Unigram entropy (nats/token) of a text split's tokens, documents each followed by EOS as in training."""
  counts = np.zeros(tokenizer.vocab_size, np.int64)
  seen = 0
  for i in range(len(source)):
    ids = tokenizer.encode(source[i]["text"]) + [EOS]
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


class BatchLoader:
  """Local batches in the step's layout: for each local batch shard (in global order), its target rows then
  its replay rows (step.py relies on this). Each batch shard has its own streams.

  State (saved per process, see checkpoint.gather_data_states):
    {"batch_shards": K, "shards": {"<k>": {"<stream>": packer state}}} for this process's shards k.
  """

  def __init__(self, shards: Sequence[tuple[int, Sequence[tuple[str, Packer, int]]]], keys: Sequence[str],
               batch_shards: int):
    self.shards = [(int(k), list(streams)) for k, streams in shards]
    self.keys, self.batch_shards = tuple(keys), int(batch_shards)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    parts = []
    for _, streams in self.shards:
      for _, packer, rows in streams:
        if rows:
          parts.append(take_rows(packer, rows))
    return {k: np.concatenate([p[k] for p in parts]) for k in self.keys}

  @property
  def state(self) -> dict[str, Any]:
    return {"batch_shards": self.batch_shards,
            "shards": {str(k): {name: packer.state for name, packer, _ in streams} for k, streams in self.shards}}

  def set_state(self, saved: dict[str, Any]) -> None:
    """Restores from all processes' saved states ({"process_<i>": state}, as checkpointed).

    Same number of batch shards: every shard continues exactly where it stopped, whichever process holds
    it now. Otherwise the order cannot carry over: one warning, and every stream restarts as
    `resume_position` says.
    """
    old_count, old = merge_shard_states(saved)
    names = {name for _, streams in self.shards for name, _, _ in streams}
    for k, states in old.items():
      if set(states) != names:
        raise DataError(f"the checkpoint's data state has streams {sorted(states)}, not {sorted(names)} "
                        f"(batch shard {k}); was it saved by a run with another replay setting?")
    if old_count == self.batch_shards and len(old) == old_count:
      for k, streams in self.shards:
        for name, packer, _ in streams:
          packer.set_state(old[k][name])
      return
    msg = []
    for k, streams in self.shards:
      for name, packer, _ in streams:
        state, how = resume_position(name, packer, [old[j][name] for j in sorted(old)], old_count)
        packer.set_state(state)
        if k == self.shards[0][0]:
          msg.append(how)
    logging.warning(
        "data order cannot carry over: the checkpoint was saved with %d batch shards (mesh.data × mesh.fsdp), "
        "this run has %d, and each batch shard reads its own records (k::shards). Instead, %s.",
        old_count, self.batch_shards, "; ".join(msg))


def merge_shard_states(saved: dict[str, Any]) -> tuple[int, dict[int, dict[str, Any]]]:
  """(saved batch-shard count, {shard: {stream: state}}) from every process's saved loader state.

  Checkpoints from before per-shard streams held one stream per process reading records p::P: they read
  as P batch shards (exact when the new run has P batch shards, e.g. 1 process × 1 device).
  """
  shards: dict[int, dict[str, Any]] = {}
  count = 0
  for key in sorted(saved, key=lambda s: int(s.rsplit("_", 1)[-1])):
    state = saved[key]
    if "shards" in state:
      count = int(state["batch_shards"])
      shards.update({int(k): v for k, v in state["shards"].items()})
    else:  # legacy: {"target": …, "replay": …} of process p
      count = len(saved)
      shards[int(key.rsplit("_", 1)[-1])] = state
  return count, shards


def resume_position(name: str, packer, old_states: list[dict[str, int]], old_count: int):
  """(new state, what was done) for a stream whose batch shard did not exist in the checkpoint.

  Record streams: the saved shards had consumed a fraction f of an epoch on average (epochs + records
  read / shard size); each new shard starts epoch floor(f) at the same fraction of its own records, so the
  run continues with about as many tokens seen per record, without restarting the data from the start.
  Self-replay chunks: every new stream starts after the newest chunk any saved stream sampled, so no sample
  is reused.
  """
  if "chunk" in old_states[0]:
    chunk = max(int(s["chunk"]) for s in old_states) + 1
    return {"chunk": chunk, "row": 0}, f"{name} streams sample fresh chunks from chunk {chunk}"
  epochs = packer.epochs
  n = epochs.source_len
  sizes = [len(range(j, n, old_count)) for j in range(old_count)]
  fractions = [int(s["epoch"]) + int(s["index"]) / max(1, sizes[j] if j < len(sizes) else len(epochs))
               for j, s in enumerate(old_states)]
  f = sum(fractions) / len(fractions)
  epoch = int(math.floor(f))
  index = min(len(epochs), round((f - epoch) * len(epochs)))
  state = {"epoch": epoch, "index": index}
  if isinstance(packer, ConcatPacker):
    state["offset"] = 0
  return state, (f"{name} streams restart at epoch {epoch}, {100 * (f - epoch):.1f}% into their shard's "
                 f"reshuffled records (the saved streams' mean position), so data is neither restarted nor "
                 "skipped wholesale, though single records may repeat or be missed in this epoch")
