"""GPT-2-style decoder in Flax NNX, with a KV cache for sampling.

Parameters carry *logical* axis names (`logical_axes` metadata: "vocab", "embed", "heads", "head_dim",
"mlp", "layers"); `sharding.py` maps them to mesh axes, so the model never names a mesh axis. Parameters
are f32, matmuls run in `compute_dtype` (bf16 on accelerators), and LayerNorm, softmax and logits are f32.

Two layouts of the blocks hold the same numbers (`scan_layers`): one module per layer (`blocks/0/…`,
run by a Python loop: the compiled program grows with depth), or one module whose parameters are stacked
along a leading layer axis (`layers/…`, run by `jax.lax.scan`: compile time independent of depth).
`param_layout.convert_layout` moves parameters (and anything shaped like them, e.g. Adam moments) between
the two; the same seed initialises the same numbers in both.

The vocabulary may be padded (`vocab_multiple`) so that the embedding and LM-head matmuls have aligned
shapes (GPT-2's 50257 → 50304): padding rows start at zero, their logits are the lowest f32 (no
probability, never sampled, no gradient), and `unpadded` drops them for export.

Shape suffixes: B batch, L sequence, S cached key length, D model width, N heads, H head dim, F MLP
width, V vocab (padded where it is a parameter's size), Y layers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from cpt_jax import losses, ops, sharding
from cpt_jax.param_layout import LOOP_KEY, SCAN_KEY

REMAT_POLICIES = ("none", "full", "dots_saveable")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int  # the tokenizer's: what loss, sampling and export see
  max_len: int = 256
  num_layers: int = 4
  d_model: int = 256
  num_heads: int = 4
  mlp_ratio: int = 4
  tie_embeddings: bool = True
  dropout: float = 0.0
  compute_dtype: str = "float32"
  remat: str = "none"  # REMAT_POLICIES; True/False (older configs) mean "full"/"none"
  scan_layers: bool = False
  attention_impl: str = "auto"  # ops.ATTENTION_IMPLS: auto is cuDNN on a GPU where it applies, blocked on a
  # CPU, XLA otherwise
  vocab_multiple: int = 1  # embedding/head rows padded to a multiple of this (128: aligned matmuls)

  def __post_init__(self):
    object.__setattr__(self, "remat", remat_policy(self.remat))
    if self.attention_impl not in ops.ATTENTION_IMPLS:
      raise ValueError(f"attention_impl={self.attention_impl!r}: must be one of {ops.ATTENTION_IMPLS}")
    if self.vocab_multiple < 1:
      raise ValueError(f"vocab_multiple={self.vocab_multiple}: must be ≥ 1")

  @property
  def padded_vocab(self) -> int:
    return -(-self.vocab_size // self.vocab_multiple) * self.vocab_multiple

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads

  @property
  def mlp_dim(self) -> int:
    return self.mlp_ratio * self.d_model

  @property
  def dtype(self):
    return jnp.dtype(self.compute_dtype)

  @classmethod
  def from_config(cls, model_cfg, vocab_size: int) -> "ModelConfig":
    """Fields a saved config lacks (a run from before they existed) keep their defaults."""
    fields = {f.name for f in dataclasses.fields(cls)} - {"vocab_size"}
    return cls(vocab_size=vocab_size, **{k: model_cfg[k] for k in fields if k in model_cfg})


def remat_policy(value) -> str:
  """A REMAT_POLICIES name from a config value; booleans (and their strings) are the older on/off switch."""
  if isinstance(value, bool) or str(value).lower() in ("true", "false"):
    return "full" if str(value).lower() == "true" else "none"
  if value not in REMAT_POLICIES:
    raise ValueError(f"remat={value!r}: must be one of {REMAT_POLICIES} (or true/false)")
  return value


def _param(rngs: nnx.Rngs, shape, axes, std: float) -> nnx.Param:
  return nnx.Param(std * jax.random.normal(rngs.params(), shape, jnp.float32), logical_axes=axes)


def _vocab_param(rngs: nnx.Rngs, cfg: ModelConfig, vocab_axis: int, axes) -> nnx.Param:
  """An embedding-like table with the vocabulary padded along `vocab_axis`; padding rows start at zero."""
  shape = [cfg.d_model, cfg.d_model]
  shape[vocab_axis] = cfg.padded_vocab
  w = 0.02 * jax.random.normal(rngs.params(), tuple(shape), jnp.float32)
  if cfg.padded_vocab != cfg.vocab_size:
    real = jnp.arange(cfg.padded_vocab) < cfg.vocab_size
    w = jnp.where(real[:, None] if vocab_axis == 0 else real[None, :], w, 0.0)
  return nnx.Param(w, logical_axes=axes)


def _zeros(shape, axes) -> nnx.Param:
  return nnx.Param(jnp.zeros(shape, jnp.float32), logical_axes=axes)


class LayerNorm(nnx.Module):
  """LayerNorm computed in f32 whatever the compute dtype (stability), cast back after."""

  def __init__(self, d: int):
    self.scale = nnx.Param(jnp.ones((d,), jnp.float32), logical_axes=("embed",))
    self.bias = _zeros((d,), ("embed",))

  def __call__(self, x_BxLxD):
    x = x_BxLxD.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + 1e-5) * self.scale[...] + self.bias[...]
    return y.astype(x_BxLxD.dtype)


class KVCache(NamedTuple):
  """Preallocated keys/values: k, v are tuples with one [B, N, S, H] buffer per layer, in either layout.

  Heads-major, because that is the layout the decode-time attention dots read directly (a [B, S, N, H]
  cache made XLA:CPU transpose all of it every token), and one buffer per layer, because slicing a layer
  out of one stacked [layers, …] buffer copied it every token (and scanning over one, reading and writing it
  as the scan's input and output, made sampling 3.9× slower). Measured in docs/performance.md.

  The first `length` slots are filled; `valid_BxS` marks which of them are real tokens, so left-padded
  prompts of different lengths decode together in one batch.
  """

  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  length: jax.Array  # int32 scalar
  valid_BxS: jax.Array

  @classmethod
  def zeros(cls, cfg: ModelConfig, batch: int, max_len: int | None = None) -> "KVCache":
    max_len = max_len or cfg.max_len
    shape = (batch, cfg.num_heads, max_len, cfg.head_dim)
    zeros = lambda: tuple(jnp.zeros(shape, cfg.dtype) for _ in range(cfg.num_layers))
    return cls(zeros(), zeros(), jnp.zeros((), jnp.int32), jnp.zeros((batch, max_len), bool))

  def grow(self, max_len: int) -> "KVCache":
    """The same cache with room for `max_len` slots (new slots empty): decoding in phases of growing
    cache size reads fewer empty slots per token than one full-size cache."""
    extra = max_len - self.valid_BxS.shape[1]
    pad = lambda c: jnp.pad(c, ((0, 0), (0, 0), (0, extra), (0, 0)))
    return KVCache(tuple(map(pad, self.k)), tuple(map(pad, self.v)), self.length,
                   jnp.pad(self.valid_BxS, ((0, 0), (0, extra))))


class Attention(nnx.Module):

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    d, n, h = cfg.d_model, cfg.num_heads, cfg.head_dim
    out_std = 0.02 / math.sqrt(2 * cfg.num_layers)
    self.w_qkv = _param(rngs, (3, d, n, h), (None, "embed", "heads", "head_dim"), 0.02)
    self.b_qkv = _zeros((3, n, h), (None, "heads", "head_dim"))
    self.w_out = _param(rngs, (n, h, d), ("heads", "head_dim", "embed"), out_std)
    self.b_out = _zeros((d,), ("embed",))
    self.cfg = cfg

  def __call__(self, x_BxLxD, mask, cache_kv=None, cache_index=None):
    """`cache_kv`: this layer's (k, v) cache buffers, each [B, N, S, H]; the chunk's keys/values are written
    in place at [:, :, cache_index] and the queries attend over the whole buffer (masked)."""
    dt = self.cfg.dtype
    w_3xDxNxH, b_3xNxH = self.w_qkv[...].astype(dt), self.b_qkv[...].astype(dt)
    w_NxHxD = self.w_out[...].astype(dt)
    if cache_kv is None:
      # One projection per q/k/v: w_qkv[t] is a contiguous [D, N, H] slice, whereas one [3, D, N, H] einsum
      # contracting D made XLA:CPU transpose the whole weight (docs/performance.md).
      q_BxLxNxH, k_BxLxNxH, v_BxLxNxH = (
          jnp.einsum("bld,dnh->blnh", x_BxLxD, w_3xDxNxH[t]) + b_3xNxH[t] for t in range(3))
      impl = ops.attention_implementation(self.cfg.attention_impl, self.cfg.compute_dtype, self.cfg.head_dim)
      if impl == "blocked":
        out_BxLxNxH = ops.blocked_causal_attention(q_BxLxNxH, k_BxLxNxH, v_BxLxNxH, mask)
      elif mask is None:
        out_BxLxNxH = jax.nn.dot_product_attention(q_BxLxNxH, k_BxLxNxH, v_BxLxNxH, is_causal=True,
                                                   implementation=impl)
      else:
        out_BxLxNxH = jax.nn.dot_product_attention(q_BxLxNxH, k_BxLxNxH, v_BxLxNxH, mask=mask,
                                                   implementation="xla")
      return jnp.einsum("blnh,nhd->bld", out_BxLxNxH, w_NxHxD) + self.b_out[...].astype(dt), None
    # Decoding reads every weight in place. Inside the decode loop XLA:CPU copied each w_qkv[t] slice and
    # transposed w_out to match the attention output's layout at every token (docs/performance.md): q, k, v
    # are one dot with t as a batch dimension (x broadcast 3×, a few KB), the output projection one matmul.
    x_3xBxLxD = jnp.broadcast_to(x_BxLxD, (3, *x_BxLxD.shape))
    qkv_3xBxLxNxH = jnp.einsum("tbld,tdnh->tblnh", x_3xBxLxD, w_3xDxNxH) + b_3xNxH[:, None, None]
    k_cache, v_cache = cache_kv  # write this chunk's keys/values into the cache, attend over it
    write = lambda c, x_BxLxNxH: jax.lax.dynamic_update_slice_in_dim(
        c, x_BxLxNxH.transpose(0, 2, 1, 3).astype(c.dtype), cache_index, axis=2)
    k_cache, v_cache = write(k_cache, qkv_3xBxLxNxH[1]), write(v_cache, qkv_3xBxLxNxH[2])
    out_BxLxNxH = ops.heads_major_attention(qkv_3xBxLxNxH[0], k_cache, v_cache, mask)
    out_BxLxF = out_BxLxNxH.reshape(*out_BxLxNxH.shape[:2], -1)
    y_BxLxD = out_BxLxF @ w_NxHxD.reshape(-1, w_NxHxD.shape[-1])
    return y_BxLxD + self.b_out[...].astype(dt), (k_cache, v_cache)


class Mlp(nnx.Module):

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    d, f = cfg.d_model, cfg.mlp_dim
    self.w_in = _param(rngs, (d, f), ("embed", "mlp"), 0.02)
    self.b_in = _zeros((f,), ("mlp",))
    self.w_out = _param(rngs, (f, d), ("mlp", "embed"), 0.02 / math.sqrt(2 * cfg.num_layers))
    self.b_out = _zeros((d,), ("embed",))
    self.dtype = cfg.dtype
    # `dense` is measured without remat only; under a remat policy the MLP keeps autodiff's matmuls.
    self.matmul = ops.dense if cfg.remat == "none" else jnp.matmul

  def __call__(self, x_BxLxD):
    x_NxD = x_BxLxD.reshape(-1, x_BxLxD.shape[-1])
    h_NxF = self.matmul(x_NxD, self.w_in[...].astype(self.dtype)) + self.b_in[...].astype(self.dtype)
    h_NxF = jax.nn.gelu(h_NxF)
    y_NxD = self.matmul(h_NxF, self.w_out[...].astype(self.dtype)) + self.b_out[...].astype(self.dtype)
    return y_NxD.reshape(x_BxLxD.shape)


class Block(nnx.Module):

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.ln_attn = LayerNorm(cfg.d_model)
    self.attn = Attention(cfg, rngs)
    self.ln_mlp = LayerNorm(cfg.d_model)
    self.mlp = Mlp(cfg, rngs)
    self.dropout = nnx.Dropout(cfg.dropout)

  def __call__(self, x_BxLxD, mask, rngs=None, cache_kv=None, cache_index=None):
    deterministic = rngs is None
    a_BxLxD, new_kv = self.attn(self.ln_attn(x_BxLxD), mask, cache_kv, cache_index)
    x_BxLxD = x_BxLxD + self.dropout(a_BxLxD, deterministic=deterministic, rngs=rngs)
    m_BxLxD = self.mlp(self.ln_mlp(x_BxLxD))
    x_BxLxD = x_BxLxD + self.dropout(m_BxLxD, deterministic=deterministic, rngs=rngs)
    return x_BxLxD, new_kv


class GPT(nnx.Module):
  """Decoder-only transformer: learned positions, pre-LN blocks, GELU MLP, (un)tied LM head."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    self.wte = _vocab_param(rngs, cfg, 0, ("vocab", "embed"))
    self.wpe = _param(rngs, (cfg.max_len, cfg.d_model), (None, "embed"), 0.01)
    blocks = [Block(cfg, rngs) for _ in range(cfg.num_layers)]
    if cfg.scan_layers:  # the same numbers as the loop layout, stacked (same seed, same model)
      setattr(self, SCAN_KEY, _stack_blocks(blocks))
    else:
      setattr(self, LOOP_KEY, nnx.List(blocks))
    self.ln_f = LayerNorm(cfg.d_model)
    if not cfg.tie_embeddings:
      self.w_head = _vocab_param(rngs, cfg, 1, ("embed", "vocab"))

  def hidden(self, tokens_BxL, positions_BxL=None, segment_ids_BxL=None, rngs=None, cache: KVCache | None = None,
             valid_BxL=None, rows: sharding.RowSplit | None = None):
    """Final hidden states [B, L, D] (f32) and the updated cache (None without one).

    `rows` splits the residual stream over the batch axes after the embedding and after every block, and
    all-gathers the embedding tables over them before the lookup (the train and eval steps pass it): without
    it, XLA lays the activations out like the FSDP-sharded weights, split along D with every device holding
    every row.

    With a cache, `valid_BxL` marks real (non-pad) tokens of this chunk; pads are never attended to.
    Dropout draws one key per layer from `rngs`, in either layout. Decoding (a cache) runs the layers one by
    one in either layout: a scan-layout layer's parameters are sliced out of the stack, which XLA hoists out
    of the decode loop (they do not change), while the per-layer cache buffers are updated in place.
    """
    cfg = self.cfg
    if positions_BxL is None:
      start = 0 if cache is None else cache.length
      positions_BxL = start + jnp.arange(tokens_BxL.shape[1], dtype=jnp.int32)[None, :]
    rows = rows or sharding.RowSplit(None)
    tokens_BxL, positions_BxL = rows(tokens_BxL), rows(positions_BxL)  # positions [1, L] stay as they are
    wte, wpe = rows.gathered(self.wte[...], self.wte.logical_axes), rows.gathered(self.wpe[...], self.wpe.logical_axes)
    x_BxLxD = rows((wte[tokens_BxL] + wpe[positions_BxL]).astype(cfg.dtype))
    if cache is not None:
      if valid_BxL is None:
        valid_BxL = jnp.ones(tokens_BxL.shape, bool)
      valid_BxS = jax.lax.dynamic_update_slice_in_dim(cache.valid_BxS, valid_BxL, cache.length, 1)
      cache = cache._replace(valid_BxS=valid_BxS)
    mask = _attention_mask(tokens_BxL.shape[1], segment_ids_BxL, cache)
    keys = None if rngs is None else jax.random.split(rngs.dropout(), cfg.num_layers)
    index = None if cache is None else cache.length
    if cfg.scan_layers and cache is None:
      graphdef, stacked = nnx.split(getattr(self, SCAN_KEY))
      layer = _layer_fn(graphdef, cfg.remat, scanned=True)

      def body(x_BxLxD, xs):
        params, key = xs
        return rows(layer(params, x_BxLxD, mask, key, None, None)[0]), None

      x_BxLxD, _ = jax.lax.scan(body, x_BxLxD, (stacked, keys))
    else:
      if cfg.scan_layers:
        graphdef, stacked = nnx.split(getattr(self, SCAN_KEY))
        layers = [(graphdef, jax.tree.map(lambda x, i=i: x[i], stacked)) for i in range(cfg.num_layers)]
      else:
        layers = [nnx.split(block) for block in getattr(self, LOOP_KEY)]
      new_k, new_v = [], []
      for i, (graphdef, params) in enumerate(layers):
        layer_kv = None if cache is None else (cache.k[i], cache.v[i])
        key = None if keys is None else keys[i]
        x_BxLxD, layer_kv = _layer_fn(graphdef, cfg.remat, scanned=False)(params, x_BxLxD, mask, key, layer_kv, index)
        x_BxLxD = rows(x_BxLxD)
        if cache is not None:
          new_k.append(layer_kv[0])
          new_v.append(layer_kv[1])
    h_BxLxD = self.ln_f(x_BxLxD).astype(jnp.float32)
    if cache is None:
      return h_BxLxD, None
    return h_BxLxD, KVCache(tuple(new_k), tuple(new_v), cache.length + tokens_BxL.shape[1], cache.valid_BxS)

  def head_weight(self) -> jax.Array:
    """The output projection as [V, D] f32 (the tied embedding, or the untied head transposed), V padded:
    the losses take `cfg.vocab_size` to mask the padding columns (losses.head_nll)."""
    w_VxD = self.wte[...] if self.cfg.tie_embeddings else self.w_head[...].T
    return w_VxD.astype(jnp.float32)

  def logits(self, h_BxLxD):
    """LM head in f32: logits feed the softmax/KL, where bf16 rounding would bias the loss. [B, L, V padded],
    the padding columns at the lowest f32 (zero probability)."""
    logits_BxLxV = jnp.einsum("bld,vd->blv", h_BxLxD.astype(jnp.float32), self.head_weight())
    return losses.mask_padded_logits(logits_BxLxV, self.cfg.vocab_size)

  def __call__(self, tokens_BxL, positions_BxL=None, segment_ids_BxL=None, rngs=None, cache=None, valid_BxL=None):
    h_BxLxD, cache = self.hidden(tokens_BxL, positions_BxL, segment_ids_BxL, rngs, cache, valid_BxL)
    logits_BxLxV = self.logits(h_BxLxD)
    return logits_BxLxV if cache is None else (logits_BxLxV, cache)


def _layer_fn(graphdef, remat: str, scanned: bool):
  """(params, x, mask, dropout key, (k, v) cache or None, cache index) -> (x, (k, v)): one block, as a pure
  function of its parameters so that the loop and the scan run the same code, under the remat policy."""

  def apply(params, x_BxLxD, mask, key, kv, index):
    rngs = None if key is None else nnx.Rngs(dropout=key)
    return nnx.merge(graphdef, params)(x_BxLxD, mask, rngs, kv, index)

  if remat == "none":
    return apply
  policy = jax.checkpoint_policies.dots_saveable if remat == "dots_saveable" else None
  return jax.checkpoint(apply, policy=policy, prevent_cse=not scanned)


def _stack_blocks(blocks: list[Block]) -> Block:
  """One Block whose parameters are the blocks' stacked along a new leading "layers" axis."""
  graphdef, _ = nnx.split(blocks[0])
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(b) for b in blocks])
  stacked = jax.tree.map(lambda v: v.replace(logical_axes=("layers",) + tuple(v.logical_axes)), stacked,
                         is_leaf=lambda x: isinstance(x, nnx.Variable))
  return nnx.merge(graphdef, stacked)


