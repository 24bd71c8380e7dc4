"""Sampling with a KV cache: self-generated replay (BOS prompt, temperature 1, full context) and greedy
answers for task scoring. Both are jitted `fori_loop`s over a preallocated cache (the sampler's grows in
phases of 32 positions).

Token i+1 is drawn with `fold_in(key, i)`, so the cached sampler and the full-recomputation reference
(kept for tests and benchmarks) draw the same tokens for the same key. Only the real vocabulary's logits
are drawn from: padding columns (model.ModelConfig.vocab_multiple) are cut off before the draw.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cpt_jax import sharding
from cpt_jax.data.tokenizer import BOS, Tokenizer
from cpt_jax.model import KVCache, ModelConfig


_CDF_BLOCK = 64
_PHASE = 32  # decoded positions per sampler phase (see make_sampler)
_MIN_GROUP_ROWS = 8  # rows per concurrent call, at least (cpu_row_groups)


def _pick(logits_BxV, key, temperature: float, first_row=0):
  """Row r of the batch (global index first_row + r) draws with fold_in(key, first_row + r): a row's token
  does not depend on how the batch was split into calls (make_sampler's row groups)."""
  if temperature == 0:
    return jnp.argmax(logits_BxV, -1).astype(jnp.int32)
  u_B = jax.vmap(lambda r: jax.random.uniform(jax.random.fold_in(key, r)))(first_row + jnp.arange(len(logits_BxV)))
  return _categorical(u_B, logits_BxV.astype(jnp.float32) / temperature)


def _categorical(u_B, logits_BxV):
  """Exact categorical sampling by inverse CDF with one uniform `u_B` per row, in two levels (blocks of 64
  vocabulary entries, then the entries of the chosen block), so the work is O(V) with no O(V) random draws.

  `jax.random.categorical` draws V Gumbels per row: at V=4096, batch 64 that was ~30 ms of threefry per
  decoded token on 2 CPU cores, more than the model's forward (docs/performance.md).
  """
  batch, vocab = logits_BxV.shape
  blocks = -(-vocab // _CDF_BLOCK)
  w_BxV = jnp.exp(logits_BxV - jnp.max(logits_BxV, -1, keepdims=True))
  w_BxKxC = jnp.pad(w_BxV, ((0, 0), (0, blocks * _CDF_BLOCK - vocab))).reshape(batch, blocks, _CDF_BLOCK)
  mass_BxK = w_BxKxC.sum(-1)
  cdf_BxK = jnp.cumsum(mass_BxK, -1)
  u_B = u_B * cdf_BxK[:, -1]
  block_B = jnp.minimum(jnp.sum(cdf_BxK <= u_B[:, None], -1), blocks - 1)
  take = lambda a_BxK: jnp.take_along_axis(a_BxK, block_B[:, None], 1)[:, 0]
  rest_B = u_B - (take(cdf_BxK) - take(mass_BxK))  # u's offset inside the chosen block
  inner_BxC = jnp.cumsum(jnp.take_along_axis(w_BxKxC, block_B[:, None, None], 1)[:, 0], -1)
  index_B = jnp.minimum(jnp.sum(inner_BxC <= rest_B[:, None], -1), _CDF_BLOCK - 1)
  return jnp.minimum(block_B * _CDF_BLOCK + index_B, vocab - 1).astype(jnp.int32)


def make_sampler(graphdef, cfg: ModelConfig, batch: int, length: int | None = None, temperature: float = 1.0,
                 bos_id: int = BOS, row_groups: int | None = None):
  """(params, key) -> tokens [B, length+1]: column 0 is BOS (the tokenizer's `bos_id`), then `length`
  sampled tokens.

  No top-k/top-p and no early stop at EOS (as in Marek et al.): a sample is a full training row. On a mesh
  with several batch shards (the mesh the params live on) each device decodes only its rows (left to
  propagation, every device decoded the whole batch), with FSDP-split weights gathered once before the loop.
  On one CPU device the rows are decoded in `row_groups` concurrent calls (default: `cpu_row_groups`); each row
  draws the same random numbers whatever the grouping, so its tokens are the same up to the matmuls' rounding.
  """
  if row_groups is not None and (row_groups < 1 or batch % row_groups):
    raise ValueError(f"row_groups={row_groups} must be ≥ 1 and divide the batch of {batch} rows")
  length = length or cfg.max_len
  # Decode in phases whose cache holds only the slots filled so far (rounded up to _PHASE): attention over
  # the cache is memory bound, and a full-size cache from the first token reads ~1.6x more of it.
  ends = list(range(_PHASE, length, _PHASE)) + [length]

  @functools.cache
  def compiled(mesh, param_specs, rows_per_call: int):
    rows = sharding.RowSplit(mesh)
    shards = 1 if rows.mesh is None else sharding.batch_shards(rows.mesh)
    if rows_per_call % shards:
      logging.warning("sampler: %d rows do not divide over the %d batch shards: every device decodes all of them "
                      "(choose a batch that is a multiple of mesh.data × mesh.fsdp)", rows_per_call, shards)

    @_jit_replicated(mesh)  # every process can read the samples
    def sample(params, key, first_row):
      model = nnx.merge(graphdef, rows.gathered_tree(params, param_specs))
      tokens_BxT = rows(jnp.full((rows_per_call, length + 1), bos_id, jnp.int32))  # slots after 0 are overwritten

      def body(i, carry):
        tokens, cache = carry
        logits, cache = model(jax.lax.dynamic_slice_in_dim(tokens, i, 1, axis=1), cache=cache)
        nxt = _pick(logits[:, -1, :cfg.vocab_size], jax.random.fold_in(key, i), temperature, first_row)
        return rows(jax.lax.dynamic_update_slice_in_dim(tokens, nxt[:, None], i + 1, axis=1)), cache

      cache, start = KVCache.zeros(cfg, rows_per_call, ends[0]), 0
      for end in ends:
        tokens_BxT, cache = jax.lax.fori_loop(start, end, body, (tokens_BxT, _shard_cache(cache.grow(end), rows)))
        start = end
      return tokens_BxT

    return sample

  def plan(params):
    mesh = sharding.mesh_of(params)
    groups = row_groups or cpu_row_groups(mesh, batch)
    return compiled(mesh, _specs(params), batch // groups), groups

  def sample(params, key):
    fn, groups = plan(params)
    return _in_row_groups(lambda g: fn(params, key, g * (batch // groups)), groups)

  sample.lower = lambda params, key: plan(params)[0].lower(params, key, 0)
  return sample


def cpu_row_groups(mesh, batch: int) -> int:
  """How many concurrent calls decode a batch on one CPU device: one per core, each of ≥ 8 rows.

  XLA:CPU runs a decode step's small per-row attention dots on one thread, so one call keeps about one core
  busy; calls made from separate threads run side by side (docs/performance.md, "Sampling on every core").
  Accelerators and multi-device meshes decode in one call.
  """
  if jax.default_backend() != "cpu" or (mesh is not None and mesh.size > 1) or jax.process_count() > 1:
    return 1
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  groups = max(1, min(cores, batch // _MIN_GROUP_ROWS))
  while batch % groups:
    groups -= 1
  return groups


def _in_row_groups(call_group, groups: int):
  """call_group(g) for g < groups, from `groups` threads; the rows concatenated in group order."""
  if groups == 1:
    return call_group(0)
  with concurrent.futures.ThreadPoolExecutor(groups) as pool:
    parts = list(pool.map(lambda g: jax.block_until_ready(call_group(g)), range(groups)))
  return jnp.concatenate(parts)


def _jit_replicated(mesh):
  """jax.jit with the output on every device of `mesh` (so np.asarray works in every process)."""
  return jax.jit if mesh is None else functools.partial(jax.jit, out_shardings=sharding.replicated(mesh))


def _specs(params) -> tuple:
  return tuple(getattr(getattr(x, "sharding", None), "spec", None) for x in jax.tree.leaves(params))


def _shard_cache(cache: KVCache, rows) -> KVCache:
  return KVCache(tuple(map(rows, cache.k)), tuple(map(rows, cache.v)), cache.length, rows(cache.valid_BxS))


def make_recompute_sampler(graphdef, cfg: ModelConfig, batch: int, length: int | None = None,
                           temperature: float = 1.0, bos_id: int = BOS):
  """The reference: every token recomputes the whole prefix (O(T²) per token, no cache)."""
  length = length or cfg.max_len

  @jax.jit
  def sample(params, key):
    model = nnx.merge(graphdef, params)
    tokens_BxT = jnp.full((batch, length + 1), bos_id, jnp.int32)  # every slot after 0 is overwritten

    def body(i, tokens):
      logits_BxLxV = model(tokens[:, :length])
      logits_BxV = jax.lax.dynamic_index_in_dim(logits_BxLxV, i, axis=1, keepdims=False)
      nxt = _pick(logits_BxV[:, :cfg.vocab_size], jax.random.fold_in(key, i), temperature)
      return jax.lax.dynamic_update_slice_in_dim(tokens, nxt[:, None], i + 1, axis=1)

    return jax.lax.fori_loop(0, length, body, tokens_BxT)

  return sample


@functools.lru_cache(maxsize=16)
def _greedy_fn(graphdef, cfg: ModelConfig, batch: int, prompt_len: int, new_tokens: int, mesh, param_specs: tuple):
  rows = sharding.RowSplit(mesh)  # each device decodes its rows (see make_sampler)

  @_jit_replicated(mesh)
  def decode(params, prompts_BxP, valid_BxP):
    model = nnx.merge(graphdef, rows.gathered_tree(params, param_specs))
    prompts_BxP, valid_BxP = rows(prompts_BxP), rows(valid_BxP)
    cache = _shard_cache(KVCache.zeros(cfg, batch, prompt_len + new_tokens), rows)
    positions_BxP = jnp.maximum(jnp.cumsum(valid_BxP, 1) - 1, 0)
    logits, cache = model(prompts_BxP, positions_BxP, cache=cache, valid_BxL=valid_BxP)
    first = jnp.argmax(logits[:, -1, :cfg.vocab_size], -1).astype(jnp.int32)
    lengths_B = valid_BxP.sum(1).astype(jnp.int32)
    out_BxN = rows(jnp.zeros((batch, new_tokens), jnp.int32).at[:, 0].set(first))

    def body(i, carry):
      out, cache = carry
      tok = jax.lax.dynamic_slice_in_dim(out, i - 1, 1, axis=1)
      logits, cache = model(tok, (lengths_B + i - 1)[:, None], cache=cache)
      nxt = jnp.argmax(logits[:, -1, :cfg.vocab_size], -1).astype(jnp.int32)
      return rows(jax.lax.dynamic_update_slice_in_dim(out, nxt[:, None], i, axis=1)), cache

    out_BxN, _ = jax.lax.fori_loop(1, new_tokens, body, (out_BxN, cache))
    return out_BxN

  return decode


class GreedyDecoder:
  """`decode(prompts) -> answers`: the batched, jitted interface task scorers use (bAbI).

  Prompts are encoded as in training ([BOS] + prompt), left-padded to a length bucket (few compiles),
  decoded greedily for `max_new_tokens`, cut at EOS; on one CPU device in concurrent row groups
  (`cpu_row_groups`), as the sampler.
  """

  def __init__(self, graphdef, cfg: ModelConfig, params, tokenizer: Tokenizer, batch_size: int = 32,
               max_new_tokens: int = 8):
    self.graphdef, self.cfg, self.params, self.tokenizer = graphdef, cfg, params, tokenizer
    self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

  def __call__(self, prompts: Sequence[str]) -> list[str]:
    answers = []
    for lo in range(0, len(prompts), self.batch_size):
      answers.extend(self._decode_batch(list(prompts[lo:lo + self.batch_size])))
    return answers

  def _decode_batch(self, prompts: list[str]) -> list[str]:
    limit = self.cfg.max_len - self.max_new_tokens
    tok = self.tokenizer
    encoded = [([tok.bos_id] + tok.encode(p))[-limit:] for p in prompts]
    bucket = min(limit, -(-max(len(e) for e in encoded) // 32) * 32)
    tokens = np.full((self.batch_size, bucket), tok.pad_id, np.int32)
    valid = np.zeros((self.batch_size, bucket), bool)
    for i, e in enumerate(encoded):
      tokens[i, bucket - len(e):], valid[i, bucket - len(e):] = e, True
    valid[len(encoded):, -1] = True  # filler rows: one valid token keeps the softmax well defined
    mesh = sharding.mesh_of(self.params)
    groups = cpu_row_groups(mesh, self.batch_size)
    rows = self.batch_size // groups
    fn = _greedy_fn(self.graphdef, self.cfg, rows, bucket, self.max_new_tokens, mesh, _specs(self.params))
    out = np.asarray(_in_row_groups(lambda g: fn(self.params, jnp.asarray(tokens[g * rows:(g + 1) * rows]),
                                                 jnp.asarray(valid[g * rows:(g + 1) * rows])), groups))
    answers = []
    for row in out[:len(encoded)]:
      ids = row.tolist()
      ids = ids[:ids.index(tok.eos_id)] if tok.eos_id in ids else ids
      answers.append(self.tokenizer.decode(ids).strip())
    return answers


def sample_rows(graphdef, cfg: ModelConfig, params, key, num_rows: int, batch: int,
                sampler: Callable | None = None, bos_id: int = BOS) -> np.ndarray:
  """`num_rows` samples [num_rows, T+1], batch by batch with keys fold_in(key, batch index)."""
  sampler = sampler or make_sampler(graphdef, cfg, batch, bos_id=bos_id)
  chunks = [np.asarray(sampler(params, jax.random.fold_in(key, b))) for b in range(-(-num_rows // batch))]
  return np.concatenate(chunks)[:num_rows]
