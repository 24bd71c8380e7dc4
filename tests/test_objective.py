"""The objective: what a replay ratio means (mixture vs regularizer), realized ratios, the replay-loss
registry, skipped steps, throughput accounting, and the batch keys packed task data trains with."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cpt_jax import build, config as config_lib, losses, metrics, model as model_lib, objective as objective_lib
from cpt_jax import optim, sharding, step as step_lib
from cpt_jax.objective import Objective

V, T, SHARDS, TARGET_ROWS, REPLAY_ROWS = 64, 8, 2, 3, 1  # batch: [t t t r | t t t r]


@pytest.fixture(scope="module")
def tiny_model():
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  cfg = model_lib.ModelConfig(vocab_size=V, max_len=T, num_layers=2, d_model=16, num_heads=2)
  bundle, params = build.build_model(cfg, mesh, seed=0)
  teacher = jax.tree.map(lambda x: x + 0.05 * jnp.sin(jnp.arange(x.size, dtype=jnp.float32)).reshape(x.shape), params)
  return bundle, params, teacher


def _batch():
  """Rows with unequal loss-token counts (answer-only task rows, full text rows)."""
  rng = np.random.default_rng(0)
  rows = SHARDS * (TARGET_ROWS + REPLAY_ROWS)
  tokens = rng.integers(0, V, (rows, T + 1), dtype=np.int32)
  mask = np.zeros((rows, T), np.float32)
  for i in range(rows):
    mask[i, rng.integers(0, T // 2):] = 1.0 if (i % 4) == 3 else 0.0  # replay rows: many tokens
    mask[i, -1 - (i % 3):] = 1.0  # target rows: 1–3 answer tokens
  return {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:]), "loss_mask": jnp.asarray(mask)}


def _objective(semantics, loss="ntp", coeff=1.0):
  return Objective(semantics, batch_shards=SHARDS, target_rows_per_shard=TARGET_ROWS,
                   replay_rows_per_shard=REPLAY_ROWS, replay_loss=loss, coeff=coeff)


def _reference_terms(bundle, params, teacher, batch):
  """Per-token next-token loss and KL from explicit logits and plain autodiff (no fused head)."""
  def per_token(p):
    model = nnx.merge(bundle.graphdef, p)
    h, _ = model.hidden(batch["inputs"])
    return model.logits(h)
  logits_s = per_token(params)
  nll = losses.token_nll(logits_s, batch["targets"])
  kl = losses.token_kl(jax.lax.stop_gradient(per_token(teacher)), logits_s)
  return nll, kl


def _is_replay_row():
  per_shard = TARGET_ROWS + REPLAY_ROWS
  return np.array([(i % per_shard) >= TARGET_ROWS for i in range(SHARDS * per_shard)])


def _grads(fn, params):
  return jax.grad(fn)(params)


def _assert_trees_close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-4, atol=1e-6)


def test_mixture_gradient_is_one_token_mean_over_the_mixed_batch(tiny_model):
  bundle, params, teacher = tiny_model
  batch = _batch()
  loss_fn = step_lib.make_loss_fn(bundle.graphdef, _objective("mixture"))
  mask = batch["loss_mask"]

  def reference(p):
    nll, _ = _reference_terms(bundle, p, teacher, batch)
    return jnp.sum(nll * mask) / jnp.sum(mask)

  value, metrics_ = loss_fn(params, batch, None, None)
  assert float(value) == pytest.approx(float(reference(params)), rel=1e-5)
  _assert_trees_close(_grads(lambda p: loss_fn(p, batch, None, None)[0], params), _grads(reference, params))
  replay = _is_replay_row()
  share = float(np.asarray(mask)[replay].sum() / np.asarray(mask).sum())
  assert float(metrics_["replay_token_share"]) == pytest.approx(share) and share > 0.4  # ≫ the 1/4 of rows
  assert float(metrics_["scored_tokens"]) == float(np.asarray(mask).sum())


@pytest.mark.parametrize("loss,coeff", [("ntp", 0.7), ("kl", 3.0)])
def test_regularizer_gradient_is_target_mean_plus_lambda_replay_mean(tiny_model, loss, coeff):
  bundle, params, teacher = tiny_model
  batch = _batch()
  loss_fn = step_lib.make_loss_fn(bundle.graphdef, _objective("regularizer", loss, coeff))
  replay = jnp.asarray(_is_replay_row())[:, None]
  mask = batch["loss_mask"]
  mask_t, mask_r = mask * ~replay, mask * replay

  def target_mean(p):
    nll, _ = _reference_terms(bundle, p, teacher, batch)
    return jnp.sum(nll * mask_t) / jnp.sum(mask_t)

  def replay_mean(p):
    nll, kl = _reference_terms(bundle, p, teacher, batch)
    return jnp.sum((kl if loss == "kl" else nll) * mask_r) / jnp.sum(mask_r)

  want = jax.tree.map(lambda a, b: a + coeff * b, _grads(target_mean, params), _grads(replay_mean, params))
  _assert_trees_close(_grads(lambda p: loss_fn(p, batch, teacher, None)[0], params), want)
  value, m = loss_fn(params, batch, teacher, None)
  assert float(value) == pytest.approx(float(target_mean(params) + coeff * replay_mean(params)), rel=1e-5)
  assert float(m["target_loss"]) == pytest.approx(float(target_mean(params)), rel=1e-5)


@pytest.mark.parametrize("semantics", ["none", "regularizer"])
def test_copy_rows_add_their_own_mean_whatever_their_token_share(tiny_model, semantics):
  """Copy rows (the last row of each shard here) enter as copy_weight × their own token-mean, on top of the
  objective of the other rows, which is what it would be without them."""
  bundle, params, teacher = tiny_model
  batch = _batch()
  weight = 0.6
  replay_rows = 0 if semantics == "none" else 1  # per shard: [t t t c] or [t t r c]
  obj = Objective(semantics, batch_shards=SHARDS, target_rows_per_shard=TARGET_ROWS - replay_rows,
                  replay_rows_per_shard=replay_rows, copy_rows_per_shard=1, copy_weight=weight)
  per_shard = TARGET_ROWS + REPLAY_ROWS
  copy_row = jnp.asarray([(i % per_shard) == per_shard - 1 for i in range(SHARDS * per_shard)])[:, None]
  mask = batch["loss_mask"]
  loss_fn = step_lib.make_loss_fn(bundle.graphdef, obj)
  without_copy = {k: v[~np.asarray(copy_row[:, 0])] for k, v in batch.items()}
  main_obj = Objective(semantics, batch_shards=SHARDS, target_rows_per_shard=obj.target_rows_per_shard,
                       replay_rows_per_shard=replay_rows)

  def reference(p):
    nll, _ = _reference_terms(bundle, p, teacher, batch)
    copy_mean = jnp.sum(nll * mask * copy_row) / jnp.sum(mask * copy_row)
    return step_lib.make_loss_fn(bundle.graphdef, main_obj)(p, without_copy, teacher, None)[0] + weight * copy_mean

  value, m = loss_fn(params, batch, teacher, None)
  assert float(value) == pytest.approx(float(reference(params)), rel=1e-5)
  _assert_trees_close(_grads(lambda p: loss_fn(p, batch, teacher, None)[0], params), _grads(reference, params))
  assert float(m["copy_loss"]) > 0 and float(m["scored_tokens"]) == float(np.asarray(mask * ~copy_row).sum())


def test_copy_share_is_realized_in_whole_rows_per_shard():
  cfg = config_lib.default_config()
  obj = objective_lib.resolve(cfg.replay, "pretrain", 16, 2, copy_share=0.5, copy_weight=2.0)
  assert (obj.target_rows_per_shard, obj.copy_rows_per_shard, obj.copy_weight, obj.rows) == (4, 4, 2.0, 16)
  with pytest.raises(objective_lib.ObjectiveError, match=r"data.copy_share=0.3.*copy rows"):
    objective_lib.resolve(cfg.replay, "pretrain", 16, 2, copy_share=0.3)
  with pytest.raises(objective_lib.ObjectiveError, match="data.copy_weight"):
    objective_lib.resolve(cfg.replay, "pretrain", 16, 2, copy_share=0.5, copy_weight=-1.0)


def test_a_registered_replay_loss_trains_a_step(tiny_model, monkeypatch):
  """Adding a replay loss is one registry entry: validation, step and teacher follow it."""
  bundle, params, teacher = tiny_model
  calls = []

  def reverse_kl(h, w, targets, teacher_logits, vocab):  # KL(student‖teacher), mode-seeking
    calls.append(teacher_logits is not None)
    logp_s = jax.nn.log_softmax(losses.mask_padded_logits(h @ w.T, vocab), axis=-1)
    logp_t = jax.nn.log_softmax(teacher_logits, axis=-1)
    return jnp.sum(jnp.exp(logp_s) * (logp_s - logp_t), -1), losses.head_nll(h, w, targets)

  monkeypatch.setitem(objective_lib.REPLAY_LOSSES, "reverse_kl",
                      objective_lib.ReplayLoss(reverse_kl, needs_teacher=True, is_likelihood=False))
  cfg = config_lib.default_config()
  cfg.stage, cfg.data.batch_size = "adapt", 8
  cfg.replay.update(ratio=0.25, kind="real", loss="reverse_kl", semantics="regularizer", coeff=2.0)
  obj = objective_lib.resolve(cfg.replay, "adapt", 8, SHARDS)
  assert obj.teacher_in_step and obj.replay_rows_per_shard == REPLAY_ROWS
  cfg.replay.semantics = "mixture"
  with pytest.raises(objective_lib.ObjectiveError, match="replay.loss='reverse_kl'.*regularizer"):
    objective_lib.resolve(cfg.replay, "adapt", 8, SHARDS)
  tx = optim.make_optimizer(cfg.opt, 8 * T, 4)
  _, shardings = build.state_shardings(bundle, tx, sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}))
  state = jax.jit(lambda p: step_lib.init_state(p, tx), out_shardings=shardings)(jax.tree.map(jnp.copy, params))
  fn = step_lib.make_train_step(bundle.graphdef, tx, obj, optim.lr_schedule(cfg.opt, 8 * T, 4), shardings)
  state, m = fn(state, _batch(), teacher, jax.random.key(0))
  assert calls == [True] and int(state["step"]) == 1
  assert float(m["reverse_kl"]) > 0 and float(m["loss"]) == pytest.approx(
      float(m["target_loss"]) + 2.0 * float(m["reverse_kl"]), rel=1e-5)


@pytest.mark.parametrize("batch_size,ratio,shards,rows", [(32, 0.25, 1, 8), (32, 0.3125, 1, 10), (16, 0.5, 4, 8),
                                                          (32, 0.0, 1, 0)])
def test_realizable_ratios(batch_size, ratio, shards, rows):
  assert objective_lib.replay_rows_for(batch_size, ratio, shards) == rows


@pytest.mark.parametrize("batch_size,ratio,shards,nearest", [
    (32, 0.3, 1, ["0.28125 (9 rows)", "0.3125 (10 rows)"]),
    (8, 0.25, 4, ["0.5 (4 rows)"]),
    (32, 0.03, 1, ["0.03125 (1 rows)"]),
])
def test_unrealizable_ratio_names_the_nearest(batch_size, ratio, shards, nearest):
  with pytest.raises(objective_lib.ObjectiveError) as e:
    objective_lib.replay_rows_for(batch_size, ratio, shards)
  assert "replay.ratio" in str(e.value) and all(n in str(e.value) for n in nearest), str(e.value)


def test_kl_under_the_mixture_and_coeff_under_the_mixture_are_refused():
  cfg = config_lib.default_config()
  cfg.stage, cfg.init_from, cfg.data.target.kind = "adapt", "/", "babi"
  cfg.replay.update(ratio=0.25, kind="self", loss="kl")
  with pytest.raises(config_lib.ConfigError, match="replay.semantics=regularizer"):
    config_lib.validate(cfg, 1)
  cfg.replay.update(loss="ntp", coeff=3.0)
  with pytest.raises(config_lib.ConfigError, match="replay.coeff"):
    config_lib.validate(cfg, 1)
  cfg.replay.update(semantics="regularizer")
  config_lib.validate(cfg, 1)


def test_a_skipped_step_keeps_step_optimizer_count_and_lr_together(tiny_model):
  bundle, params, _ = tiny_model
  opt_cfg = config_lib.default_config().opt
  opt_cfg.update(warmup_tokens=2 * 8 * T, schedule="cosine")
  total = 6
  tx, schedule = optim.make_optimizer(opt_cfg, 8 * T, total), optim.lr_schedule(opt_cfg, 8 * T, total)
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  _, shardings = build.state_shardings(bundle, tx, mesh)
  state = jax.jit(lambda p: step_lib.init_state(p, tx), out_shardings=shardings)(jax.tree.map(jnp.copy, params))
  fn = step_lib.make_train_step(bundle.graphdef, tx, Objective("none", 1, 8), schedule, shardings)
  good = _batch()
  bad = {**good, "loss_mask": good["loss_mask"] * jnp.nan}
  for i, batch in enumerate([good, bad, good, bad, good]):
    before = jax.tree.map(np.asarray, state["params"])
    state, m = fn(state, batch, None, jax.random.key(0))
    assert int(m["nonfinite"]) == (i % 2)
    assert step_lib.optimizer_counts(state["opt_state"]) and set(step_lib.optimizer_counts(state["opt_state"])) == {
        int(state["step"])}
    assert float(m["lr"]) == pytest.approx(float(schedule(i)))  # the LR this step applied, by the same clock
    if i % 2:
      _assert_trees_close(state["params"], before)  # a skipped step changes no parameter


def test_flops_per_step_counts_the_teachers_forward_on_replay_rows():
  cfg = model_lib.ModelConfig(vocab_size=V, max_len=T, num_layers=2, d_model=16, num_heads=2)
  per_token = model_lib.flops_per_token(cfg, T)
  plain = metrics.flops_per_step(cfg, T, rows=8)
  assert plain == pytest.approx(8 * T * per_token)
  assert metrics.flops_per_step(cfg, T, rows=8, teacher_rows=2) == pytest.approx(plain + 2 * T * per_token / 3)


def test_mesh_uses_the_topology_aware_constructor(monkeypatch):
  seen = []
  real = sharding.mesh_utils.create_device_mesh

  def spy(shape, devices, **kw):
    seen.append(tuple(shape))
    return real(shape, devices, **kw)

  monkeypatch.setattr(sharding.mesh_utils, "create_device_mesh", spy)
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  assert seen == [(jax.device_count(), 1, 1)] and mesh.axis_names == sharding.MESH_AXES


def test_packed_jsonl_examples_train_with_the_masks_evaluation_uses(tiny_config_factory, pretrained, tmp_path):
  """Prompt/completion targets from JSONL (not only bAbI) train with positions and per-example attention: on
  the same split and seed, the first training batch is exactly the evaluation rows, masks included."""
  rng = np.random.default_rng(0)
  lines = [json.dumps({"prompt": f"{int(a)} and {int(b)}?",
                       "completion": f" {int(a + b)}"}) for a, b in rng.integers(1, 9, (40, 2))]
  (tmp_path / "validation.jsonl").write_text("\n".join(lines))
  cfg = tiny_config_factory(**{"stage": "adapt", "init_from": str(pretrained[0]), "data.target.kind": "files",
                               "data.target.path": str(tmp_path / "{split}.jsonl"), "data.target.train_split":
                               "validation", "data.batch_size": 4, "train.eval_rows": 4, "seed": 0})
  (tmp_path / "w").mkdir()
  tokenizer = build.resolve_tokenizer(cfg, str(tmp_path / "w"), tmp_path)
  mesh = sharding.make_mesh(cfg.mesh)
  train_src = build.train_source(cfg, tmp_path)
  obj = build.resolve_objective(cfg, mesh, train_src)
  assert obj.example_rows and obj.batch_keys == objective_lib.EXAMPLE_KEYS
  train = next(build.make_loader(cfg, tokenizer, mesh, train_src, obj))
  evals, _ = build.eval_sets(cfg, tokenizer, tmp_path)
  assert set(train) == set(evals["target"]) == set(objective_lib.EXAMPLE_KEYS)
  assert train["segment_ids"].max() >= 2  # several examples share a row
  for k in objective_lib.EXAMPLE_KEYS:
    np.testing.assert_array_equal(train[k], evals["target"][k])
  L = cfg.model.max_len
  mask_train = model_lib._attention_mask(L, jnp.asarray(train["segment_ids"]), None)
  mask_eval = model_lib._attention_mask(L, jnp.asarray(evals["target"]["segment_ids"]), None)
  assert mask_train is not None and bool(jnp.all(mask_train == mask_eval))
  assert not bool(jnp.all(mask_train[:, :, :, :] == jnp.tril(jnp.ones((L, L), bool))))  # not plain causal
