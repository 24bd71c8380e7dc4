"""In-context copying: a probe of random token sequences shown twice, its text-span twin, and text rows that
teach copying.

A model that can look a token up in its context (the induction heads of Olsson et al. 2022, the mechanism
bAbI's "where is X?" questions need) predicts the second copy far better than the first, which no model can
predict (each row's tokens are distinct and drawn at random). `eval/copy/gain` = loss on the first copy − loss
on the second, in nats: about 0 for a model that does not copy, up to the first copy's loss (several nats) for
one that copies perfectly. The rows are the same in every run (fixed seed), so runs compare, and a base model's
gain says before adapting whether a task that needs retrieval from the context is within its reach.

Text spans shown twice do two jobs. As evaluation sets of base-corpus text (`repeat_spans`,
`eval/copy_text/gain`) they measure copying of the tokens a task's text is made of, which random-token rows,
whose rare ids a small English model has barely trained, can understate. As training rows (`spans_across`,
`data.copy_share`: that share of every batch's rows, spans from unrelated places of the base corpus shown twice,
the loss on the repeats only, weighed as a mean of their own: objective.py) they teach copying, which a small
English model does not learn from a few TPP of text and which bAbI's lookups need (docs/results/README.md
compares the bases).
"""

from __future__ import annotations

import numpy as np

SETS = ("copy_first", "copy_second")  # eval set names: the loss on each copy (the first token of each excluded)
TEXT_SETS = ("copy_text_first", "copy_text_second")  # the same for base-corpus text spans shown twice
GAINS = {"eval/copy/gain": SETS, "eval/copy_text/gain": TEXT_SETS}  # metric: (first-copy set, second-copy set)
MAX_SEQUENCE = 64  # tokens per copy, or fewer when the context is short
SPAN_TOKENS = (8, 48)  # a text span's length is drawn from this range (inclusive)


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


def _with_repeats(first_token: int, n_tokens: int, next_span, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(x_N, first_N1, second_N1): x = [first_token, s1, s1, s2, s2, …] cut to N tokens, s_i = next_span(longest
  allowed); first/second mark the targets (target t predicts x[t + 1]) that are each copy's tokens 2…n. A copy's
  first token follows the previous span's end, which nothing predicts, so neither copy's first token is scored."""
  x_N = np.empty(n_tokens, dtype)
  x_N[0] = first_token
  first_N1, second_N1 = np.zeros(n_tokens - 1, np.float32), np.zeros(n_tokens - 1, np.float32)
  pos = 1
  while pos < n_tokens:
    span = next_span()
    seg = np.concatenate([span, span])[:n_tokens - pos]
    x_N[pos:pos + len(seg)] = seg
    n = len(span)
    first_N1[pos:pos + min(n, len(seg)) - 1] = 1.0  # target pos + j predicts span[j + 1]
    second_N1[pos + n:pos + len(seg) - 1] = 1.0
    pos += len(seg)
  return x_N, first_N1, second_N1


def _span_lengths(n_tokens: int) -> tuple[int, int]:
  """SPAN_TOKENS, shrunk so that a span and its repeat fit a row of n_tokens (at most half the row)."""
  longest = max(2, min(SPAN_TOKENS[1], (n_tokens - 1) // 2))
  return min(SPAN_TOKENS[0], longest), longest


def repeat_spans(tokens_N: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(x_N, first_N1, second_N1) of `_with_repeats`, the s_i consecutive spans of tokens[1:]: the evaluation rows
  of `text_copy_rows`."""
  shortest, longest = _span_lengths(len(tokens_N))
  src = 1

  def next_span():
    nonlocal src
    span = tokens_N[src:src + int(rng.integers(shortest, longest + 1))]
    src += len(span)
    return span

  return _with_repeats(tokens_N[0], len(tokens_N), next_span, tokens_N.dtype)


def spans_across(rows_KxN: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(x_N, repeats_N1): a training row [BOS, s1, s1, s2, s2, …] whose spans come from random offsets of the K text
  rows in turn (rows far apart in the shuffled corpus), scored on each repeat's tokens 2…n. Spans from unrelated
  places make a first copy unpredictable from the text before it, so the repeats are learned only by copying."""
  n_rows, n_tokens = rows_KxN.shape
  shortest, longest = _span_lengths(n_tokens)
  taken = 0

  def next_span():
    nonlocal taken
    row = rows_KxN[taken % n_rows, 1:]  # each row starts with BOS
    taken += 1
    n = int(rng.integers(shortest, longest + 1))
    start = int(rng.integers(0, len(row) - n + 1))
    return row[start:start + n]

  x_N, _, repeats_N1 = _with_repeats(rows_KxN[0, 0], n_tokens, next_span, rows_KxN.dtype)
  return x_N, repeats_N1


def text_copy_rows(rows: dict[str, np.ndarray], seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
  """{TEXT_SETS name: {"inputs", "targets", "loss_mask"}}: text rows ([BOS, tokens…], as the pipeline packs them)
  rewritten as spans shown twice (the same spans for the same rows and seed), one set per copy."""
  rng = np.random.default_rng(seed)
  first, second = {"inputs": [], "targets": [], "loss_mask": []}, {"inputs": [], "targets": [], "loss_mask": []}
  for inputs_L, targets_L in zip(rows["inputs"], rows["targets"]):
    x_N, first_L, second_L = repeat_spans(np.concatenate([inputs_L[:1], targets_L]), rng)
    for out, mask_L in ((first, first_L), (second, second_L)):
      out["inputs"].append(x_N[:-1])
      out["targets"].append(x_N[1:])
      out["loss_mask"].append(mask_L)
  return {name: {k: np.stack(v) for k, v in out.items()} for name, out in zip(TEXT_SETS, (first, second))}
