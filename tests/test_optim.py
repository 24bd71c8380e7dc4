import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cpt_jax import optim
from cpt_jax.config import default_config


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


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_schedules(schedule):
  opt = default_config().opt
  opt.schedule, opt.lr, opt.warmup_tokens, opt.decay_tokens, opt.min_lr_ratio = schedule, 1.0, 1000, 2000, 0.1
  fn = optim.lr_schedule(opt, tokens_per_step=100, total_steps=100)
  assert float(fn(0)) == 0.0
  assert float(fn(10)) == pytest.approx(1.0)
  end = float(fn(100))
  if schedule == "constant":
    assert end == pytest.approx(1.0)
  else:
    assert end == pytest.approx(0.1, abs=1e-6)
  if schedule == "wsd":  # flat until the last 20 steps, then linear
    assert float(fn(79)) == pytest.approx(1.0) and float(fn(90)) == pytest.approx(0.55, abs=1e-6)
  if schedule == "cosine":
    assert float(fn(55)) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-6)


def test_weight_decay_mask_skips_biases_norms_and_embeddings():
  params = {"wte": jnp.ones((4, 2)), "blocks": {0: {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}}}
  mask = optim.weight_decay_mask(params, decay_embeddings=False)
  assert mask == {"wte": False, "blocks": {0: {"w": True, "b": False}}}
  assert optim.weight_decay_mask(params, decay_embeddings=True)["wte"] is True


def test_optimizer_clips_and_decays():
  opt = default_config().opt
  opt.clip_norm, opt.weight_decay, opt.warmup_tokens, opt.schedule = 1.0, 0.5, 0, "constant"
  tx = optim.make_optimizer(opt, 10, 10)
  params = {"w": jnp.ones((2, 2))}
  state = tx.init(params)
  updates, _ = tx.update({"w": jnp.full((2, 2), 1e6)}, state, params)
  # first Adam step is lr·sign(g) (bias-corrected) plus decoupled decay lr·wd·w
  np.testing.assert_allclose(updates["w"], -opt.lr * (1.0 + 0.5), rtol=1e-4)
