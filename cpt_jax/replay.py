"""Self-generated replay sampled on the fly: rows from the frozen start model (BOS prompt, temperature 1,
full context), made in chunks during adaptation. `cpt_jax.replay_dataset` writes such rows ahead as a dataset.

As a Grain dataset, like every other stream (cpt_jax/data/pipeline.py):

  MapDataset.range(∞) → .map(chunk c ↦ sampler(params, fold_in(key, c)))   [C, L+1] tokens, one device call
    → .to_iter_dataset()  → FlatMapIterDataset(chunk → its C rows)

Chunk c is always sampled with the same key, and the iterator's state is (chunk, row within it): a resumed
run regenerates the same chunk and continues at the same row, and no sample is ever reused. There is one
global sequence of chunks, which batch shards slice like any other stream's rows.
"""

from __future__ import annotations

import logging
import sys

import grain
import jax
import numpy as np

from cpt_jax.data.pipeline import Row, token_row


class _ChunkRows(grain.experimental.FlatMapTransform):
  """A chunk of sampled sequences [C, L+1] → its C rows."""

  def __init__(self, chunk_rows: int):
    self.max_fan_out = chunk_rows

  def flat_map(self, tokens_CxT: np.ndarray) -> list[Row]:
    return [token_row(t) for t in tokens_CxT]


def self_replay_rows(sampler, params, key, chunk_rows: int) -> grain.IterDataset:
  """Rows sampled from `params` by `sampler(params, key) -> [chunk_rows, L+1]`, chunk c with fold_in(key, c)."""

  def sample(chunk: int) -> np.ndarray:
    tokens_CxT = np.asarray(sampler(params, jax.random.fold_in(key, chunk)))
    logging.info("self-replay: sampled chunk %d (%d rows)", chunk, chunk_rows)
    return tokens_CxT

  chunks = grain.MapDataset.range(sys.maxsize).map(sample)
  # One chunk at a time, when its rows are needed: a chunk is a whole sampling call on the device.
  reader = chunks.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
  return grain.experimental.FlatMapIterDataset(reader, _ChunkRows(chunk_rows))