def unpadded(params: dict, cfg: ModelConfig) -> dict:
  """Parameters without the vocabulary padding rows (what an exported checkpoint holds)."""
  params = dict(params)
  params["wte"] = params["wte"][:cfg.vocab_size]
  if "w_head" in params:
    params["w_head"] = params["w_head"][:, :cfg.vocab_size]
  return params


def _attention_mask(length: int, segment_ids_BxL, cache: KVCache | None):
  """None means plain causal attention (the fused path); otherwise a boolean [B, 1, L, S] mask."""
  if cache is not None:  # queries at slot cache.length + i see valid keys in slots 0 .. cache.length + i
    max_len = cache.valid_BxS.shape[1]
    q_slot = cache.length + jnp.arange(length)
    causal_LxS = jnp.arange(max_len)[None, :] <= q_slot[:, None]
    return (causal_LxS[None] & cache.valid_BxS[:, None, :])[:, None]
  if segment_ids_BxL is None:
    return None
  causal_LxL = jnp.tril(jnp.ones((length, length), bool))
  same_BxLxL = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
  return (causal_LxL[None] & same_BxLxL)[:, None]


def count_params(params: Any) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))


def non_embedding_params(cfg: ModelConfig) -> int:
  """Parameters outside the token/position embeddings (the N of scaling laws)."""
  d, f, n, h, layers = cfg.d_model, cfg.mlp_dim, cfg.num_heads, cfg.head_dim, cfg.num_layers
  per_block = (3 * d * n * h + 3 * n * h) + (n * h * d + d) + (d * f + f + f * d + d) + 4 * d
  return layers * per_block + 2 * d


def total_params(cfg: ModelConfig) -> int:
  """All parameters, computed from the config: count_params of an initialised model less the vocabulary
  padding rows (which hold nothing)."""
  embeddings = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2) + cfg.max_len * cfg.d_model
  return non_embedding_params(cfg) + embeddings


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """6·(non-embedding params + V·D of the output projection) + 12·L·T·D (attention, causal not discounted);
  V unpadded: the padding columns are not the model's work."""
  attention = 12.0 * cfg.num_layers * seq_len * cfg.d_model
  return 6.0 * (non_embedding_params(cfg) + cfg.vocab_size * cfg.d_model) + attention
