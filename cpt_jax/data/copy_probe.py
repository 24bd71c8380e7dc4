"""In-context copying probe: random token sequences shown twice.

A model that can look a token up in its context (the induction heads of Olsson et al. 2022, the mechanism
bAbI's "where is X?" questions need) predicts the second copy far better than the first, which no model can
predict (each row's tokens are distinct and drawn at random). `eval/copy/gain` = loss on the first copy − loss
on the second, in nats: about 0 for a model that does not copy, up to the first copy's loss (several nats) for
one that copies perfectly. The rows are the same in every run (fixed seed), so runs compare, and a base model's
gain says before adapting whether a task that needs retrieval from the context is within its reach.
"""

from __future__ import annotations

import numpy as np

SETS = ("copy_first", "copy_second")  # eval set names: the loss on each copy (the first token of each excluded)
MAX_SEQUENCE = 64  # tokens per copy, or fewer when the context is short


def copy_rows(vocab_size: int, specials: set[int], bos_id: int, pad_id: int, max_len: int, rows: int,
              seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
  """{set name: {"inputs", "targets", "loss_mask"} [rows, max_len]}, dtypes as the pipeline's text rows (so the
  compiled eval step of text sets serves): [BOS, s, s, pad…] with s distinct non-special ids drawn at random;
  each set scores one copy's tokens 2…L (the first of each copy is unpredictable). Empty when the context
  cannot hold two copies of 4 tokens."""
  ids = np.setdiff1d(np.arange(vocab_size), np.asarray(sorted(specials), dtype=np.int64))
  length = min(MAX_SEQUENCE, (max_len - 1) // 2, len(ids))
  if length < 4:
    return {}
  rng = np.random.default_rng(seed)
  seq_RxS = np.stack([rng.choice(ids, size=length, replace=False) for _ in range(rows)])
  x_RxN = np.concatenate([np.full((rows, 1), bos_id), seq_RxS, seq_RxS], axis=1).astype(np.int32)
  inputs = np.full((rows, max_len), pad_id, np.int32)
  targets = np.full((rows, max_len), pad_id, np.int32)
  n = x_RxN.shape[1] - 1
  inputs[:, :n], targets[:, :n] = x_RxN[:, :-1], x_RxN[:, 1:]
  out = {}
  for name, start in zip(SETS, (1, length + 1)):  # target j predicts x[j + 1]: copy tokens 2…L of each copy
    mask = np.zeros((rows, max_len), np.float32)
    mask[:, start:start + length - 1] = 1.0
    out[name] = {"inputs": inputs, "targets": targets, "loss_mask": mask}
  return out
