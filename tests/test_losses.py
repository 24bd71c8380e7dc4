import jax
import jax.numpy as jnp
import numpy as np

from cpt_jax import losses


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_kl_zero_for_identical_logits():
  logits = jax.random.normal(jax.random.key(0), (2, 5, 11)) * 3
  np.testing.assert_allclose(losses.token_kl(logits, logits), 0.0, atol=1e-6)


def test_kl_matches_numpy_reference_and_direction():
  t = np.asarray(jax.random.normal(jax.random.key(1), (3, 4, 7)) * 2, np.float64)
  s = np.asarray(jax.random.normal(jax.random.key(2), (3, 4, 7)) * 2, np.float64)
  lt, ls = _np_log_softmax(t), _np_log_softmax(s)
  want = (np.exp(lt) * (lt - ls)).sum(-1)  # KL(teacher ‖ student)
  got = losses.token_kl(jnp.asarray(t, jnp.float32), jnp.asarray(s, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  reverse = (np.exp(ls) * (ls - lt)).sum(-1)
  assert not np.allclose(got, reverse, rtol=1e-3)


def test_nll_and_masked_mean():
  logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))
  nll = losses.token_nll(logits, jnp.array([[0, 1]]))
  np.testing.assert_allclose(nll, [[np.log(2), -np.log(0.8)]], rtol=1e-6)
  assert float(losses.masked_mean(nll, jnp.array([[0.0, 1.0]]))) == np.float32(-np.log(0.8))


def test_head_nll_matches_autodiff_of_logits_path():
  """Values and both gradients of the fused LM head + NLL equal autodiff through explicit logits,
  under a non-uniform token weighting (the masked mean's cotangent is not all ones)."""
  k = jax.random.split(jax.random.key(3), 4)
  h = jax.random.normal(k[0], (2, 5, 8))
  w = jax.random.normal(k[1], (13, 8)) * 0.5
  targets = jax.random.randint(k[2], (2, 5), 0, 13)
  weights = jax.random.uniform(k[3], (2, 5))

  def reference(h, w):
    return jnp.sum(losses.token_nll(jnp.einsum("bld,vd->blv", h, w), targets) * weights)

  def fused(h, w):
    return jnp.sum(losses.head_nll(h, w, targets) * weights)

  want, want_grads = jax.value_and_grad(reference, argnums=(0, 1))(h, w)
  got, got_grads = jax.jit(jax.value_and_grad(fused, argnums=(0, 1)))(h, w)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, r in zip(got_grads, want_grads):
    assert float(jnp.abs(r).max()) > 1e-3  # the reference gradient is not trivially zero
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)


def test_head_kl_matches_autodiff_of_logits_path():
  """Both outputs of the fused KL head and the gradients of any weighting of them equal autodiff
  through explicit logits; no gradient reaches the teacher's logits."""
  k = jax.random.split(jax.random.key(4), 6)
  h = jax.random.normal(k[0], (2, 5, 8))
  w = jax.random.normal(k[1], (13, 8)) * 0.5
  teacher = jax.random.normal(k[2], (2, 5, 13)) * 2
  targets = jax.random.randint(k[3], (2, 5), 0, 13)
  a, b = jax.random.uniform(k[4], (2, 5)), jax.random.uniform(k[5], (2, 5))

  def reference(h, w, teacher):
    logits = jnp.einsum("bld,vd->blv", h, w)
    return jnp.sum(losses.token_kl(jax.lax.stop_gradient(teacher), logits) * a
                   + losses.token_nll(logits, targets) * b)

  def fused(h, w, teacher):
    kl, nll = losses.head_kl(h, w, jax.lax.stop_gradient(teacher), targets)
    return jnp.sum(kl * a + nll * b)

  want, want_grads = jax.value_and_grad(reference, argnums=(0, 1, 2))(h, w, teacher)
  got, got_grads = jax.jit(jax.value_and_grad(fused, argnums=(0, 1, 2)))(h, w, teacher)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for g, r in zip(got_grads[:2], want_grads[:2]):
    assert float(jnp.abs(r).max()) > 1e-3
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(got_grads[2]).max()) == 0.0
