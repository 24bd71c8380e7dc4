"""Bootstrap intervals and verdicts: known cases, and tables where an effect is absent, clear, or reversed."""

import numpy as np
import pytest

from cpt_jax.research import stats


def test_mean_of_three_seeds_spans_their_range():
  """With 3 values, resamples of all-min (1/27 > 2.5 %) put the interval's ends at the data's min and max."""
  iv = stats.mean_ci([1.0, 2.0, 3.0])
  assert iv.estimate == 2.0 and iv.lo == 1.0 and iv.hi == 3.0 and iv.n == (3,)
  plain = stats.mean_ci([1.0, 2.0, 3.0], expand=False)
  assert (plain.lo, plain.hi) == (1.0, 3.0)


def test_mean_interval_matches_the_normal_one_for_many_values():
  x = np.random.default_rng(0).normal(5.0, 2.0, 400)
  iv = stats.mean_ci(x, expand=False)
  half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
  assert iv.lo < x.mean() < iv.hi
  assert iv.width == pytest.approx(2 * half, rel=0.1)
  assert stats.mean_ci(x).width == pytest.approx(iv.width, rel=0.05)  # expansion vanishes as n grows


def test_t_distribution_matches_scipy():
  from scipy import stats as sp  # pylint: disable=g-import-not-at-top  # the reference only
  for df in (1, 2, 3, 4, 5, 8, 15, 30):
    for x in (-3.0, -0.5, 0.0, 0.7, 2.5):
      assert stats.t_cdf(x, df) == pytest.approx(sp.t.cdf(x, df), abs=1e-12)
    assert stats.t_quantile(0.975, df) == pytest.approx(sp.t.ppf(0.975, df), rel=1e-9)


def test_expansion_widens_small_samples():
  a, b = [0.1, 0.4, 0.25, 0.3], [0.0, 0.2, 0.1, 0.15]
  assert stats.diff_ci(a, b).width > stats.diff_ci(a, b, expand=False).width


def test_difference_ratio_and_generic_statistic():
  b = np.array([1.0, 1.2, 0.9, 1.1])
  d = stats.diff_ci(b + 1.0, b)
  assert d.estimate == pytest.approx(1.0) and d.lo < 1.0 < d.hi and d.n == (4, 4)
  r = stats.ratio_ci(2 * b, b)
  assert r.estimate == pytest.approx(2.0) and r.lo < 2.0 < r.hi
  fn = lambda x, y: x.mean(-1) - y.mean(-1)
  assert stats.bootstrap(fn, b + 1.0, b) == d  # diff_ci is this statistic, same seed, same resamples
  slow = stats.bootstrap(lambda x, y: float(x.mean() - y.mean()), b + 1.0, b, vectorized=False)
  assert (slow.lo, slow.hi) == pytest.approx((d.lo, d.hi))
  three = stats.bootstrap(lambda x, y, z: (x.mean(-1) - y.mean(-1)) / z.mean(-1), b + 1.0, b, 2 * b)
  assert three.estimate == pytest.approx(1.0 / (2 * b.mean())) and three.n == (4, 4, 4)
  assert stats.mean_ci([1.0, 2.0, 3.5], seed=1) == stats.mean_ci([1.0, 2.0, 3.5], seed=1)  # fixed RNG


def test_non_finite_values_are_dropped_and_empty_groups_give_no_interval():
  assert stats.mean_ci([1.0, np.nan, 2.0, 3.0]).n == (3,)
  empty = stats.diff_ci([], [1.0, 2.0])
  assert not empty.finite and stats.verdict(empty, ">").answer == "inconclusive"


def test_cluster_bootstrap_resamples_cells_and_seeds():
  obs = [[2.0, 2.1, 1.9], [3.0, 3.2, 2.8], [4.0], [5.0, 5.1, 4.9]]
  pred = np.array([2.0, 3.0, 4.0, 5.0])
  mae = lambda idx, mean: np.mean(np.abs(pred[idx] - mean) / mean, -1)
  iv = stats.cluster_bootstrap(mae, obs)
  assert iv.estimate == pytest.approx(0.0) and iv.n == (4,)
  assert iv.lo >= 0 and iv.hi > 0  # seed noise inside cells makes the error uncertain
  exact = stats.cluster_bootstrap(mae, [[2.0], [3.0], [4.0], [5.0]])
  assert exact.width == 0 and stats.verdict(exact, "<", 0.01).answer == "inconclusive"


@pytest.mark.parametrize("op,threshold,lo,hi,answer", [
    (">", 0.0, 0.1, 0.3, "yes"), (">", 0.0, -0.3, -0.1, "no"), (">", 0.0, -0.1, 0.3, "inconclusive"),
    ("<", 0.5, 0.1, 0.3, "yes"), ("<", 0.5, 0.6, 0.9, "no"), ("<", 0.5, 0.4, 0.6, "inconclusive"),
    ("within", 0.2, -0.1, 0.15, "yes"), ("within", 0.2, 0.25, 0.4, "no"), ("within", 0.2, 0.1, 0.3, "inconclusive"),
    ("within", (0.0, 1.0), 0.2, 0.8, "yes"), ("within", (0.0, 1.0), -0.5, -0.1, "no"),
])
def test_verdict_reads_the_interval(op, threshold, lo, hi, answer):
  v = stats.verdict(stats.Interval((lo + hi) / 2, lo, hi, (5, 5)), op, threshold)
  assert v.answer == answer and v.reproduced == {"yes": True, "no": False}.get(answer)
  assert "interval" in v.why


