"""The compiled train and eval steps: student forward/backward, and the frozen teacher's forward on replay
rows, in ONE executable per step.

Batch layout contract (data/pipeline.BatchLoader builds it): each of the `batch_shards` equal slices of the
global batch holds its target rows first, then its replay rows, then its copy rows. `Objective.split_copy` and
`split_rows` reshape [B, …] to [shards, B/shards, …] and slice, so every part stays sharded over the batch axes:
the teacher runs only on replay rows with no resharding. What the objective is (mixture or regularizer, which
replay loss, copy rows) is decided by `cpt_jax/objective.py`; this module computes it.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from cpt_jax import losses, sharding
from cpt_jax.objective import Objective

Batch = dict[str, jax.Array]


def _hidden(graphdef, params, batch: Batch, rng=None, mesh=None):
  """The merged model and its final hidden states [B, L, D]; the LM head is applied by the loss. On `mesh`,
  each device computes its batch shard's rows (model.GPT.hidden's `rows`)."""
  model = nnx.merge(graphdef, params)
  rngs = None if rng is None else nnx.Rngs(dropout=rng)
  h_BxLxD, _ = model.hidden(batch["inputs"], batch.get("positions"), batch.get("segment_ids"), rngs=rngs,
                            rows=sharding.RowSplit(mesh))
  return model, h_BxLxD


def make_loss_fn(graphdef, objective: Objective, mesh=None) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
  """loss(params, batch, teacher_params, rng) -> (objective value, metrics).

  mixture:     Σ_target nll + Σ_replay nll, over all loss tokens of the batch (one token-mean);
  regularizer: mean_target nll + λ · mean_replay R, R from the replay-loss registry (NTP or KL(teacher‖student));
  with copy rows, + copy_weight · mean_copy nll (`scored_tokens` counts the target and replay rows' tokens).
  The LM head is fused into the losses (logits recomputed in the backward); only the teacher's logits on
  replay rows are materialised.
  """

  def _data_loss(h_BxLxD, targets_BxL, mask_BxL, batch, w_VxD, vocab, teacher_params):
    """The objective over the target and replay rows (the copy rows taken out)."""
    if not objective.has_replay:
      nll = losses.masked_mean(losses.head_nll(h_BxLxD, w_VxD, targets_BxL, vocab), mask_BxL)
      return nll, {"loss": nll, "target_loss": nll, "scored_tokens": jnp.sum(mask_BxL)}
    h_t, h_r = objective.split_rows(h_BxLxD)
    targets_t, targets_r = objective.split_rows(targets_BxL)
    mask_t, mask_r = objective.split_rows(mask_BxL)
    teacher_logits = None
    if objective.loss.needs_teacher:
      replay_batch = {k: objective.split_rows(v)[1] for k, v in batch.items()}
      teacher, h_teacher = _hidden(graphdef, teacher_params, replay_batch, mesh=mesh)
      teacher_logits = jax.lax.stop_gradient(teacher.logits(h_teacher))
    replay_BxL, replay_nll_BxL = objective.loss.fn(h_r, w_VxD, targets_r, teacher_logits, vocab)
    target_sum, target_tokens = jnp.sum(losses.head_nll(h_t, w_VxD, targets_t, vocab) * mask_t), jnp.sum(mask_t)
    replay_sum, replay_tokens = jnp.sum(replay_BxL * mask_r), jnp.sum(mask_r)
    target_loss = target_sum / jnp.maximum(target_tokens, 1.0)
    replay_loss = replay_sum / jnp.maximum(replay_tokens, 1.0)
    if objective.semantics == "mixture":
      value = (target_sum + replay_sum) / jnp.maximum(target_tokens + replay_tokens, 1.0)
    else:
      value = target_loss + objective.coeff * replay_loss
    metrics = {"loss": value, "target_loss": target_loss, "replay_loss": replay_loss,
               "replay_ntp": losses.masked_mean(replay_nll_BxL, mask_r),
               "replay_token_share": replay_tokens / jnp.maximum(target_tokens + replay_tokens, 1.0),
               "scored_tokens": target_tokens + replay_tokens}
    if objective.replay_loss != "ntp":
      metrics[objective.replay_loss] = replay_loss
    return value, metrics

  def loss_fn(params, batch: Batch, teacher_params, rng):
    model, h_BxLxD = _hidden(graphdef, params, batch, rng if objective.dropout else None, mesh)
    w_VxD, vocab = model.head_weight(), model.cfg.vocab_size  # rows of w_VxD past vocab are padding
    mask_BxL = batch["loss_mask"].astype(jnp.float32)
    if not objective.has_copy:
      return _data_loss(h_BxLxD, batch["targets"], mask_BxL, batch, w_VxD, vocab, teacher_params)
    (h_BxLxD, h_copy), (targets, targets_copy), (mask_BxL, mask_copy) = (
        objective.split_copy(x) for x in (h_BxLxD, batch["targets"], mask_BxL))
    main_batch = {k: objective.split_copy(v)[0] for k, v in batch.items()}
    value, metrics = _data_loss(h_BxLxD, targets, mask_BxL, main_batch, w_VxD, vocab, teacher_params)
    copy_loss = losses.masked_mean(losses.head_nll(h_copy, w_VxD, targets_copy, vocab), mask_copy)
    value = value + objective.copy_weight * copy_loss
    return value, metrics | {"loss": value, "copy_loss": copy_loss}

  return loss_fn


def make_train_step(graphdef, optimizer: optax.GradientTransformation, objective: Objective,
                    lr_schedule: optax.Schedule, state_shardings=None):
  """state -> state: donated, so parameters and moments are updated in place.

  A non-finite loss or gradient leaves parameters and moments untouched and reports `nonfinite=1`; the host
  decides to stop or to skip the batch. The step counter and the optimizer's counts advance either way, so
  the schedule's clock, `state["step"]` and the logged `lr` never drift apart.
  """
  loss_fn = make_loss_fn(graphdef, objective, sharding.mesh_of(state_shardings))

  def train_step(state, batch: Batch, teacher_params, rng):
    rng = jax.random.fold_in(rng, state["step"])
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch, teacher_params, rng)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)

    def keep(new, old):
      return jnp.where(finite, new, old)

    new_state = {"step": state["step"] + 1, "params": jax.tree.map(keep, params, state["params"]),
                 "opt_state": jax.tree_util.tree_map_with_path(
                     lambda path, new, old: new if _is_count(path) else keep(new, old), opt_state, state["opt_state"])}
    metrics.update(grad_norm=grad_norm, lr=lr_schedule(state["step"]), nonfinite=1 - finite.astype(jnp.int32))
    return new_state, metrics

  return jax.jit(train_step, donate_argnums=(0,), out_shardings=(state_shardings, None))


def _is_count(path) -> bool:
  """An optimizer state's step count (optax names it `count`: Adam's bias correction, the LR schedule)."""
  return bool(path) and getattr(path[-1], "name", None) == "count"


def optimizer_counts(opt_state) -> list[int]:
  """Every step count in an optimizer state (they equal the train state's step)."""
  found = []
  jax.tree_util.tree_map_with_path(lambda path, x: found.append(int(x)) if _is_count(path) else None, opt_state)
  return found


def make_eval_step(graphdef, mesh=None):
  """(params, batch) -> (Σ nll over masked tokens [K], token counts [K]) for the K loss masks of
  batch["loss_mask"] [B, K, L]: eval sets that differ only in which tokens they score share one forward pass.
  Summed, so batches average exactly."""

  def eval_step(params, batch: Batch):
    if batch["loss_mask"].ndim != 3:  # a [B, L] mask would broadcast to B masks
      raise ValueError(f"eval loss_mask must be [B, K, L], got shape {batch['loss_mask'].shape}")
    model, h_BxLxD = _hidden(graphdef, params, batch, mesh=mesh)
    nll_BxL = losses.head_nll(h_BxLxD, model.head_weight(), batch["targets"], model.cfg.vocab_size)
    mask_BxKxL = batch["loss_mask"].astype(jnp.float32)
    return jnp.sum(nll_BxL[:, None, :] * mask_BxKxL, (0, 2)), jnp.sum(mask_BxKxL, (0, 2))

  return jax.jit(eval_step)


def init_state(params: Any, optimizer: optax.GradientTransformation) -> dict[str, Any]:
  return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}
