"""Sampling with a KV cache: self-generated replay (BOS prompt, temperature 1, full context) and greedy
answers for task scoring. Both are jitted `fori_loop`s over a preallocated cache (the sampler's grows in
phases of 32 positions).

Token i+1 is drawn with `fold_in(key, i)`, so the cached sampler and the full-recomputation reference
(kept for tests and benchmarks) draw the same tokens for the same key. Only the real vocabulary's logits
are drawn from: padding columns (model.ModelConfig.vocab_multiple) are cut off before the draw.
"""

from __future__ import annotations

import functools
import logging
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


def _pick(logits_BxV, key, temperature: float):
  if temperature == 0:
    return jnp.argmax(logits_BxV, -1).astype(jnp.int32)
  return _categorical(key, logits_BxV.astype(jnp.float32) / temperature)


def _categorical(key, logits_BxV):
  """Exact categorical sampling by inverse CDF with ONE uniform per row, in two levels (blocks of 64
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
  u_B = jax.random.uniform(key, (batch,)) * cdf_BxK[:, -1]
  block_B = jnp.minimum(jnp.sum(cdf_BxK <= u_B[:, None], -1), blocks - 1)
  take = lambda a_BxK: jnp.take_along_axis(a_BxK, block_B[:, None], 1)[:, 0]
  rest_B = u_B - (take(cdf_BxK) - take(mass_BxK))  # u's offset inside the chosen block
  inner_BxC = jnp.cumsum(jnp.take_along_axis(w_BxKxC, block_B[:, None, None], 1)[:, 0], -1)
  index_B = jnp.minimum(jnp.sum(inner_BxC <= rest_B[:, None], -1), _CDF_BLOCK - 1)
  return jnp.minimum(block_B * _CDF_BLOCK + index_B, vocab - 1).astype(jnp.int32)


def make_sampler(graphdef, cfg: ModelConfig, batch: int, length: int | None = None, temperature: float = 1.0,
                 bos_id: int = BOS):
  """(params, key) -> tokens [B, length+1]: column 0 is BOS (the tokenizer's `bos_id`), then `length`
  sampled tokens.

  No top-k/top-p and no early stop at EOS (as in Marek et al.): a sample is a full training row. On a mesh
  with several batch shards (the mesh the params live on) each device decodes only its rows (left to
  propagation, every device decoded the whole batch), with FSDP-split weights gathered once before the loop.
  """
  length = length or cfg.max_len
  # Decode in phases whose cache holds only the slots filled so far (rounded up to _PHASE): attention over
  # the cache is memory bound, and a full-size cache from the first token reads ~1.6x more of it.
  ends = list(range(_PHASE, length, _PHASE)) + [length]

  @functools.cache
  def compiled(mesh, param_specs):
    rows = sharding.RowSplit(mesh)
    shards = 1 if rows.mesh is None else sharding.batch_shards(rows.mesh)
    if batch % shards:
      logging.warning("sampler: %d rows do not divide over the %d batch shards: every device decodes all of them "
                      "(choose a batch that is a multiple of mesh.data × mesh.fsdp)", batch, shards)

    @_jit_replicated(mesh)  # every process can read the samples
    def sample(params, key):
      model = nnx.merge(graphdef, rows.gathered_tree(params, param_specs))
      tokens_BxT = rows(jnp.full((batch, length + 1), bos_id, jnp.int32))  # every slot after 0 is overwritten

      def body(i, carry):
        tokens, cache = carry
        logits, cache = model(jax.lax.dynamic_slice_in_dim(tokens, i, 1, axis=1), cache=cache)
        nxt = _pick(logits[:, -1, :cfg.vocab_size], jax.random.fold_in(key, i), temperature)
        return rows(jax.lax.dynamic_update_slice_in_dim(tokens, nxt[:, None], i + 1, axis=1)), cache

      cache, start = KVCache.zeros(cfg, batch, ends[0]), 0
      for end in ends:
        tokens_BxT, cache = jax.lax.fori_loop(start, end, body, (tokens_BxT, _shard_cache(cache.grow(end), rows)))
        start = end
      return tokens_BxT

    return sample

  def sample(params, key):
    return compiled(sharding.mesh_of(params), _specs(params))(params, key)

  sample.lower = lambda params, key: compiled(sharding.mesh_of(params), _specs(params)).lower(params, key)
  return sample


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
  decoded greedily for `max_new_tokens`, cut at EOS.
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
    fn = _greedy_fn(self.graphdef, self.cfg, self.batch_size, bucket, self.max_new_tokens,
                    sharding.mesh_of(self.params), _specs(self.params))
    out = np.asarray(fn(self.params, jnp.asarray(tokens), jnp.asarray(valid)))
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
