import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cpt_jax import build, losses, model as model_lib, ops, param_layout, sampling, sharding


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



def _logits_and_grads(graphdef, params, tokens):
  """Jitted: logits and the gradient of a scalar of them (every parameter gets one)."""
  def f(p):
    logits = nnx.merge(graphdef, p)(tokens)
    return jnp.mean(jax.nn.logsumexp(logits, -1)), logits
  (_, logits), grads = jax.jit(jax.value_and_grad(f, has_aux=True))(params)
  return logits, grads


def _assert_trees_close(a, b, atol):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol), a, b)


def test_scan_layout_is_the_loop_layout_stacked_under_every_remat_policy():
  """Same seed, same numbers: the scan layout's parameters are the loop layout's stacked; logits, gradients and
  the KV cache agree, with remat full (scan) and dots_saveable (loop) against none (loop)."""
  _, loop = _model(num_layers=3)
  cfg_scan, scan = _model(num_layers=3, scan_layers=True, remat="full")
  loop_params, scan_params = (nnx.to_pure_dict(nnx.state(m)) for m in (loop, scan))
  assert set(loop_params) - {"blocks"} == set(scan_params) - {"layers"}
  _assert_trees_close(param_layout.convert_layout(loop_params, True), scan_params, 0)
  _assert_trees_close(param_layout.convert_layout(scan_params, False), loop_params, 0)
  tokens = jax.random.randint(jax.random.key(0), (2, 20), 0, cfg_scan.vocab_size)
  full, loop_grads = _logits_and_grads(nnx.graphdef(loop), loop_params, tokens)
  for graphdef, params, layout in ((nnx.graphdef(scan), scan_params, True),
                                   (nnx.graphdef(_model(num_layers=3, remat="dots_saveable")[1]), loop_params, False)):
    logits, grads = _logits_and_grads(graphdef, params, tokens)
    np.testing.assert_allclose(logits, full, atol=2e-5)
    _assert_trees_close(param_layout.convert_layout(grads, False), loop_grads, 2e-6)
    assert param_layout.layout_of(grads) == ("scan" if layout else "loop")

  @jax.jit
  def decode_in_two_chunks(p):
    model = nnx.merge(nnx.graphdef(scan), p)
    cache = model_lib.KVCache.zeros(cfg_scan, 2, 8)
    first, cache = model(tokens[:, :8], cache=cache)
    rest, cache = model(tokens[:, 8:], cache=cache.grow(20))
    return jnp.concatenate([first, rest], 1), [k.shape for k in cache.k]

  decoded, k_shapes = decode_in_two_chunks(scan_params)
  assert k_shapes == [(2, 4, 20, 8)] * 3  # one buffer per layer in either layout (decoding runs layer by layer)
  np.testing.assert_allclose(decoded, full, atol=2e-5)


def test_remat_accepts_the_older_booleans():
  assert model_lib.ModelConfig(vocab_size=8, remat=True).remat == "full"
  assert model_lib.ModelConfig(vocab_size=8, remat="false").remat == "none"
  with pytest.raises(ValueError, match="remat='some'"):
    model_lib.ModelConfig(vocab_size=8, remat="some")


def test_padded_vocabulary_never_reaches_loss_sampling_or_export():
  """vocab 97 padded to 128: the padding rows start at zero, their logits are the lowest f32, the loss and its
  gradient equal the unpadded model's, and exporting drops them."""
  cfg, m = _model(vocab_multiple=64, tie_embeddings=False)
  assert cfg.padded_vocab == 128 and model_lib.total_params(cfg) == model_lib.count_params(
      nnx.to_pure_dict(nnx.state(m))) - 31 * 32 * 2
  params = nnx.to_pure_dict(nnx.state(m))
  assert not np.any(params["wte"][97:]) and not np.any(params["w_head"][:, 97:])
  params["wte"] = params["wte"].at[97:].set(5.0)  # padding rows holding anything: still invisible
  params["w_head"] = params["w_head"].at[:, 97:].set(5.0)
  cfg_plain, plain = _model(tie_embeddings=False)
  graphdef, graphdef_plain = nnx.graphdef(m), nnx.graphdef(plain)
  tokens = jax.random.randint(jax.random.key(3), (2, 12), 0, 97)

  def loss(p, gd, vocab):
    model = nnx.merge(gd, p)
    h, _ = model.hidden(tokens[:, :-1])
    return jnp.mean(losses.head_nll(h, model.head_weight(), tokens[:, 1:], vocab)), model.logits(h)

  (l_pad, logits_pad), g_pad = jax.jit(jax.value_and_grad(lambda p: loss(p, graphdef, 97), has_aux=True))(params)
  exported = model_lib.unpadded(params, cfg)
  (l_plain, logits_plain), g_plain = jax.jit(jax.value_and_grad(
      lambda p: loss(p, graphdef_plain, 97), has_aux=True))(exported)
  np.testing.assert_allclose(l_pad, l_plain, rtol=1e-6)
  np.testing.assert_allclose(logits_pad[..., :97], logits_plain, atol=1e-5)
  assert np.all(logits_pad[..., 97:] == np.finfo(np.float32).min)
  assert not np.any(g_pad["wte"][97:]) and not np.any(g_pad["w_head"][:, 97:])
  _assert_trees_close(model_lib.unpadded(g_pad, cfg), g_plain, 1e-6)
  # a flat distribution over the real vocabulary: 1,000 draws never give a padding id
  flat = jax.tree.map(jnp.zeros_like, params)
  sample = sampling.make_sampler(graphdef, cfg, batch=100, length=10)
  assert int(jnp.max(sample(flat, jax.random.key(0)))) < 97


