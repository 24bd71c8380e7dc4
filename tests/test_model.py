import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cpt_jax import model as model_lib


def run(m, *args, **kwargs):
  """Jitted call: eager NNX dispatches op by op, ~10x slower on CPU."""
  graphdef, state = nnx.split(m)
  return jax.jit(lambda s, a, k: nnx.merge(graphdef, s)(*a, **k))(state, args, kwargs)


def _model(**kw):
  cfg = model_lib.ModelConfig(**{"vocab_size": 97, "max_len": 24, "num_layers": 2, "d_model": 32, "num_heads": 4,
                                 **kw})
  return cfg, model_lib.GPT(cfg, nnx.Rngs(0))


@pytest.mark.parametrize("tie", [True, False])
def test_param_count_is_exact(tie):
  cfg, m = _model(tie_embeddings=tie)
  params = nnx.to_pure_dict(nnx.state(m, nnx.Param))
  counted = model_lib.count_params(params)
  embeddings = cfg.vocab_size * cfg.d_model * (1 if tie else 2) + cfg.max_len * cfg.d_model
  assert counted == model_lib.non_embedding_params(cfg) + embeddings == model_lib.total_params(cfg)


def test_kv_cache_matches_full_forward():
  cfg, m = _model()
  tokens = jax.random.randint(jax.random.key(0), (3, 20), 0, cfg.vocab_size)
  full = run(m, tokens)
  cache = model_lib.KVCache.zeros(cfg, 3)
  outs = []
  for lo, hi in ((0, 7), (7, 8), (8, 20)):
    logits, cache = run(m, tokens[:, lo:hi], cache=cache)
    outs.append(logits)
  np.testing.assert_allclose(np.concatenate(outs, 1), full, atol=2e-5)
  assert int(cache.length) == 20


def test_left_padded_prompts_decode_like_unpadded():
  cfg, m = _model()
  prompt = jax.random.randint(jax.random.key(1), (1, 6), 4, cfg.vocab_size)
  want = run(m, prompt)[:, -1]
  padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), prompt], 1)
  valid = padded != 0
  positions = jnp.maximum(jnp.cumsum(valid, 1) - 1, 0)
  logits, _ = run(m, padded, positions, cache=model_lib.KVCache.zeros(cfg, 1), valid_BxL=valid)
  np.testing.assert_allclose(logits[:, -1], want, atol=2e-5)


def test_segments_do_not_attend_across_examples():
  cfg, m = _model()
  tokens = jax.random.randint(jax.random.key(2), (2, 16), 0, cfg.vocab_size)
  seg = jnp.array([[1] * 9 + [2] * 7] * 2)
  pos = jnp.array([list(range(9)) + list(range(7))] * 2)
  packed = run(m, tokens, pos, seg)
  np.testing.assert_allclose(packed[:, 9:], run(m, tokens[:, 9:]), atol=2e-5)
  np.testing.assert_allclose(packed[:, :9], run(m, tokens[:, :9]), atol=2e-5)


def test_remat_and_bf16_change_nothing_structural():
  cfg, m = _model(remat=True)
  tokens = jnp.ones((2, 8), jnp.int32)
  _, plain = _model()
  np.testing.assert_allclose(run(m, tokens), run(plain, tokens), atol=1e-5)
  cfg16, m16 = _model(compute_dtype="bfloat16")
  out = run(m16, tokens)
  assert out.dtype == jnp.float32  # logits stay f32
  np.testing.assert_allclose(out, run(plain, tokens), atol=0.1)


def test_flops_per_token_accounting():
  cfg, _ = _model()
  want = 6 * (model_lib.non_embedding_params(cfg) + 97 * 32) + 12 * 2 * 24 * 32
  assert model_lib.flops_per_token(cfg, 24) == want