def test_too_few_seeds_or_a_degenerate_interval_is_inconclusive():
  two = stats.diff_ci([1.0, 1.1], [0.0, 0.1])  # a large effect, but two seeds
  v = stats.verdict(two, ">", 0.0)
  assert v.answer == "inconclusive" and "only 2" in v.why
  one = stats.mean_ci([0.7])
  assert one.width == 0 and "only 1" in stats.verdict(one, ">", 0.0).why
  same = stats.mean_ci([0.7, 0.7, 0.7])
  v = stats.verdict(same, ">", 0.0)
  assert v.answer == "inconclusive" and "zero-width" in v.why


def test_perfect_accuracy_in_every_seed_is_read_against_its_questions():
  """All seeds at 1.0 on 100 questions: the seeds cannot differ, the questions bound the accuracy from below at
  (0.025)^(1/100) = 0.964 (exact binomial), above a 0.24 majority answer and short of 0.99."""
  perfect = stats.accuracy_ci([1.0, 1.0, 1.0], 100)
  assert perfect.lo == pytest.approx(0.025 ** 0.01) and perfect.hi == 1.0
  assert stats.verdict(perfect, ">", 0.24).answer == "yes"
  assert stats.verdict(perfect, ">", 0.99).answer == "inconclusive"
  assert stats.verdict(stats.accuracy_ci([1.0] * 3, 2000), ">", 0.99).answer == "yes"  # more questions: tighter
  none = stats.accuracy_ci([0.0, 0.0, 0.0], 100, offset=0.2)  # all wrong, read as a gap to a 0.2 baseline
  assert none.estimate == pytest.approx(-0.2) and stats.verdict(none, ">", 0.0).answer == "no"
  assert "zero-width" in stats.verdict(stats.accuracy_ci([1.0] * 3, None), ">", 0.24).why  # questions unknown
  assert "only 2" in stats.verdict(stats.accuracy_ci([1.0, 1.0], 100), ">", 0.24).why  # still needs 3 seeds
  mixed = stats.accuracy_ci([0.8, 0.9, 1.0], 100)  # seeds that differ keep their bootstrap interval
  assert (mixed.lo, mixed.hi) == (stats.mean_ci([0.8, 0.9, 1.0]).lo, stats.mean_ci([0.8, 0.9, 1.0]).hi)


# a results table: forgetting per seed of a method and of no replay, and the claim "replay reduces it"
NONE = [0.30, 0.34, 0.27, 0.32]


def _reduces(method, none=NONE):
  return stats.verdict(stats.diff_ci(none, method), ">", 0.0)


def test_absent_effect_is_never_yes():
  assert _reduces([0.31, 0.27, 0.33, 0.30]).answer == "inconclusive"  # same distribution
  assert _reduces([0.29, 0.36, 0.24, 0.31]).answer == "inconclusive"  # 0.0075 lower: well within seed noise
  assert stats.verdict(stats.ratio_ci([0.31, 0.27, 0.33, 0.30], NONE), "<", 0.25).answer == "no"  # not near 0


def test_null_tables_give_few_false_yes():
  """Over 300 tables with no effect (3 seeds per group), "yes" comes out at about the 2.5 % nominal rate."""
  rng = np.random.default_rng(7)
  yes = 0
  for _ in range(300):
    a, b = rng.normal(0.3, 0.03, 3), rng.normal(0.3, 0.03, 3)
    yes += stats.verdict(stats.diff_ci(a, b, resamples=2000), ">", 0.0).answer == "yes"
  assert yes / 300 <= 0.07


def test_clear_effect_is_yes_and_clear_opposite_is_no():
  assert _reduces([0.02, 0.03, 0.01, 0.025]).answer == "yes"
  assert _reduces([0.60, 0.66, 0.58, 0.63]).answer == "no"
  near = stats.verdict(stats.ratio_ci([0.02, 0.03, 0.01, 0.025], NONE), "<", 0.25)
  assert near.answer == "yes"  # "nearly eliminates": ≤ 25 % of no-replay forgetting
  same = stats.verdict(stats.bootstrap(lambda s, r, n: (s.mean(-1) - r.mean(-1)) / n.mean(-1),
                                       [0.021, 0.03, 0.012], [0.02, 0.028, 0.015], NONE), "within", 0.25)
  assert same.answer == "yes"


def test_combining_parts():
  y, n, i = stats.Verdict("yes", "a"), stats.Verdict("no", "b"), stats.Verdict("inconclusive", "c")
  assert stats.all_of(y, y).answer == "yes" and stats.all_of(y, i).answer == "inconclusive"
  assert stats.all_of(y, i, n).answer == "no" and stats.all_of(y, i, n).why == "b"
  assert stats.any_of(n, y).answer == "yes" and stats.any_of(n, n).answer == "no"
  assert stats.any_of(n, i).answer == "inconclusive"
