"""Next-token loss and token-level KL(teacher ‖ student), side by side: the seam where replay plugs in.

Both take f32 logits (bf16 log-softmax biases small probabilities) and return per-token values so the
step can average them over any row/token mask.
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


def masked_mean(values_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
  mask = mask_BxL.astype(jnp.float32)
  return jnp.sum(values_BxL * mask) / jnp.maximum(jnp.sum(mask), 1.0)
