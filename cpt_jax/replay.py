"""Self-generated replay sampled on the fly: rows from the frozen start model (BOS prompt, temperature 1,
full context), made in chunks during adaptation. `cpt_jax.replay_dataset` writes such rows ahead as a dataset.

On the fly, chunk c of batch shard k is sampled with key fold_in(fold_in(seed, k), c) and used once: the stream's state
is (chunk, row), so a resumed run regenerates the same chunk and continues at the same row, and no sample
is ever reused.
"""

from __future__ import annotations

import logging

import jax
import numpy as np

from cpt_jax.data.pipeline import Row


class SelfReplayStream:
  """A packer-like stream of replay rows: chunks of rows from `sampler(params, fold_in(key, chunk))`."""

  def __init__(self, sampler, params, key, chunk_rows: int):
    self._sampler, self._params, self._key, self._chunk_rows = sampler, params, key, chunk_rows
    self.chunk, self.row, self._rows = 0, 0, None

  @property
  def state(self):
    return {"chunk": self.chunk, "row": self.row}

  def set_state(self, state):
    self.chunk, self.row, self._rows = int(state["chunk"]), int(state["row"]), None

  def __iter__(self):
    return self

  def __next__(self) -> Row:
    if self.row >= self._chunk_rows:
      self.chunk, self.row, self._rows = self.chunk + 1, 0, None
    if self._rows is None:
      self._rows = np.asarray(self._sampler(self._params, jax.random.fold_in(self._key, self.chunk)))
      logging.info("self-replay: sampled chunk %d (%d rows)", self.chunk, self._chunk_rows)
    tokens = self._rows[self.row]
    self.row += 1
    n = len(tokens) - 1
    return {"inputs": tokens[:-1], "targets": tokens[1:], "loss_mask": np.ones(n, np.float32),
            "positions": np.arange(n, dtype=np.int32), "segment_ids": np.ones(n, np.int32)}

