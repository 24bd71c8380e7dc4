"""AdamW whose momentum horizons are half-lives in *tokens*, and LR schedules whose lengths are in tokens.

Marek et al. (arXiv 2507.07101): keep Adam's β₂ half-life fixed in tokens, `β = 0.5 ** (tokens_per_step /
t_half)`, so a batch-size change keeps the averaging horizon; a raw β stays available.

Schedules are functions of the step index s = 0..total_steps-1 (optax's update count: the update made at
step s uses lr(s)), so the final LR is the one of step total_steps-1, the last step that is trained.
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
  """Linear warmup, then cosine to `min_lr_ratio`·lr, WSD (flat then linear decay), or constant.

  Warmup of w steps: lr(s) = peak·(s+1)/w, so step 0 already trains and step w-1 is at peak. Cosine runs
  from peak at step w to the floor at the last step; WSD holds peak, then spends its last d steps going
  down linearly, lr = floor + (peak-floor)·(1 - k/d) on its k-th decay step (k = 1..d), so the last step
  is at the floor. Cosine and WSD keep at least that last step after warmup (a 1-step run trains at the
  floor); steps past the end stay at the final LR.
  """
  if opt_cfg.schedule not in SCHEDULES:
    raise ValueError(f"opt.schedule={opt_cfg.schedule!r} is not one of {SCHEDULES}")
  total_steps = max(1, int(total_steps))
  last = total_steps - 1
  kind = opt_cfg.schedule
  max_warmup = total_steps if kind == "constant" else last
  warmup = min(max_warmup, max(0, round(opt_cfg.warmup_tokens / tokens_per_step)))
  decay = min(total_steps - warmup, max(1, round(opt_cfg.decay_tokens / tokens_per_step)))
  peak = float(opt_cfg.lr)
  floor = float(opt_cfg.lr * opt_cfg.min_lr_ratio)

  def schedule(step) -> jax.Array:
    s = jnp.asarray(step, jnp.float32)
    warm = peak * ((s + 1) / max(warmup, 1))
    if kind == "cosine":
      done = jnp.clip((s - warmup) / (last - warmup), 0, 1) if last > warmup else jnp.ones_like(s)
      after = floor + (peak - floor) * 0.5 * (1 + jnp.cos(jnp.pi * done))
    elif kind == "wsd":
      done = jnp.clip((s - (total_steps - decay) + 1) / decay, 0, 1)
      after = floor + (peak - floor) * (1 - done)
    else:
      after = jnp.full_like(s, peak)
    return jnp.where(s < warmup, warm, after).astype(jnp.float32)

  return schedule


# The role of every parameter name in model.GPT. Matrices are decayed; embedding tables only with
# `decay_embeddings` (the untied head counts as one, so tying changes the architecture, not the decay);
# biases and LayerNorm scales never. A name missing here is an error rather than a guess.
PARAM_ROLES = {
    "w_qkv": "matrix", "w_out": "matrix", "w_in": "matrix",
    "wte": "embedding", "wpe": "embedding", "w_head": "embedding",
    "b_qkv": "bias", "b_out": "bias", "b_in": "bias", "bias": "bias",
    "scale": "norm",
}


def weight_decay_mask(params: Any, decay_embeddings: bool) -> Any:
  """True where AdamW decays: chosen by parameter name via PARAM_ROLES, because shapes lie (b_qkv is 3-D)."""
  decayed = {"matrix": True, "embedding": bool(decay_embeddings), "bias": False, "norm": False}

  def mask(path, _):
    last = path[-1] if path else None
    name = getattr(last, "key", getattr(last, "name", None))
    if name not in PARAM_ROLES:
      raise ValueError(f"parameter {jax.tree_util.keystr(path)}: no weight-decay role for {name!r}; "
                       "add its name to optim.PARAM_ROLES")
    return decayed[PARAM_ROLES[name]]

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
