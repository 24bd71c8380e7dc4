"""The compiled train and eval steps: student forward/backward, and the frozen teacher's forward on replay
rows, in ONE executable per step.

Batch layout contract (data/mixture.py builds it): each of the `batch_shards` equal slices of the global
batch holds its target rows first, then its replay rows. Reshaping [B, …] to [shards, B/shards, …] and
slicing therefore keeps every slice sharded over the batch axes: the teacher runs only on replay rows
with no resharding.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from cpt_jax import losses

REPLAY_LOSSES = ("ntp", "kl")
Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class StepSpec:
  batch_shards: int
  target_rows_per_shard: int
  replay_rows_per_shard: int = 0
  replay_loss: str = "ntp"  # "ntp" | "kl"
  replay_coeff: float = 1.0
  dropout: bool = False


def _split_rows(x_Bx: jax.Array, spec: StepSpec) -> tuple[jax.Array, jax.Array]:
  rows = spec.target_rows_per_shard + spec.replay_rows_per_shard
  x = x_Bx.reshape((spec.batch_shards, rows) + x_Bx.shape[1:])
  flat = lambda y: y.reshape((-1,) + x_Bx.shape[1:])
  return flat(x[:, :spec.target_rows_per_shard]), flat(x[:, spec.target_rows_per_shard:])


def _hidden(graphdef, params, batch: Batch, rng=None):
  """The merged model and its final hidden states [B, L, D]; the LM head is applied by the loss."""
  model = nnx.merge(graphdef, params)
  rngs = None if rng is None else nnx.Rngs(dropout=rng)
  h_BxLxD, _ = model.hidden(batch["inputs"], batch.get("positions"), batch.get("segment_ids"), rngs=rngs)
  return model, h_BxLxD


def make_loss_fn(graphdef, spec: StepSpec) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
  """loss(params, batch, teacher_params, rng) -> (objective, metrics). Objective =
  NTP(target rows) + λ·{NTP | KL(teacher‖student)}(replay rows).

  The LM head is fused into the losses (`losses.head_nll`, `losses.head_kl`: logits recomputed in the
  backward); only the teacher's logits on replay rows are materialised and kept."""

  def loss_fn(params, batch: Batch, teacher_params, rng):
    model, h_BxLxD = _hidden(graphdef, params, batch, rng if spec.dropout else None)
    w_VxD = model.head_weight()
    mask_BxL = batch["loss_mask"]
    if spec.replay_rows_per_shard == 0:
      nll = losses.masked_mean(losses.head_nll(h_BxLxD, w_VxD, batch["targets"]), mask_BxL)
      return nll, {"loss": nll, "target_loss": nll}
    h_t, h_r = _split_rows(h_BxLxD, spec)
    targets_t, targets_r = _split_rows(batch["targets"], spec)
    mask_t, mask_r = _split_rows(mask_BxL, spec)
    target_loss = losses.masked_mean(losses.head_nll(h_t, w_VxD, targets_t), mask_t)
    if spec.replay_loss == "kl":
      replay_batch = {k: _split_rows(v, spec)[1] for k, v in batch.items()}
      teacher, h_teacher = _hidden(graphdef, teacher_params, replay_batch)
      teacher_logits = jax.lax.stop_gradient(teacher.logits(h_teacher))
      kl_r, nll_r = losses.head_kl(h_r, w_VxD, teacher_logits, targets_r)
      replay_ntp = losses.masked_mean(nll_r, mask_r)  # a metric only
      replay_loss = losses.masked_mean(kl_r, mask_r)
      metrics = {"target_loss": target_loss, "replay_ntp": replay_ntp, "kl": replay_loss}
    else:
      replay_ntp = losses.masked_mean(losses.head_nll(h_r, w_VxD, targets_r), mask_r)
      replay_loss = replay_ntp
      metrics = {"target_loss": target_loss, "replay_ntp": replay_ntp}
    objective = target_loss + spec.replay_coeff * replay_loss
    metrics.update(loss=objective, replay_loss=replay_loss)
    return objective, metrics

  return loss_fn


def make_train_step(graphdef, optimizer: optax.GradientTransformation, spec: StepSpec,
                    lr_schedule: optax.Schedule, state_shardings=None):
  """state -> state: donated, so parameters and moments are updated in place.

  A non-finite loss or gradient leaves the state untouched (the step is a no-op) and reports
  `nonfinite=1`; the host decides to stop or to skip the batch.
  """
  loss_fn = make_loss_fn(graphdef, spec)

  def train_step(state, batch: Batch, teacher_params, rng):
    rng = jax.random.fold_in(rng, state["step"])
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch, teacher_params, rng)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = {"step": state["step"] + 1, "params": keep(params, state["params"]),
                 "opt_state": keep(opt_state, state["opt_state"])}
    metrics.update(grad_norm=grad_norm, lr=lr_schedule(state["step"]), nonfinite=1 - finite.astype(jnp.int32))
    return new_state, metrics

  return jax.jit(train_step, donate_argnums=(0,), out_shardings=(state_shardings, None))


def make_eval_step(graphdef):
  """(params, batch) -> (Σ nll over masked tokens, token count): summed so batches average exactly."""

  def eval_step(params, batch: Batch):
    model, h_BxLxD = _hidden(graphdef, params, batch)
    nll_BxL = losses.head_nll(h_BxLxD, model.head_weight(), batch["targets"])
    mask = batch["loss_mask"].astype(jnp.float32)
    return jnp.sum(nll_BxL * mask), jnp.sum(mask)

  return jax.jit(eval_step)


def init_state(params: Any, optimizer: optax.GradientTransformation) -> dict[str, Any]:
  return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}