@pytest.mark.parametrize("length,packed", [(24, False), (24, True), (22, False)])
def test_blocked_causal_attention_is_dense_attention_in_value_and_gradient(length, packed):
  """Skipping the masked score blocks changes no number: same outputs and q/k/v gradients as XLA's dense
  attention, with plain causal masking, with packed-example masks, and for a length 4 blocks do not divide."""
  q, k, v = (jax.random.normal(jax.random.key(i), (2, length, 3, 8)) for i in range(3))
  segments = jnp.array([[0] * 5 + [1] * (length - 5), [0] * (length - 9) + [1] * 9]) if packed else None
  mask = model_lib._attention_mask(length, segments, None)
  dense = lambda q, k, v: (jax.nn.dot_product_attention(q, k, v, is_causal=True) if mask is None else
                           jax.nn.dot_product_attention(q, k, v, mask=mask))
  blocked = lambda q, k, v: ops.blocked_causal_attention(q, k, v, mask, blocks=4)
  weights = jax.random.normal(jax.random.key(9), q.shape)
  for fn in (dense, blocked):
    out = jax.jit(fn)(q, k, v)
    grads = jax.jit(jax.grad(lambda q, k, v, fn=fn: jnp.sum(fn(q, k, v) * weights), argnums=(0, 1, 2)))(q, k, v)
    if fn is dense:
      want_out, want_grads = out, grads
  np.testing.assert_allclose(out, want_out, atol=2e-6)
  for g, want in zip(grads, want_grads):
    np.testing.assert_allclose(g, want, atol=2e-5)


def test_attention_implementation_per_platform():
  assert ops.attention_implementation("auto", "float32", 64, "cpu") == "blocked"
  assert ops.attention_implementation("auto", "float32", 64, "tpu") == "xla"
  assert ops.attention_implementation("auto", "bfloat16", 64, "gpu") == "cudnn"
  assert ops.attention_implementation("auto", "float32", 64, "gpu") == "xla"
  assert ops.attention_implementation("xla", "float32", 64, "cpu") == "xla"
  with pytest.raises(ValueError, match="cudnn"):
    ops.attention_implementation("cudnn", "float32", 64, "cpu")


@pytest.mark.parametrize("width_in,width_out", [(8, 32), (32, 8)])
def test_dense_gradients_are_autodiffs_whichever_side_is_transposed(width_in, width_out):
  x = jax.random.normal(jax.random.key(0), (40, width_in))
  w = jax.random.normal(jax.random.key(1), (width_in, width_out))
  weights = jax.random.normal(jax.random.key(2), (40, width_out))
  loss = lambda mm: jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.tanh(mm(x, w)) * weights), argnums=(0, 1)))(x, w)
  for got, want in zip(loss(ops.dense), loss(jnp.matmul)):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_initialiser_compiled_with_less_optimisation_draws_the_default_compiles_values():
  """build_model compiles the initialiser with CPU_INIT_COMPILER_OPTIONS: faster to compile, the same values."""
  cfg = model_lib.ModelConfig(vocab_size=100, max_len=16, num_layers=2, d_model=32, num_heads=4, mlp_ratio=4,
                              vocab_multiple=128)
  bundle, params = build.build_model(cfg, sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}), seed=3)
  default = jax.jit(build.init_params(cfg), out_shardings=bundle.param_shardings)(jax.random.key(3))
  assert jax.tree.structure(params) == jax.tree.structure(default)
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(default)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  assert float(jnp.std(params["wte"])) > 0.01  # random draws, not zeros
