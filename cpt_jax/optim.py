"""AdamW whose momentum horizons are half-lives in *tokens*, and LR schedules whose lengths are in tokens.

Marek et al. (arXiv 2507.07101): keep Adam's β₂ half-life fixed in tokens, `β = 0.5 ** (tokens_per_step /
t_half)`, so a batch-size change keeps the averaging horizon; a raw β stays available.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("cosine", "wsd", "constant")


def beta_from_halflife(tokens_per_step: int, halflife_tokens: float) -> float:
  return 0.5 ** (tokens_per_step / halflife_tokens)


def halflife_from_beta(tokens_per_step: int, beta: float) -> float:
  return tokens_per_step * math.log(0.5) / math.log(beta)


def resolve_betas(opt_cfg, tokens_per_step: int) -> tuple[float, float]:
  """(β₁, β₂): a positive `*_halflife_tokens` wins over the raw `b1`/`b2`."""
  b1 = beta_from_halflife(tokens_per_step, opt_cfg.b1_halflife_tokens) if opt_cfg.b1_halflife_tokens > 0 else opt_cfg.b1
  b2 = beta_from_halflife(tokens_per_step, opt_cfg.b2_halflife_tokens) if opt_cfg.b2_halflife_tokens > 0 else opt_cfg.b2
  return float(b1), float(b2)


def lr_schedule(opt_cfg, tokens_per_step: int, total_steps: int) -> optax.Schedule:
  """Linear warmup, then cosine to `min_lr_ratio`·lr, WSD (flat then linear decay), or constant."""
  warmup = min(total_steps, max(0, round(opt_cfg.warmup_tokens / tokens_per_step)))
  peak, floor = opt_cfg.lr, opt_cfg.lr * opt_cfg.min_lr_ratio
  rest = max(1, total_steps - warmup)
  if opt_cfg.schedule == "cosine":
    after = optax.cosine_decay_schedule(peak, rest, alpha=opt_cfg.min_lr_ratio)
  elif opt_cfg.schedule == "wsd":
    decay = min(rest, max(1, round(opt_cfg.decay_tokens / tokens_per_step)))
    after = optax.join_schedules(
        [optax.constant_schedule(peak), optax.linear_schedule(peak, floor, decay)], [rest - decay])
  elif opt_cfg.schedule == "constant":
    after = optax.constant_schedule(peak)
  else:
    raise ValueError(f"opt.schedule={opt_cfg.schedule!r} is not one of {SCHEDULES}")
  if warmup == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def weight_decay_mask(params: Any, decay_embeddings: bool) -> Any:
  """Decay matrices (ndim ≥ 2); never biases or LayerNorm scales; embeddings only if asked."""
  def mask(path, x):
    name = jax.tree_util.keystr(path)
    if not decay_embeddings and ("'wte'" in name or "'wpe'" in name):
      return False
    return x.ndim >= 2
  return jax.tree_util.tree_map_with_path(mask, params)


def make_optimizer(opt_cfg, tokens_per_step: int, total_steps: int) -> optax.GradientTransformation:
  b1, b2 = resolve_betas(opt_cfg, tokens_per_step)
  schedule = lr_schedule(opt_cfg, tokens_per_step, total_steps)
  parts = []
  if opt_cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(opt_cfg.clip_norm))
  parts.append(optax.adamw(schedule, b1=b1, b2=b2, eps=opt_cfg.eps, weight_decay=opt_cfg.weight_decay,
                           mask=lambda p: weight_decay_mask(p, opt_cfg.decay_embeddings)))
  return optax.chain(*parts)


def current_lr(opt_cfg, tokens_per_step: int, total_steps: int, step) -> jax.Array:
  return jnp.asarray(lr_schedule(opt_cfg, tokens_per_step, total_steps)(step))
