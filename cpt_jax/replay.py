"""Self-generated replay: rows sampled from the frozen start model (BOS prompt, temperature 1, full
context), either written ahead as a dataset or sampled on the fly in chunks during adaptation.

On the fly, chunk c of batch shard k is sampled with key fold_in(fold_in(seed, k), c) and used once: the stream's state
is (chunk, row), so a resumed run regenerates the same chunk and continues at the same row, and no sample
is ever reused.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax
import numpy as np

from cpt_jax import sampling
from cpt_jax.data import records
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


def generate_replay_dataset(workdir: str, out_dir: str, num_tokens: int, seed: int = 0, batch: int = 64,
                            validation_rows: int = 0, step: int | None = None) -> Path:
  """Samples ≥ `num_tokens` tokens from the run in `workdir` into a records dataset ("tokens" rows).

  Chunks are written one file per batch as they are made (atomically), so an interrupted generation
  resumes where it stopped; the same seed gives the same dataset.
  """
  from cpt_jax import build  # pylint: disable=g-import-not-at-top
  out = Path(out_dir)
  name = "self_replay"
  if records.exists(out, name):
    logging.info("replay dataset already complete: %s", records.dataset_dir(out, name))
    return records.dataset_dir(out, name)
  _, bundle, params, _ = build.load_run(workdir, step)
  row_tokens = bundle.cfg.max_len
  num_rows = -(-num_tokens // row_tokens) + validation_rows
  chunks_dir = out / "chunks"
  chunks_dir.mkdir(parents=True, exist_ok=True)
  sampler = sampling.make_sampler(bundle.graphdef, bundle.cfg, batch)
  key = jax.random.key(seed)
  num_chunks = -(-num_rows // batch)
  for c in range(num_chunks):
    path = chunks_dir / f"chunk_{c:06d}.npy"
    if path.exists():
      continue
    rows = np.asarray(sampler(params, jax.random.fold_in(key, c)))
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, rows, allow_pickle=False)
    os.replace(tmp, path)
    logging.info("replay chunk %d/%d written", c + 1, num_chunks)
  all_rows = np.concatenate([np.load(chunks_dir / f"chunk_{c:06d}.npy", allow_pickle=False)
                             for c in range(num_chunks)])[:num_rows]
  splits = {"train": ({"tokens": r} for r in all_rows[validation_rows:])}
  if validation_rows:
    splits["validation"] = ({"tokens": r} for r in all_rows[:validation_rows])
  path = records.write_dataset(out, name, splits, {"tokens": "tokens"},
                               description=f"self-generated replay from {workdir}, seed {seed}")
  return path


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description="Write self-generated replay samples of a run's checkpoint.")
  parser.add_argument("--workdir", required=True, help="workdir of the (pretraining) run to sample from")
  parser.add_argument("--out", required=True, help="output directory (the dataset is OUT/self_replay/1.0.0)")
  parser.add_argument("--tokens", type=int, required=True, help="tokens to sample (rounded up to whole rows)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--batch", type=int, default=64, help="sequences sampled per call")
  parser.add_argument("--step", type=int, default=-1, help="checkpoint step (-1: latest)")
  parser.add_argument("--validation-rows", type=int, default=0)
  args = parser.parse_args(argv)
  logging.getLogger().setLevel(logging.INFO)
  path = generate_replay_dataset(args.workdir, args.out, args.tokens, args.seed, args.batch, args.validation_rows,
                                 None if args.step < 0 else args.step)
  print(path)


if __name__ == "__main__":
  main()
