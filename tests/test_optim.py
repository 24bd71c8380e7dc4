import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cpt_jax import build, optim, sharding
from cpt_jax import config as config_lib
from cpt_jax import model as model_lib
from cpt_jax.config import default_config

WSD_DECAY_TOKENS = 400_000


def test_halflife_in_tokens_is_independent_of_batch_size():
  halflife = 10_000_000
  for tokens_per_step in (256 * 512, 4 * 256 * 512):
    beta = optim.beta_from_halflife(tokens_per_step, halflife)
    # after `halflife` tokens the EMA weight of a past gradient has fallen to exactly 1/2
    assert beta ** (halflife / tokens_per_step) == pytest.approx(0.5, rel=1e-9)
    assert optim.halflife_from_beta(tokens_per_step, beta) == pytest.approx(halflife, rel=1e-9)
  b_small = optim.beta_from_halflife(1000, halflife)
  b_large = optim.beta_from_halflife(4000, halflife)
  assert b_large == pytest.approx(b_small ** 4, rel=1e-12)
  assert b_large < b_small


def test_resolve_betas_prefers_halflives():
  opt = default_config().opt
  assert optim.resolve_betas(opt, 4096) == (opt.b1, opt.b2)
  opt.b2_halflife_tokens = 4096.0
  opt.b1_halflife_tokens = 2048.0
  b1, b2 = optim.resolve_betas(opt, 4096)
  assert b2 == pytest.approx(0.5) and b1 == pytest.approx(0.25)


def _run(schedule: str, warmup_tokens: int, total_tokens: int | None = None):
  """The default config with one schedule, and its step count computed the way loop.run does."""
  cfg = default_config()
  cfg.opt.schedule, cfg.opt.warmup_tokens = schedule, warmup_tokens
  if schedule == "wsd":
    cfg.opt.decay_tokens = WSD_DECAY_TOKENS
  if total_tokens is not None:
    cfg.train.total_tokens = total_tokens
  config_lib.validate(cfg, 1)
  tokens_per_step = build.tokens_per_step(cfg)
  total_steps = max(1, math.ceil(build.token_budget(cfg, num_params=0) / tokens_per_step))
  warmup = round(warmup_tokens / tokens_per_step)
  return cfg, tokens_per_step, total_steps, warmup


def _final_lr(opt) -> float:
  return opt.lr if opt.schedule == "constant" else opt.lr * opt.min_lr_ratio


# default: 489 steps of 4096 tokens, 49 of warmup; 300k tokens: 74 steps, where the WSD decay covers all after warmup
RUNS = [(s, w, t) for s in ("cosine", "wsd", "constant") for w in (0, 200_000) for t in (None, 300_000)]


@pytest.mark.parametrize("schedule,warmup_tokens,total_tokens", RUNS)
def test_last_trained_step_is_at_the_final_lr(schedule, warmup_tokens, total_tokens):
  cfg, tokens_per_step, total_steps, warmup = _run(schedule, warmup_tokens, total_tokens)
  assert total_steps > warmup + 1  # the cases with warmup ≥ the run are in test_schedule_edge_cases
  fn = optim.lr_schedule(cfg.opt, tokens_per_step, total_steps)
  lrs_S = np.asarray(fn(jnp.arange(total_steps)))
  assert lrs_S.dtype == np.float32 and np.all(np.isfinite(lrs_S)) and np.all(lrs_S > 0)
  peak, final = cfg.opt.lr, _final_lr(cfg.opt)
  assert lrs_S[-1] == pytest.approx(final, rel=1e-6)
  assert float(jax.jit(fn)(total_steps - 1)) == pytest.approx(final, rel=1e-6)
  if schedule != "constant":
    assert lrs_S[-2] > final * (1 + 1e-6)  # the floor is reached on the last step, not before
  if warmup:
    assert lrs_S[0] == pytest.approx(peak / warmup, rel=1e-6) and lrs_S[0] > 0
    assert lrs_S[warmup - 1] == pytest.approx(peak, rel=1e-6)
    assert np.all(np.diff(lrs_S[:warmup]) > 0)
  elif schedule != "wsd":  # (a WSD decay may cover every step)
    assert lrs_S[0] == pytest.approx(peak, rel=1e-6)
  if schedule == "cosine":
    assert lrs_S[warmup] == pytest.approx(peak, rel=1e-6)
  after_S = lrs_S[max(warmup - 1, 0):]
  assert np.all(np.diff(after_S) <= 1e-7 * peak)
  assert float(fn(total_steps)) == pytest.approx(final, rel=1e-6)  # past the end: stays


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_schedule_values(schedule):
  opt = default_config().opt
  opt.schedule, opt.lr, opt.warmup_tokens, opt.decay_tokens, opt.min_lr_ratio = schedule, 1.0, 1000, 2000, 0.1
  fn = optim.lr_schedule(opt, tokens_per_step=100, total_steps=100)  # 10 warmup steps, WSD: 20 decay steps
  assert float(fn(0)) == pytest.approx(0.1) and float(fn(9)) == pytest.approx(1.0)
  if schedule == "constant":
    assert float(fn(10)) == pytest.approx(1.0) and float(fn(99)) == pytest.approx(1.0)
  if schedule == "cosine":
    assert float(fn(10)) == pytest.approx(1.0) and float(fn(99)) == pytest.approx(0.1)
    s = 40  # 30 of the 89 cosine intervals
    assert float(fn(s)) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 30 / 89)), rel=1e-6)
  if schedule == "wsd":  # flat through step 79, then 20 steps down to 0.1 on step 99
    assert float(fn(79)) == pytest.approx(1.0)
    assert float(fn(80)) == pytest.approx(0.1 + 0.9 * 19 / 20)
    assert float(fn(89)) == pytest.approx(0.55)
    assert float(fn(99)) == pytest.approx(0.1)


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
@pytest.mark.parametrize("total_steps,warmup_steps,decay_steps", [
    (1, 0, 5), (1, 3, 5), (5, 10, 2), (5, 5, 1), (20, 5, 1000), (20, 0, 1000), (2, 1, 1)])
