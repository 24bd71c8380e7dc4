"""The training objective of a run, resolved once from its config.

What a replay ratio means, which loss replay rows get and how much they weigh, how many rows of each kind
a batch shard holds, whether the frozen teacher runs inside the step, and which keys a batch carries: the
step, the loop, the loader, the eval sets and config validation all read one `Objective` instead of
re-deriving these from config strings.

Replay has two meanings in the literature, and both are here, by name (`replay.semantics`):

- **mixture** — replay rows are part of the training data (Spiegelhalter et al., arXiv 2510.11842;
  Goffinet et al., arXiv 2510.23198): the batch is one pool of target and replay rows and the objective is
  ONE token-mean of the next-token loss over every loss token in it. Replay's weight in the gradient is its
  realized share of the batch's loss tokens (`train/replay_token_share`), which for answer-only task data
  can be far above its share of rows.
- **regularizer** — Marek et al. (arXiv 2605.26097): `mean_target(NTP) + λ · mean_replay(R)`, each a mean
  over its own rows' loss tokens, R the next-token loss or KL(teacher‖student). Replay carries λ/(1+λ) of
  the objective whatever the ratio; the ratio sets how many replay tokens estimate R.

A KL term is a distance to the teacher, not a likelihood of data, so it has no place in a token-mean of
training data: KL runs under the regularizer semantics only.

Copy rows (`data.copy_share`, data/copy_probe.py) are a third kind of row, after the replay rows of each
shard: spans of base-corpus text shown twice, scored on the repeats. They add `copy_weight · mean_copy` to
whichever objective the other rows form. A mean of their own keeps their weight fixed whatever share of the
batch's loss tokens they hold (in one token-mean with text rows, a copy row's repeats held ~30 % of the loss
and the copying was not learned: docs/results/README.md).

This module is a leaf (jax and `losses` only), so config validation can use it without the step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import jax

from cpt_jax import losses

SEMANTICS = ("mixture", "regularizer")
TEXT_KEYS = ("inputs", "targets", "loss_mask")
EXAMPLE_KEYS = TEXT_KEYS + ("positions", "segment_ids")  # packed examples: positions restart, attention per example


class ObjectiveError(ValueError):
  """The replay settings cannot form an objective; the message names the config field and what to do."""


# fn(h_BxLxD, w_VxD, targets_BxL, teacher_logits_BxLxV or None, vocab) -> (loss_BxL, nll_BxL): the per-token loss
# the objective averages, and the student's next-token loss on the same tokens (a metric). `vocab` is the real
# vocabulary size: rows of w_VxD past it are padding, whose logits must be masked (losses.head_nll does).
ReplayLossFn = Callable[[jax.Array, jax.Array, jax.Array, Optional[jax.Array], int], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class ReplayLoss:
  fn: ReplayLossFn
  needs_teacher: bool  # the step runs the frozen start model's forward on replay rows
  is_likelihood: bool  # a next-token loss of data: may be averaged with the target's under the mixture semantics


def _ntp(h_BxLxD, w_VxD, targets_BxL, teacher_logits, vocab):
  del teacher_logits
  nll_BxL = losses.head_nll(h_BxLxD, w_VxD, targets_BxL, vocab)
  return nll_BxL, nll_BxL


def _kl(h_BxLxD, w_VxD, targets_BxL, teacher_logits_BxLxV, vocab):
  return losses.head_kl(h_BxLxD, w_VxD, teacher_logits_BxLxV, targets_BxL, vocab)


REPLAY_LOSSES: dict[str, ReplayLoss] = {}


def register_replay_loss(name: str, loss: ReplayLoss) -> None:
  """Adds a replay loss: `replay.loss=name` then selects it (validation, step and teacher follow)."""
  if name in REPLAY_LOSSES and REPLAY_LOSSES[name] != loss:
    raise ValueError(f"a different replay loss is already registered as {name!r}")
  REPLAY_LOSSES[name] = loss


register_replay_loss("ntp", ReplayLoss(_ntp, needs_teacher=False, is_likelihood=True))
register_replay_loss("kl", ReplayLoss(_kl, needs_teacher=True, is_likelihood=False))


def batch_keys(example_rows: bool) -> tuple[str, ...]:
  """Rows of packed examples need positions and per-example attention; text rows use the causal path."""
  return EXAMPLE_KEYS if example_rows else TEXT_KEYS


@dataclasses.dataclass(frozen=True)
class Objective:
  """Every batch shard holds `target_rows_per_shard` target rows, then `replay_rows_per_shard` replay rows,
  then `copy_rows_per_shard` copy rows."""
  semantics: str  # "none" (no replay) | "mixture" | "regularizer"
  batch_shards: int
  target_rows_per_shard: int
  replay_rows_per_shard: int = 0
  replay_loss: str = "ntp"  # a REPLAY_LOSSES key
  coeff: float = 1.0  # λ of the regularizer semantics
  example_rows: bool = False  # the trained rows are packed examples (see batch_keys)
  samples_on_the_fly: bool = False  # self-generated replay sampled from the frozen start model while training
  dropout: bool = False
  copy_rows_per_shard: int = 0
  copy_weight: float = 1.0  # the copy rows' mean enters the objective with this weight

  @property
  def has_copy(self) -> bool:
    return self.copy_rows_per_shard > 0

  @property
  def has_replay(self) -> bool:
    return self.replay_rows_per_shard > 0

  @property
  def rows(self) -> int:
    return self.batch_shards * (self.target_rows_per_shard + self.replay_rows_per_shard + self.copy_rows_per_shard)

  @property
  def copy_rows(self) -> int:
    return self.batch_shards * self.copy_rows_per_shard

  @property
  def replay_rows(self) -> int:
    return self.batch_shards * self.replay_rows_per_shard

  @property
  def replay_row_ratio(self) -> float:
    """The share of rows that are replay, as trained (not as requested)."""
    return self.replay_rows / self.rows

  @property
  def loss(self) -> ReplayLoss:
    return REPLAY_LOSSES[self.replay_loss]

  @property
  def teacher_in_step(self) -> bool:
    return self.has_replay and self.loss.needs_teacher

  @property
  def needs_frozen_model(self) -> bool:
    """The start weights stay in memory: as the step's teacher, or as the sampler of replay rows."""
    return self.teacher_in_step or (self.has_replay and self.samples_on_the_fly)

  @property
  def batch_keys(self) -> tuple[str, ...]:
    return batch_keys(self.example_rows)

  def _split(self, x_Bx: jax.Array, first: int) -> tuple[jax.Array, jax.Array]:
    """The first `first` rows of every shard and the rest, each a global batch in the same shard layout:
    reshaping to [shards, rows, …] keeps both sharded."""
    x = x_Bx.reshape((self.batch_shards, -1) + x_Bx.shape[1:])
    head, tail = x[:, :first], x[:, first:]
    return head.reshape((-1,) + x_Bx.shape[1:]), tail.reshape((-1,) + x_Bx.shape[1:])

  def split_copy(self, x_Bx: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(target and replay rows, copy rows) of a global batch."""
    return self._split(x_Bx, self.target_rows_per_shard + self.replay_rows_per_shard)

  def split_rows(self, x_Bx: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(target rows, replay rows) of a batch without its copy rows (`split_copy`)."""
    return self._split(x_Bx, self.target_rows_per_shard)


def replay_rows_for(batch_size: int, ratio: float, batch_shards: int, field: str = "replay.ratio") -> int:
  """The replay (or copy) rows that realize `ratio` of `batch_size` exactly on `batch_shards` shards, or an error
  naming `field` and the nearest ratios that can be realized."""
  exact = batch_size * ratio
  rows = round(exact)
  if abs(exact - rows) < 1e-6 and rows % batch_shards == 0 and (ratio == 0 or rows > 0):
    return rows
  step = batch_shards / batch_size
  below, above = math.floor(ratio / step + 1e-9) * step, math.ceil(ratio / step - 1e-9) * step
  options = [r for r in (below, above) if 0 < r < 1]
  nearest = " and ".join(f"{r:g} ({round(r * batch_size)} rows)" for r in options) or "none"
  kind = field.split(".")[0] if field.startswith("replay") else "copy"
  how = (f"{exact:g} rows is not a whole number" if abs(exact - rows) >= 1e-6 else
         f"gives {rows} {kind} rows of {batch_size}, not divisible by the {batch_shards} data shards")
  raise ObjectiveError(
      f"config field {field}={ratio!r}: of data.batch_size={batch_size} rows, {how}; {kind} rows must be a "
      f"multiple of the {batch_shards} data shard(s) (mesh.data × mesh.fsdp). Nearest realizable ratios: {nearest}")


def resolve(replay_cfg, stage: str, batch_size: int, batch_shards: int, example_rows: bool = False,
            dropout: bool = False, copy_share: float = 0.0, copy_weight: float = 1.0) -> Objective:
  """The objective of a run from its `replay` config and `data.copy_share` / `data.copy_weight`; raises
  ObjectiveError naming a field that does not fit."""
  r = replay_cfg

  def bad(field, what):
    return ObjectiveError(f"config field replay.{field}={r[field]!r}: {what}")

  if r.semantics not in SEMANTICS:
    raise bad("semantics", f"must be one of {SEMANTICS} (mixture: replay is part of the training data, one "
                           "token-mean; regularizer: target mean + λ·replay mean)")
  if r.loss not in REPLAY_LOSSES:
    raise bad("loss", f"must be one of {tuple(REPLAY_LOSSES)}")
  if r.coeff < 0:
    raise bad("coeff", "must be ≥ 0")
  if r.ratio > 0 and stage != "adapt":
    raise bad("ratio", "replay is for adapt runs (stage=adapt)")
  if r.ratio > 0 and r.semantics == "mixture":
    if not REPLAY_LOSSES[r.loss].is_likelihood:
      raise bad("loss", "is a distance to the teacher, not a loss of data, so it cannot be averaged into the "
                        "mixture; set replay.semantics=regularizer (target mean + λ·replay mean)")
    if r.coeff != 1.0:
      raise bad("coeff", "applies to replay.semantics=regularizer only; under the mixture semantics replay "
                         "weighs its share of the batch's tokens (leave coeff at 1.0, or change the ratio)")
  replay_rows = replay_rows_for(batch_size, r.ratio, batch_shards)
  copy_rows = replay_rows_for(batch_size, copy_share, batch_shards, "data.copy_share") if copy_share else 0
  if copy_weight < 0:
    raise ObjectiveError(f"config field data.copy_weight={copy_weight!r}: must be ≥ 0")
  if batch_size - replay_rows - copy_rows < batch_shards:
    field = "replay.ratio and data.copy_share" if copy_rows and replay_rows else (
        "data.copy_share" if copy_rows else "replay.ratio")
    raise ObjectiveError(f"config field {field}: leaves no target rows in some of the {batch_shards} data shards")
  return Objective(
      semantics=r.semantics if replay_rows else "none", batch_shards=batch_shards,
      target_rows_per_shard=(batch_size - replay_rows - copy_rows) // batch_shards,
      replay_rows_per_shard=replay_rows // batch_shards, replay_loss=r.loss, coeff=float(r.coeff),
      example_rows=example_rows, samples_on_the_fly=r.kind == "self" and not r.samples, dropout=dropout,
      copy_rows_per_shard=copy_rows // batch_shards, copy_weight=float(copy_weight))
