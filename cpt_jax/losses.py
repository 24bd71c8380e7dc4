"""Next-token loss and token-level KL(teacher ‖ student), side by side: the seam where replay plugs in.

All take f32 logits (bf16 log-softmax biases small probabilities) and return per-token values so the
step can average them over any row/token mask. `head_nll` fuses the LM head into the next-token loss.

`vocab`: the real vocabulary size when the head weight has padding rows (model.ModelConfig.vocab_multiple);
the padding columns' logits are set to the lowest f32, so they carry no probability and get no gradient.
"""

from __future__ import annotations

import functools

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


def head_nll(h_BxLxD: jax.Array, w_VxD: jax.Array, targets_BxL: jax.Array, vocab: int | None = None) -> jax.Array:
  """token_nll(h·Wᵀ, targets) in f32, without keeping the [B, L, V] logits for the backward pass.

  The backward recomputes the logits (one more [tokens, D]×[D, V] matmul) and writes their gradient as
  softmax − one-hot directly. Autodiff of log_softmax + take_along_axis instead keeps logits and
  probabilities alive, scatters the one-hot and, on XLA:CPU, builds a transposed copy of the
  [tokens, V] gradient: the quickstart model's whole train step is 9 % faster on CPU with this
  (docs/performance.md), and accelerators save 2·B·L·V f32 of activations (6.6 GB for GPT-2's
  vocabulary at 32×1024 tokens). Tokens are flattened to 2-D matmuls, the layout XLA:CPU runs fastest.
  """
  return _flat(functools.partial(_head_nll_flat, vocab or w_VxD.shape[0]), h_BxLxD, w_VxD, targets_BxL)


def head_kl(h_BxLxD: jax.Array, w_VxD: jax.Array, teacher_logits_BxLxV: jax.Array,
            targets_BxL: jax.Array, vocab: int | None = None) -> tuple[jax.Array, jax.Array]:
  """(token_kl(teacher, h·Wᵀ), token_nll(h·Wᵀ, targets)) per token, fused like `head_nll`.

  The student's logits gradient is written directly as g_kl·(p_student − p_teacher) +
  g_nll·(p_student − one-hot); the teacher's logits are a constant (no gradient flows to them). They arrive
  with their padding columns already masked (`model.GPT.logits` does it once).
  """
  return _flat(functools.partial(_head_kl_flat, vocab or w_VxD.shape[0]), h_BxLxD, w_VxD, teacher_logits_BxLxV,
               targets_BxL)


def _flat(fn, h_BxLxD, w_VxD, *per_token):
  """Calls fn on [tokens, …] arrays (f32) and restores the [B, L] shape of its outputs."""
  shape = h_BxLxD.shape[:-1]
  flat = [x.reshape((-1,) + x.shape[len(shape):]) for x in per_token]
  out = fn(h_BxLxD.reshape(-1, h_BxLxD.shape[-1]).astype(jnp.float32), w_VxD.astype(jnp.float32), *flat)
  return jax.tree.map(lambda y_N: y_N.reshape(shape), out)


def mask_padded_logits(logits_xV, vocab: int):
  """Padding columns (index ≥ vocab) at the lowest f32; not -inf, whose differences in the KL are NaN."""
  if vocab == logits_xV.shape[-1]:
    return logits_xV
  return jnp.where(jnp.arange(logits_xV.shape[-1]) < vocab, logits_xV, jnp.finfo(jnp.float32).min)


def _student_logits(vocab, h_NxD, w_VxD):
  logits_NxV = mask_padded_logits(h_NxD @ w_VxD.T, vocab)
  return logits_NxV, jax.nn.logsumexp(logits_NxV, axis=-1)


def _recomputed_probs(vocab, h_NxD, w_VxD, lse_N):
  return jnp.exp(mask_padded_logits(h_NxD @ w_VxD.T, vocab) - lse_N[:, None])


def _nll_of(logits_NxV, lse_N, targets_N):
  return lse_N - jnp.take_along_axis(logits_NxV, targets_N[:, None], axis=-1)[:, 0]


def _head_grads(h_NxD, w_VxD, dlogits_NxV):
  """(d h, d W) of logits = h·Wᵀ; dW as (hᵀ·dlogits)ᵀ so only small [N, D] / [D, V] arrays are transposed."""
  return dlogits_NxV @ w_VxD, (h_NxD.T @ dlogits_NxV).T


def _one_hot(targets_N, vocab):
  return jax.nn.one_hot(targets_N, vocab, dtype=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _head_nll_flat(vocab, h_NxD, w_VxD, targets_N):
  return _head_nll_fwd(vocab, h_NxD, w_VxD, targets_N)[0]


def _head_nll_fwd(vocab, h_NxD, w_VxD, targets_N):
  logits_NxV, lse_N = _student_logits(vocab, h_NxD, w_VxD)
  return _nll_of(logits_NxV, lse_N, targets_N), (h_NxD, w_VxD, targets_N, lse_N)


def _head_nll_bwd(vocab, residuals, g_N):
  h_NxD, w_VxD, targets_N, lse_N = residuals
  probs_NxV = _recomputed_probs(vocab, h_NxD, w_VxD, lse_N)
  dlogits_NxV = (probs_NxV - _one_hot(targets_N, w_VxD.shape[0])) * g_N[:, None]
  return (*_head_grads(h_NxD, w_VxD, dlogits_NxV), None)


_head_nll_flat.defvjp(_head_nll_fwd, _head_nll_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _head_kl_flat(vocab, h_NxD, w_VxD, teacher_logits_NxV, targets_N):
  return _head_kl_fwd(vocab, h_NxD, w_VxD, teacher_logits_NxV, targets_N)[0]


def _head_kl_fwd(vocab, h_NxD, w_VxD, teacher_logits_NxV, targets_N):
  logits_NxV, lse_N = _student_logits(vocab, h_NxD, w_VxD)
  logp_teacher_NxV = jax.nn.log_softmax(teacher_logits_NxV.astype(jnp.float32), axis=-1)
  kl_N = jnp.sum(jnp.exp(logp_teacher_NxV) * (logp_teacher_NxV - (logits_NxV - lse_N[:, None])), axis=-1)
  return (kl_N, _nll_of(logits_NxV, lse_N, targets_N)), (h_NxD, w_VxD, teacher_logits_NxV, targets_N, lse_N)


def _head_kl_bwd(vocab, residuals, g):
  h_NxD, w_VxD, teacher_logits_NxV, targets_N, lse_N = residuals
  g_kl_N, g_nll_N = g
  probs_NxV = _recomputed_probs(vocab, h_NxD, w_VxD, lse_N)
  teacher_probs_NxV = jax.nn.softmax(teacher_logits_NxV.astype(jnp.float32), axis=-1)
  dlogits_NxV = ((probs_NxV - teacher_probs_NxV) * g_kl_N[:, None]
                 + (probs_NxV - _one_hot(targets_N, w_VxD.shape[0])) * g_nll_N[:, None])
  return (*_head_grads(h_NxD, w_VxD, dlogits_NxV), None, None)


_head_kl_flat.defvjp(_head_kl_fwd, _head_kl_bwd)


def masked_mean(values_BxL: jax.Array, mask_BxL: jax.Array) -> jax.Array:
  mask = mask_BxL.astype(jnp.float32)
  return jnp.sum(values_BxL * mask) / jnp.maximum(jnp.sum(mask), 1.0)
