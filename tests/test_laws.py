import numpy as np
import pytest

from cpt_jax.research import laws, synthetic
from cpt_jax.research.laws import FORMS, Inputs

DCPT = dict(E=1.2, A=0.6, alpha=0.35, B=0.6, beta=0.35, eta=-0.6, C=0.5, gamma=1.0, eps=0.02)


def _inputs(n=30, seed=0):
  rng = np.random.default_rng(seed)
  return Inputs.make(rng.choice([1e7, 1e8, 1e9], n), rng.choice([15, 31, 279], n), rng.uniform(1e7, 1e11, n),
                     rng.choice([0.0, 0.1, 0.5], n), "target_loss")


def test_registry_forms_are_complete():
  for name in laws.ADAPTATION_FORMS + ("pretrain",):
    f = FORMS[name]
    assert f.name == name and f.formula.startswith(("L =", "L0 =")), name
    for k, (lo, hi) in f.bounds.items():
      assert lo < hi, (name, k)


def test_dcpt_matches_hand_formula_and_share_convention():
  N, P, D, r = 2e8, 31, 4e9, 0.25
  for target, s in (("target_loss", 0.75), ("base_loss", 0.25)):
    X = Inputs.make(N, P, D, r, target)
    p = DCPT
    want = (p["E"] + p["A"] / 0.2 ** p["alpha"] + p["B"] * s ** p["eta"] / 4.0 ** p["beta"]
            + p["C"] / (s + p["eps"]) ** p["gamma"])
    np.testing.assert_allclose(FORMS["dcpt"].predict(DCPT, X), [want], rtol=1e-12)
  with pytest.raises(ValueError):
    laws.domain_share(0.1, "french")


def test_predict_is_vectorised_over_parameter_vectors():
  X = _inputs()
  for name in laws.ADAPTATION_FORMS:
    f = FORMS[name]
    lo, hi = (np.array(v) for v in zip(*f.bounds.values()))
    rng = np.random.default_rng(1)
    theta = lo + (hi - lo) * rng.uniform(0.2, 0.4, (4, len(lo)))
    batch = f.predict(theta, X)
    assert batch.shape == (4, len(X))
    for k in range(4):
      np.testing.assert_allclose(batch[k], f.predict(theta[k], X), rtol=1e-12)


def test_ptpp_aware_forms_nest_the_baseline():
  X = _inputs()
  base = FORMS["dcpt"].predict(DCPT, X)
  np.testing.assert_allclose(FORMS["ptpp_modulated"].predict(DCPT | dict(kappa=0.0), X), base, rtol=1e-12)
  np.testing.assert_allclose(FORMS["ptpp_exponent"].predict(DCPT | dict(beta1=0.0), X), base, rtol=1e-12)
  np.testing.assert_allclose(FORMS["ptpp_additive"].predict(DCPT | dict(G=1e-9, kappa=0.5), X), base, rtol=1e-9)
  gated = FORMS["gated_floor"].predict(DCPT | dict(g_min=1.0, k_gate=1.0, P0=50.0, F=0.01), X)
  np.testing.assert_allclose(gated, base, rtol=1e-12)


def test_ptpp_forms_respond_to_ptpp_and_the_floor_binds():
  X15, X279 = (Inputs.make(1e8, p, 1e9, 0.1) for p in (15, 279))
  mod = DCPT | dict(kappa=0.3)
  assert FORMS["ptpp_modulated"].predict(mod, X279) > FORMS["ptpp_modulated"].predict(mod, X15)
  gated = DCPT | dict(g_min=0.2, k_gate=3.0, P0=60.0, F=0.01)
  assert FORMS["gated_floor"].predict(gated, X279) > FORMS["gated_floor"].predict(gated, X15)
  floored = FORMS["gated_floor"].predict(gated | dict(F=50.0), X15)  # outside the box on purpose
  np.testing.assert_allclose(floored, 50.0, rtol=1e-3)


def test_adding_a_form_takes_a_few_lines():
  try:
    @laws.register("chinchilla_test", E=(0.05, 20), A=(1e-6, 1e6), alpha=(0.01, 2))
    def _f(p, X):
      """L = E + A/N^α"""
      return p.E + p.A / X.N ** p.alpha
    f = FORMS["chinchilla_test"]
    assert f.param_names == ("E", "A", "alpha") and f.is_log("A")
    np.testing.assert_allclose(f.predict(dict(E=1.0, A=2.0, alpha=0.5), Inputs.make(4e9, 1, 1, 0)), [2.0])
  finally:
    FORMS.pop("chinchilla_test", None)


def test_synthetic_table_has_the_study_columns_and_roundtrips(tmp_path):
  t = synthetic.make_table(noise=0.0, params=(1e8,), ptpp=(15, 279), atpp=(1, 10), replay=(0.0, 0.5))
  assert set(synthetic.COLUMNS) <= set(t)
  assert len(t["params"]) == 8
  np.testing.assert_allclose(t["adapt_tokens"], t["atpp"] * t["params"])
  # noise-free: the table is the law itself; forgetting ≥ 0 by construction of base_loss_before
  X = Inputs.from_table(t, "target_loss")
  np.testing.assert_allclose(t["target_loss"], FORMS["ptpp_modulated"].predict(synthetic.TARGET_TRUTH, X))
  assert np.all(t["base_loss"] >= t["base_loss_before"])
  synthetic.write_results(t, tmp_path / "r.csv")
  back = synthetic.load_results(tmp_path / "r.csv")
  for k in t:
    np.testing.assert_array_equal(back[k], t[k])