def test_schedule_edge_cases(schedule, total_steps, warmup_steps, decay_steps):
  opt = default_config().opt
  opt.schedule, opt.lr, opt.min_lr_ratio = schedule, 1.0, 0.1
  opt.warmup_tokens, opt.decay_tokens = warmup_steps * 10, decay_steps * 10
  fn = optim.lr_schedule(opt, tokens_per_step=10, total_steps=total_steps)
  lrs_S = np.asarray(fn(jnp.arange(total_steps)))
  assert np.all(np.isfinite(lrs_S)) and np.all(lrs_S > 0)
  assert lrs_S[-1] == pytest.approx(1.0 if schedule == "constant" else 0.1, rel=1e-6)
  assert np.all(lrs_S <= 1.0 + 1e-6)


def test_wsd_with_zero_decay_is_a_config_error():
  cfg = default_config()
  cfg.opt.schedule, cfg.opt.decay_tokens = "wsd", 0
  with pytest.raises(config_lib.ConfigError, match=r"opt\.decay_tokens=0.*wsd.*decay length > 0"):
    config_lib.validate(cfg, 1)
  cfg.opt.decay_tokens = 1
  config_lib.validate(cfg, 1)


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_real_optimizer_applies_the_schedule_on_every_trained_step(schedule):
  cfg, tokens_per_step, total_steps, warmup = _run(schedule, 200_000, 300_000)
  cfg.opt.weight_decay = 0.0
  tx = optim.make_optimizer(cfg.opt, tokens_per_step, total_steps)
  params = {"w_in": jnp.zeros((2, 2))}
  grads = {"w_in": jnp.ones((2, 2))}

  def body(carry, _):  # a constant gradient makes every Adam step lr·g/(|g|+eps), i.e. lr here
    params, state = carry
    updates, state = tx.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), -updates["w_in"][0, 0]

  _, applied_S = jax.lax.scan(body, (params, tx.init(params)), None, length=total_steps)
  applied_S = np.asarray(applied_S)
  expected_S = np.asarray(optim.lr_schedule(cfg.opt, tokens_per_step, total_steps)(jnp.arange(total_steps)))
  np.testing.assert_allclose(applied_S, expected_S, rtol=1e-5)
  assert applied_S[0] == pytest.approx(cfg.opt.lr / warmup, rel=1e-5)
  assert applied_S[-1] == pytest.approx(_final_lr(cfg.opt), rel=1e-5)


def test_optimizer_clips_and_decays():
  opt = default_config().opt
  opt.clip_norm, opt.weight_decay, opt.warmup_tokens, opt.schedule = 1.0, 0.5, 0, "constant"
  tx = optim.make_optimizer(opt, 10, 10)
  params = {"w_in": jnp.ones((2, 2)), "b_qkv": jnp.ones((3, 2, 2))}
  state = tx.init(params)
  grads = {"w_in": jnp.full((2, 2), 1e6), "b_qkv": jnp.zeros((3, 2, 2))}
  updates, _ = tx.update(grads, state, params)
  # first Adam step is lr·sign(g) (bias-corrected) plus decoupled decay lr·wd·w; a bias only gets its step (0)
  np.testing.assert_allclose(updates["w_in"], -opt.lr * (1.0 + 0.5), rtol=1e-4)
  np.testing.assert_array_equal(updates["b_qkv"], 0.0)


def _model_params(tie_embeddings: bool):
  model_cfg = model_lib.ModelConfig.from_config(default_config().model, vocab_size=64)
  model_cfg = dataclasses.replace(model_cfg, tie_embeddings=tie_embeddings)
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  return model_cfg, build.model_bundle(model_cfg, mesh).abstract_params


@pytest.mark.parametrize("tie_embeddings", [True, False])
@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_weight_decay_mask_decays_exactly_the_weight_matrices(tie_embeddings, decay_embeddings):
  model_cfg, params = _model_params(tie_embeddings)
  mask = optim.weight_decay_mask(params, decay_embeddings)
  decayed = {jax.tree_util.keystr(p) for p, m in jax.tree_util.tree_leaves_with_path(mask) if m}
  expected = {f"['blocks'][{i}]['{m}']['{w}']" for i in range(model_cfg.num_layers)
              for m, w in (("attn", "w_qkv"), ("attn", "w_out"), ("mlp", "w_in"), ("mlp", "w_out"))}
  if decay_embeddings:
    expected |= {"['wte']", "['wpe']"} | (set() if tie_embeddings else {"['w_head']"})
  assert decayed == expected
  assert params["blocks"][0]["attn"]["b_qkv"].ndim == 3  # a 3-D bias: why the mask goes by name, not ndim
  # the real optimizer accepts the real tree
  opt = default_config().opt
  opt.decay_embeddings = decay_embeddings
  jax.eval_shape(optim.make_optimizer(opt, 4096, 10).init, params)


def test_unknown_parameter_name_is_an_error():
  params = {"blocks": {0: {"mlp": {"w_in": jnp.ones((2, 2)), "w_gate": jnp.ones((2, 2))}}}}
  with pytest.raises(ValueError, match=r"\['blocks'\]\[0\]\['mlp'\]\['w_gate'\].*PARAM_ROLES"):
    optim.weight_decay_mask(params, decay_embeddings=False)
  with pytest.raises(ValueError, match="w_gate"):
    optim.make_optimizer(default_config().opt, 4096, 10).init(params)
