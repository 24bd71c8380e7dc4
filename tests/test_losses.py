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
