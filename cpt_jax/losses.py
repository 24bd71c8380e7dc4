"""Next-token loss and token-level KL(teacher ‖ student), side by side: the seam where replay plugs in.

All take f32 logits (bf16 log-softmax biases small probabilities) and return per-token values so the
step can average them over any row/token mask. `head_nll` fuses the LM head into the next-token loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_nll(logits_BxLxV: jax.Array, targets_BxL: jax.Array) -> jax.Array:
  logp_BxLxV = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(logp_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]


def token_kl(teacher_logits_BxLxV: jax.Array, student_logits_BxLxV: jax.Array) -> jax.Array:
  """Forward KL(π‖θ) = Σ_v p_π(v)(log p_π(v) − log p_θ(v)) over the full vocabulary, per token."""
  logp_t = jax.nn.log_softmax(teacher_logits_BxLxV.astype(jnp.float32), axis=-1)
  logp_s = jax.nn.log_softmax(student_logits_BxLxV.astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.exp(logp_t) * (logp_t - logp_s), axis=-1)


def head_nll(h_BxLxD: jax.Array, w_VxD: jax.Array, targets_BxL: jax.Array) -> jax.Array:
  """token_nll(h·Wᵀ, targets) in f32, without keeping the [B, L, V] logits for the backward pass.

  The backward recomputes the logits (one more [tokens, D]×[D, V] matmul) and writes their gradient as
  softmax − one-hot directly. Autodiff of log_softmax + take_along_axis instead keeps logits and
  probabilities alive, scatters the one-hot and, on XLA:CPU, builds a transposed copy of the
  [tokens, V] gradient: the quickstart model's whole train step is 9 % faster on CPU with this
  (docs/performance.md), and accelerators save 2·B·L·V f32 of activations (6.6 GB for GPT-2's
  vocabulary at 32×1024 tokens). Tokens are flattened to 2-D matmuls, the layout XLA:CPU runs fastest.
  """
  d = h_BxLxD.shape[-1]
  nll_N = _head_nll_flat(h_BxLxD.reshape(-1, d).astype(jnp.float32), w_VxD.astype(jnp.float32),
                         targets_BxL.reshape(-1))
  return nll_N.reshape(targets_BxL.shape)


@jax.custom_vjp
def _head_nll_flat(h_NxD, w_VxD, targets_N):
  return _head_nll_fwd(h_NxD, w_VxD, targets_N)[0]


def _head_nll_fwd(h_NxD, w_VxD, targets_N):
  logits_NxV = h_NxD @ w_VxD.T
  lse_N = jax.nn.logsumexp(logits_NxV, axis=-1)
  target_logit_N = jnp.take_along_axis(logits_NxV, targets_N[:, None], axis=-1)[:, 0]
  return lse_N - target_logit_N, (h_NxD, w_VxD, targets_N, lse_N)


def _head_nll_bwd(residuals, g_N):
  h_NxD, w_VxD, targets_N, lse_N = residuals
  probs_NxV = jnp.exp(h_NxD @ w_VxD.T - lse_N[:, None])
  dlogits_NxV = (probs_NxV - jax.nn.one_hot(targets_N, w_VxD.shape[0], dtype=probs_NxV.dtype)) * g_N[:, None]
  return dlogits_NxV @ w_VxD, (h_NxD.T @ dlogits_NxV).T, None


_head_nll_flat.defvjp(_head_nll_fwd, _head_nll_bwd)


def masked_mean(values_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
  mask = mask_BxL.astype(jnp.float32)
  return jnp.sum(values_BxL * mask) / jnp.maximum(jnp.sum(mask), 1.0)
