"""How the model's attention and MLP matmuls are computed: per platform, and in forms XLA:CPU runs fast.

The choices and their measured effect are in docs/performance.md ("Optimisations", "Attention implementation").
"""

import functools
import logging
import math

import jax
import jax.numpy as jnp

ATTENTION_IMPLS = ("auto", "xla", "cudnn", "blocked")
QUERY_BLOCKS = 4  # "blocked" attention's query blocks per sequence (docs/performance.md)


@functools.lru_cache(maxsize=None)
def attention_implementation(requested: str, dtype: str, head_dim: int, platform: str | None = None) -> str:
  """The attention used for whole sequences on this platform ("xla", "cudnn" or "blocked"), logged once.

  auto picks cuDNN's fused kernel on a GPU when it applies (bf16/f16, head dim a multiple of 8 up to 128),
  `blocked_causal_attention` on a CPU (it skips the masked half of the work, which XLA's dense path
  computes), XLA's `jax.nn.dot_product_attention` otherwise; cudnn asked for where it cannot run is an
  error rather than a silent fallback. Masked attention (packed examples) runs XLA's or the blocked one;
  decoding attends over its cache with `heads_major_attention`. There is no TPU kernel here: XLA on TPU.
  """
  platform = platform or jax.default_backend()
  fits = platform == "gpu" and dtype in ("bfloat16", "float16") and head_dim % 8 == 0 and head_dim <= 128
  if requested == "cudnn" and not fits:
    raise ValueError(f"model.attention_impl='cudnn' needs a GPU, compute_dtype bfloat16 or float16 and a head "
                     f"dimension that is a multiple of 8 up to 128 (here: {platform}, {dtype}, {head_dim}); use auto, "
                     "xla or blocked")
  if requested != "auto":
    chosen = requested
  else:
    chosen = "cudnn" if fits else "blocked" if platform == "cpu" else "xla"
  logging.info("attention: %s implementation (model.attention_impl=%s, %s, %s, head dim %d)", chosen, requested,
               platform, dtype, head_dim)
  return chosen


def blocked_causal_attention(q_BxLxNxH, k_BxLxNxH, v_BxLxNxH, mask_Bx1xLxL=None, blocks: int = QUERY_BLOCKS):
  """Causal attention computed in `blocks` query blocks, block i attending keys 0 .. its last query only.

  The score blocks above the diagonal are never computed: (blocks + 1) / (2·blocks) of the dense work,
  62.5 % at 4 blocks. On XLA:CPU the dense path's batched attention dots are the step's slowest matmuls
  per FLOP; the reference-shape train step takes ~0.9× the time of `jax.nn.dot_product_attention`'s.
  More blocks save little more and compile longer (docs/performance.md). `mask_Bx1xLxL` (packed
  examples) must already be causal; lengths that `blocks` does not divide run as one block.
  """
  length = q_BxLxNxH.shape[1]
  blocks = blocks if length % blocks == 0 else 1
  size = length // blocks
  k_BxNxLxH, v_BxNxLxH = k_BxLxNxH.transpose(0, 2, 1, 3), v_BxLxNxH.transpose(0, 2, 1, 3)
  outs = []
  for i in range(blocks):
    start, end = i * size, (i + 1) * size
    if mask_Bx1xLxL is None:  # [1, 1, queries of the block, keys up to its end]
      block_mask = (jnp.arange(end)[None, :] <= jnp.arange(start, end)[:, None])[None, None]
    else:  # [B, 1, queries of the block, keys up to its end]
      block_mask = mask_Bx1xLxL[:, :, start:end, :end]
    outs.append(heads_major_attention(q_BxLxNxH[:, start:end], k_BxNxLxH[:, :, :end], v_BxNxLxH[:, :, :end],
                                       block_mask))
  return jnp.concatenate(outs, axis=1)


def heads_major_attention(q_BxLxNxH, k_BxNxSxH, v_BxNxSxH, mask_Bx1xLxS):
  """Softmax attention (f32) of queries over heads-major keys/values: the decode cache, or a causal prefix.

  The softmax's division is deferred to the output: exp(scores − max) meets the values unnormalised and the
  [B, L, N, H] result is divided by the row sums, instead of dividing the [B, N, L, S] probabilities (XLA:CPU
  materialised the broadcast divisor at full score size). The reference-shape train step takes 0.92× the time
  (docs/performance.md); the numbers are the softmax's up to rounding.
  """
  scale = 1.0 / math.sqrt(q_BxLxNxH.shape[-1])
  scores_BxNxLxS = jnp.einsum("blnh,bnsh->bnls", q_BxLxNxH, k_BxNxSxH, preferred_element_type=jnp.float32) * scale
  scores_BxNxLxS = jnp.where(mask_Bx1xLxS, scores_BxNxLxS, jnp.finfo(jnp.float32).min)
  max_BxNxLx1 = jax.lax.stop_gradient(jnp.max(scores_BxNxLxS, axis=-1, keepdims=True))  # as jax.nn.softmax
  weights_BxNxLxS = jnp.exp(scores_BxNxLxS - max_BxNxLx1)
  sums_BxLxNx1 = jnp.sum(weights_BxNxLxS, axis=-1).transpose(0, 2, 1)[..., None]
  out_BxLxNxH = jnp.einsum("bnls,bnsh->blnh", weights_BxNxLxS.astype(v_BxNxSxH.dtype), v_BxNxSxH)
  return out_BxLxNxH / sums_BxLxNx1.astype(out_BxLxNxH.dtype)


@jax.custom_vjp
def dense(x_NxI, w_IxO):
  """x·W whose weight gradient transposes the smaller of x and dy.

  For autodiff's dW = xᵀ·dy XLA:CPU copies dy transposed; at the MLP's input projection dy is 4× the size
  of x, and transposing x instead made the reference-shape train step 0.91–0.94× as long (docs/performance.md).
  """
  return x_NxI @ w_IxO


def _dense_fwd(x_NxI, w_IxO):
  return x_NxI @ w_IxO, (x_NxI, w_IxO)


def _dense_bwd(residuals, dy_NxO):
  x_NxI, w_IxO = residuals
  dw_IxO = (dy_NxO.T @ x_NxI).T if x_NxI.shape[1] < dy_NxO.shape[1] else x_NxI.T @ dy_NxO
  return dy_NxO @ w_IxO.T, dw_IxO


dense.defvjp(_dense_fwd, _dense_bwd)
