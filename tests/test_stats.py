"""Tests for reports.stats: paired bootstrap, sign-flip permutation, McNemar, compare, describe."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports.stats import (
    PairedResult,
    adjust,
    compare,
    describe,
    holm,
    mcnemar,
    paired_bootstrap,
    paired_permutation,
    verdict,
)

FAST = settings(max_examples=40, deadline=None)


def outcomes(n11=0, b10=0, b01=0, n00=0):
    """Paired 0/1 outcomes with the given 2x2 table (b10: A right & B wrong, b01: A wrong & B right)."""
    a = [True] * n11 + [True] * b10 + [False] * b01 + [False] * n00
    b = [True] * n11 + [False] * b10 + [True] * b01 + [False] * n00
    return a, b


# -------------------------------------------------------------------------------------------- McNemar


def test_mcnemar_mid_p_hand_computed():
    # b01=1, b10=9, N=10: mid-p = 2 * (P(X > 9) + P(X = 9) / 2) = 2 * (1 + 10 / 2) / 1024 = 12 / 1024
    a, b = outcomes(n11=5, b10=9, b01=1, n00=5)
    r = mcnemar(a, b)
    assert r.test == "mcnemar" and r.n == 20
    assert r.details["method"] == "midp"
    assert (r.details["b01"], r.details["b10"], r.details["n11"], r.details["n00"]) == (1, 9, 5, 5)
    assert r.p_value == pytest.approx(12 / 1024, rel=1e-12)
    # the exact conditional test puts all of P(X = 9) in the tail: 2 * 11 / 1024, more conservative
    assert mcnemar(a, b, method="exact").p_value == pytest.approx(22 / 1024, rel=1e-12)
    assert r.diff == pytest.approx(8 / 20)
    assert r.significant(0.05) and not r.significant(0.01)
    assert 0.0 < r.ci_low < r.diff < r.ci_high


def test_mcnemar_interval_inverts_the_same_test():
    """The interval's ends for the share pi of discordant pairs won by A are where the one-sided mid-p tails equal
    alpha / 2, and the difference's ends are (2 pi - 1) times an end of the Wilson interval of the discordance
    rate (hand-computed with scipy and statsmodels directly)."""
    from scipy.stats import binom
    from statsmodels.stats.proportion import proportion_confint

    a, b = outcomes(n11=5, b10=9, b01=1, n00=5)
    r = mcnemar(a, b)
    rho_lo, rho_hi = proportion_confint(10, 20, alpha=0.05, method="wilson")
    pi_lo = (r.ci_low / rho_lo + 1) / 2  # lower end > 0: the smaller rho keeps it closest to 0
    pi_hi = (r.ci_high / rho_hi + 1) / 2
    assert binom.sf(9, 10, pi_lo) + 0.5 * binom.pmf(9, 10, pi_lo) == pytest.approx(0.025, abs=1e-9)
    assert binom.cdf(8, 10, pi_hi) + 0.5 * binom.pmf(9, 10, pi_hi) == pytest.approx(0.025, abs=1e-9)


@pytest.mark.parametrize("method", ["midp", "exact"])
def test_mcnemar_interval_agrees_with_its_verdict_on_every_table(method):
    """Every 2x2 table with up to 20 discordant pairs each way (and a coarser grid to 40): 0 lies outside the
    interval exactly when p < alpha (the Agresti-Min interval could exclude 0 while the test said p = 0.09)."""
    grid = [(b10, b01, 0.05) for b10 in range(21) for b01 in range(21)]
    grid += [(b10, b01, 0.1) for b10 in range(0, 41, 5) for b01 in range(0, 41, 3)]
    if method == "exact":
        grid = grid[::3]
    for b10, b01, alpha in grid:
        r = mcnemar(*outcomes(n11=7, b10=b10, b01=b01, n00=4), alpha=alpha, method=method)
        excludes = r.ci_low > 0.0 or r.ci_high < 0.0
        assert excludes == (r.p_value < alpha), (b10, b01, alpha, r)


def test_mcnemar_is_antisymmetric_in_the_methods():
    a, b = outcomes(n11=5, b10=9, b01=1, n00=5)
    r, s = mcnemar(a, b), mcnemar(b, a)
    assert s.p_value == r.p_value
    assert s.diff == -r.diff
    assert (s.details["b01"], s.details["b10"]) == (9, 1)
    assert s.ci_low == pytest.approx(-r.ci_high) and s.ci_high == pytest.approx(-r.ci_low)


def test_mcnemar_one_sided_extreme():
    a, b = outcomes(b10=5)
    assert mcnemar(a, b).p_value == pytest.approx(1 / 32)  # mid-p: 2 * P(X = 5) / 2
    assert mcnemar(a, b, method="exact").p_value == 0.0625  # exact: 2 / 2**5


def test_mcnemar_no_discordant_pairs_gives_p_one():
    a, b = outcomes(n11=7, n00=3)
    for method in ("auto", "midp", "exact"):
        r = mcnemar(a, b, method=method)
        assert r.p_value == 1.0 and r.diff == 0.0 and not r.significant()
        assert r.ci_low < 0.0 < r.ci_high  # no discordant pair in 10 does not make the difference exactly 0


def test_mcnemar_rejects_bad_inputs():
    with pytest.raises(ValueError):
        mcnemar([True, False], [True])
    with pytest.raises(ValueError):
        mcnemar([], [])
    with pytest.raises(ValueError):
        mcnemar([True], [False], method="chi2")


# ---------------------------------------------------------------------------------- paired bootstrap


def test_paired_bootstrap_deterministic_for_seed():
    rng = np.random.default_rng(0)
    a, b = rng.random(100), rng.random(100)
    r1 = paired_bootstrap(a, b, n_boot=2000, seed=3)
    assert r1 == paired_bootstrap(a.copy(), b.copy(), n_boot=2000, seed=3)
    r2 = paired_bootstrap(a, b, n_boot=2000, seed=4)
    assert (r2.ci_low, r2.ci_high) != (r1.ci_low, r1.ci_high)
    assert r1.diff == pytest.approx(float(np.mean(a - b)))


def test_paired_bootstrap_detects_and_covers_a_real_difference():
    rng = np.random.default_rng(42)
    n = 2000
    b = (rng.random(n) < 0.5).astype(float)
    a = np.where(rng.random(n) < 0.2, 1.0, b)  # A = B plus extra solves: true diff = 0.2 * 0.5 = 0.1
    r = paired_bootstrap(a, b, n_boot=2000, seed=0)
    assert r.ci_low < 0.1 < r.ci_high
    assert r.ci_low > 0.0
    assert r.p_value == pytest.approx(2 / 2001)  # no resample on the other side of 0: the floor
    assert r.significant()


def test_paired_bootstrap_coverage_and_null_calibration():
    """Over 100 simulated benchmarks, the 95% CI covers the true diff ~95% of the time and p<0.05 ~5%."""
    rng = np.random.default_rng(123)
    covered = rejected = 0
    reps, n = 100, 150
    for rep in range(reps):
        p = rng.random(n)  # per-problem difficulty
        a = (rng.random(n) < p).astype(float)
        b = (rng.random(n) < np.clip(p - 0.05, 0, 1)).astype(float)
        true = float(np.mean(p - np.clip(p - 0.05, 0, 1)))
        r = paired_bootstrap(a, b, n_boot=400, seed=rep)
        covered += r.ci_low <= true <= r.ci_high
        a0 = (rng.random(n) < p).astype(float)
        b0 = (rng.random(n) < p).astype(float)
        rejected += paired_bootstrap(a0, b0, n_boot=400, seed=rep).p_value < 0.05
    assert covered >= 85
    assert rejected <= 14


def test_paired_bootstrap_constant_difference():
    a = np.full(25, 0.75)
    b = np.full(25, 0.5)
    r = paired_bootstrap(a, b, n_boot=999)
    assert (r.diff, r.ci_low, r.ci_high) == (0.25, 0.25, 0.25)
    assert r.p_value == pytest.approx(2 / 1000)


def test_paired_bootstrap_is_antisymmetric():
    rng = np.random.default_rng(5)
    a, b = rng.random(60), rng.random(60)
    r, s = paired_bootstrap(a, b, n_boot=1000, seed=9), paired_bootstrap(b, a, n_boot=1000, seed=9)
    assert s.diff == pytest.approx(-r.diff)
    assert s.ci_low == pytest.approx(-r.ci_high) and s.ci_high == pytest.approx(-r.ci_low)
    assert s.p_value == r.p_value


def test_paired_bootstrap_p_agrees_with_ci_excluding_zero():
    rng = np.random.default_rng(8)
    for shift in (0.0, 0.02, 0.05, 0.1, 0.2):
        a = rng.random(80)
        b = np.clip(a - shift + rng.normal(0, 0.2, 80), 0, 1)
        r = paired_bootstrap(a, b, n_boot=4000, seed=1)
        excludes_zero = r.ci_low > 0 or r.ci_high < 0
        if abs(r.p_value - 0.05) > 0.01:  # away from the boundary, where interpolation may differ
            assert r.significant(0.05) == excludes_zero


def test_paired_bootstrap_rejects_bad_inputs():
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 0.0], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap([], [])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [float("nan")])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [0.0], alpha=0.0)


# ------------------------------------------------------------------------------------ permutation test


def test_permutation_exact_hand_computed():
    # d = [1, 2, 3] (plus a zero, dropped): the 8 signed sums are +-6, +-4, +-2, 0, 0; |S| >= 6 in 2 of 8
    r = paired_permutation([1.0, 2.0, 3.0, 5.0], [0.0, 0.0, 0.0, 5.0])
    assert r.test == "paired_permutation" and r.n == 4
    assert r.p_value == 0.25
    assert r.diff == 1.5
    assert r.details == {"n_nonzero": 3, "method": "exact", "n_signings": 8,
                         "implementation": "scipy.stats.permutation_test"}
    assert r.ci_low is None and r.ci_high is None


def test_permutation_exact_hand_computed_with_ties():
    # d = [1, 1, 1, -1], S = 2; sums of four +-1: 4 (x1), 2 (x4), 0 (x6), -2 (x4), -4 (x1): |S| >= 2 in 10/16
    r = paired_permutation([1, 1, 1, 0], [0, 0, 0, 1])
    assert r.p_value == 0.625


def test_permutation_float_scores_ties_are_counted():
    # avg@3 scores: differences 1/3 and -1/3 cancel in half the signings up to float rounding
    r = paired_permutation([2 / 3, 1 / 3], [1 / 3, 2 / 3])
    assert r.p_value == 1.0


def brute_sign_flip_p(d: np.ndarray) -> float:
    d = d[d != 0]
    obs = abs(d.sum())
    hits = sum(abs(np.dot(s, d)) >= obs - 1e-9 for s in itertools.product([1.0, -1.0], repeat=len(d)))
    return hits / 2 ** len(d)  # len(d) == 0: the single empty signing ties, p = 1


@FAST
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=10))
def test_permutation_exact_matches_brute_force_and_is_symmetric(pairs):
    a = np.array([x for x, _ in pairs]) / 4.0
    b = np.array([y for _, y in pairs]) / 4.0
    r = paired_permutation(a, b)
    assert 0.0 < r.p_value <= 1.0
    assert r.p_value == pytest.approx(brute_sign_flip_p(a - b), abs=1e-12)
    assert paired_permutation(b, a).p_value == r.p_value


def test_permutation_monte_carlo_agrees_with_exact_enumeration():
    rng = np.random.default_rng(2)
    d = np.round(rng.normal(0.3, 1.0, 18), 2)  # 18 > 16 non-zero differences -> Monte Carlo path
    assert np.count_nonzero(d) == 18
    r = paired_permutation(d, np.zeros(18), n_perm=20000, seed=0)
    assert r.details["method"] == "monte_carlo"
    exact = brute_sign_flip_p(d)
    se = math.sqrt(exact * (1 - exact) / 20000)
    assert abs(r.p_value - exact) < 4 * se + 1e-4
    assert r == paired_permutation(d, np.zeros(18), n_perm=20000, seed=0)


def test_permutation_monte_carlo_p_never_zero():
    r = paired_permutation(np.ones(40), np.zeros(40), n_perm=999)
    assert r.p_value == pytest.approx(2 / 1000)  # two-sided: twice the one-sided (0 + 1) / (999 + 1)


# ------------------------------------------------------------------------------ identical methods


def test_identical_methods_give_p_one_everywhere():
    rng = np.random.default_rng(0)
    s = rng.random(50)
    bits = rng.random(50) < 0.5
    for r in (
        paired_bootstrap(s, s, n_boot=500),
        paired_permutation(s, s),
        mcnemar(bits, bits),
        compare({f"q{i}": float(v) for i, v in enumerate(s)}, {f"q{i}": float(v) for i, v in enumerate(s)}, n_boot=500),
    ):
        assert r.p_value == 1.0
        assert r.diff == 0.0
        assert not r.significant(0.05)
        assert "not distinguishable" in describe(r, "A", "B")


def test_significant_uses_strict_threshold_and_result_is_json_serialisable():
    r = PairedResult("paired_bootstrap", 10, 0.1, 0.0, 0.2, 0.05, {"ci_level": 0.95})
    assert not r.significant(0.05)
    assert r.significant(0.1)
    json.dumps(mcnemar(*outcomes(b10=9, b01=1)).to_dict())
    json.dumps(paired_bootstrap([1.0, 0.5], [0.0, 0.5], n_boot=10).to_dict())


# --------------------------------------------------------------------------------------- describe


def test_describe_significant_wording():
    r = PairedResult("paired_bootstrap", 500, 0.042, 0.011, 0.073, 0.008, {"ci_level": 0.95})
    assert describe(r, "TBRM n=1", "GRPO n=4") == (
        "TBRM n=1 is ahead of GRPO n=4 by 4.2 points (95% CI 1.1 to 7.3, p=0.008, paired bootstrap over 500 problems)"
    )


def test_describe_significant_when_b_leads_flips_the_ci():
    r = PairedResult("paired_bootstrap", 500, -0.042, -0.073, -0.011, 0.0004, {"ci_level": 0.95})
    assert describe(r, "TBRM n=1", "GRPO n=4") == (
        "GRPO n=4 is ahead of TBRM n=1 by 4.2 points (95% CI 1.1 to 7.3, p<0.001, paired bootstrap over 500 problems)"
    )


def test_describe_not_significant_wording():
    r = PairedResult("paired_bootstrap", 40, 0.01, -0.023, 0.044, 0.55, {"ci_level": 0.95})
    assert describe(r, "TBRM n=1", "GRPO n=4") == (
        "TBRM n=1 and GRPO n=4 are not distinguishable at this sample size "
        "(diff +1.0 points, TBRM n=1 \u2212 GRPO n=4; 95% CI \u22122.3 to 4.4, p=0.55, "
        "paired bootstrap over 40 problems)"
    )
    neg = PairedResult("paired_bootstrap", 40, -0.01, -0.044, 0.023, 0.55, {"ci_level": 0.95})
    assert "(diff \u22121.0 points" in describe(neg, "A", "B")


def test_describe_threshold_and_tests_without_ci():
    r = PairedResult("paired_permutation", 30, 0.1, None, None, 0.03, {"n_nonzero": 12})
    assert describe(r, "A", "B") == "A is ahead of B by 10.0 points (p=0.03, sign-flip permutation test over 30 problems)"
    assert describe(r, "A", "B", alpha=0.01).startswith("A and B are not distinguishable")
    assert "95% CI" not in describe(r, "A", "B", alpha=0.01)


def test_describe_end_to_end_mcnemar_and_ci_level():
    r = mcnemar(*outcomes(n11=5, b10=9, b01=1, n00=5), alpha=0.1)
    text = describe(r, "PPO", "GRPO")
    assert text == (f"PPO is ahead of GRPO by 40.0 points (90% CI {100 * r.ci_low:.1f} to {100 * r.ci_high:.1f}, "
                    f"p=0.012, mid-p McNemar test over 20 problems)")
    assert describe(r, "PPO", "GRPO", about="checkpoints").startswith(
        "The PPO checkpoint is ahead of the GRPO checkpoint by 40.0 points on these problems (90% CI")
    assert describe(r, "PPO", "GRPO", about="exploratory").startswith(
        "Exploratory: PPO \u2212 GRPO = +40.0 points (90% CI")


def test_a_p_value_at_the_bootstrap_floor_prints_as_at_most():
    """A CI-inverted bootstrap p cannot go below 2 / (B + 1): at the floor it reads "p≤floor", raw and adjusted."""
    a, b = np.ones(50), np.zeros(50)
    a[0] = 0.5
    r = paired_bootstrap(a, b, n_boot=999)
    assert r.p_value == pytest.approx(2 / 1000) and r.details["p_floor"] == pytest.approx(2 / 1000)
    text = describe(r, "A", "B", p_adjusted=0.006, n_comparisons=3)
    assert "p\u22640.002, Holm-adjusted p\u22640.006 over 3 comparisons" in text
    from reports.stats import boot_replicates

    assert 2 / (boot_replicates(30, 0.05) + 1) <= 0.05 / 30 / 100  # far below Holm's first threshold


# ----------------------------------------------------------------------------------------- compare


def test_compare_mismatched_problem_ids_error_lists_ids():
    a = {"q1": 1.0, "q2": 0.0, "q3": 1.0, "only_a": 1.0}
    b = {"q1": 1.0, "q2": 1.0, "q3": 0.0, "only_b": 0.0}
    with pytest.raises(ValueError, match="only_a") as exc:
        compare(a, b)
    assert "only_b" in str(exc.value)
    assert "same problems" in str(exc.value)
    with pytest.raises(ValueError):
        compare({}, {})


def test_compare_picks_mcnemar_for_single_samples_and_bootstrap_otherwise():
    a_bits, b_bits = outcomes(n11=5, b10=9, b01=1, n00=5)
    a = {f"q{i}": float(v) for i, v in enumerate(a_bits)}
    b = {f"q{i}": float(v) for i, v in enumerate(b_bits)}
    r = compare(a, b)
    assert r.test == "mcnemar" and r.p_value == pytest.approx(12 / 1024)
    frac = dict(a, q0=0.5)
    assert compare(frac, b, n_boot=500).test == "paired_bootstrap"
    assert compare(a, b, test="permutation").test == "paired_permutation"
    with pytest.raises(ValueError, match="McNemar"):
        compare(frac, b, test="mcnemar")


def test_compare_pairs_by_id_not_by_dict_order():
    rng = random.Random(0)
    ids = [f"p{i}" for i in range(80)]
    a = {i: rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for i in ids}
    b = {i: rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for i in ids}
    shuffled = ids[:]
    rng.shuffle(shuffled)
    b_shuffled = {i: b[i] for i in shuffled}
    r = compare(a, b_shuffled, n_boot=500)
    assert r == compare(a, b, n_boot=500)
    ref = paired_bootstrap([a[i] for i in sorted(ids)], [b[i] for i in sorted(ids)], n_boot=500)
    assert r == ref


# ------------------------------------------------------------------- the libraries, checked against each other


@FAST
@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 5))
def test_exact_mcnemar_equals_binomial_test_and_sign_flip_test(b10, b01, n11):
    """Three routes to one number on 0/1 outcomes: statsmodels' exact McNemar, scipy's two-sided binomial test of
    b10 out of b10 + b01, and scipy's exact sign-flip test (differences are +-1, so sign flips are coin flips)."""
    from scipy.stats import binomtest

    a, b = outcomes(n11=n11, b10=b10, b01=b01, n00=2)
    r = mcnemar(a, b, method="exact")
    if b10 + b01 == 0:
        assert r.p_value == 1.0
        return
    assert r.p_value == pytest.approx(binomtest(b10, b10 + b01, 0.5).pvalue, rel=1e-12)
    if b10 + b01 <= 16:  # the permutation test enumerates exactly up to 2**16 signings
        assert paired_permutation(np.array(a, float), np.array(b, float)).p_value == pytest.approx(r.p_value,
                                                                                                   rel=1e-9)


def holm_by_definition(ps):
    """Holm 1979 as written in the paper: the i-th smallest p times (m - i + 1), made monotone, capped at 1."""
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


@FAST
@given(st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=25))
def test_holm_from_statsmodels_matches_its_definition_and_bounds(ps):
    adj = holm(ps)
    assert adj == pytest.approx(holm_by_definition(ps), rel=1e-9, abs=1e-12)
    bonf = adjust(ps, "bonferroni")
    assert all(p <= h + 1e-12 and h <= bf + 1e-12 for p, h, bf in zip(ps, adj, bonf))  # raw <= Holm <= Bonferroni


def test_holm_hand_computed_and_bad_input():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []
    with pytest.raises(ValueError, match="correction"):
        adjust([0.1], "sidak-ish")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([1.5])


def test_scipy_paired_bootstrap_agrees_with_the_eval_harness_bootstrap():
    """scipy.stats.bootstrap (reports) and evals.metrics.bootstrap_means (eval summaries) are independent
    resampling codes: their percentile intervals agree to Monte Carlo error."""
    from evals.metrics import bootstrap_means

    rng = np.random.default_rng(11)
    a = (rng.random(300) < 0.6).astype(float)
    b = (rng.random(300) < 0.5).astype(float)
    r = paired_bootstrap(a, b, n_boot=20000, seed=1)
    lo, hi = np.quantile(bootstrap_means(a - b, 20000, seed=2), [0.025, 0.975])
    assert r.ci_low == pytest.approx(lo, abs=0.006) and r.ci_high == pytest.approx(hi, abs=0.006)


# ------------------------------------------------------------------- verdicts follow the adjusted p


def test_verdict_and_sentence_follow_the_adjusted_p():
    r = PairedResult("mcnemar", 200, 0.085, 0.004, 0.16, 0.044, {"ci_level": 0.95})
    assert verdict(r) == "A ahead"  # on its own
    assert verdict(r, p_adjusted=0.57) == "not distinguishable after correction"
    text = describe(r, "TBRM n=4", "GRPO n=4", p_adjusted=0.57, n_comparisons=20)
    assert text == ("TBRM n=4 and GRPO n=4 are not distinguishable after correction (diff +8.5 points, "
                    "TBRM n=4 \u2212 GRPO n=4; 95% CI 0.4 to 16.0, p=0.044, Holm-adjusted p=0.57 over 20 comparisons, "
                    "mid-p McNemar test over 200 problems)")
    strong = PairedResult("mcnemar", 200, -0.2, -0.3, -0.1, 0.0001, {"ci_level": 0.95})
    assert verdict(strong, p_adjusted=0.002) == "B ahead"
    assert describe(strong, "A", "B", p_adjusted=0.002, n_comparisons=3).startswith(
        "B is ahead of A by 20.0 points (95% CI 10.0 to 30.0, p<0.001, Holm-adjusted p=0.002 over 3 comparisons")
    weak = PairedResult("mcnemar", 200, 0.01, -0.05, 0.07, 0.6, {"ci_level": 0.95})
    assert verdict(weak, p_adjusted=1.0) == "not distinguishable"
    assert "not distinguishable at this sample size" in describe(weak, "A", "B", p_adjusted=1.0)


def test_report_family_verdicts_follow_holm():
    """reports.tables.finish_paired: the verdict column, the significant flag and the sentence follow the
    Holm-adjusted p over the family; the raw flag stays available."""
    from reports.tables import finish_paired

    results = [PairedResult("mcnemar", 200, 0.085, 0.004, 0.16, 0.044, {"ci_level": 0.95}),
               PairedResult("mcnemar", 200, 0.43, 0.35, 0.50, 1e-6, {"ci_level": 0.95}),
               PairedResult("mcnemar", 200, 0.02, -0.05, 0.09, 0.6, {"ci_level": 0.95})]
    recs = [{"method_a": "A", "method_b": f"B{i}", "p_value": r.p_value, "_result": r} for i, r in enumerate(results)]
    finish_paired(recs, 0.05)
    assert [r["p_holm"] for r in recs] == pytest.approx([0.088, 3e-6, 0.6])
    assert [r["verdict"] for r in recs] == ["not distinguishable after correction", "A ahead",
                                            "not distinguishable"]
    assert [r["significant"] for r in recs] == [False, True, False]
    assert [r["significant_raw"] for r in recs] == [True, True, False]
    assert "not distinguishable after correction" in recs[0]["sentence"] and "Holm-adjusted p=0.088" in recs[0]["sentence"]
    assert all("_result" not in r for r in recs)


def test_wilson_interval_holds_its_proportion_even_at_0_and_n():
    from reports.stats import wilson

    assert wilson(0, 10)[0] == 0.0 and wilson(0, 10)[1] == pytest.approx(0.2775328, abs=1e-6)  # not "0.0-0.0"
    for x, n in ((0, 3), (3, 3), (10, 10), (1, 7)):
        lo, hi = wilson(x, n)
        assert 0.0 <= lo <= x / n <= hi <= 1.0


# ---------------------------------------------------------------------------------------------- group-sequential


def test_obf_boundaries_match_the_published_lan_demets_values():
    """Jennison & Turnbull 2000, table 7.5 / gsDesign sfLDOF: four equally spaced looks, two-sided alpha 0.05 give
    4.33, 2.96, 2.36, 2.01; one look is the fixed-sample 1.96; the boundaries spend exactly alpha overall."""
    from scipy import stats as sps

    from reports.stats import obf_boundaries, obf_spent

    assert obf_boundaries([0.25, 0.5, 0.75, 1.0]) == pytest.approx([4.333, 2.963, 2.359, 2.014], abs=2e-3)
    assert obf_boundaries([1.0]) == pytest.approx([sps.norm.isf(0.025)], abs=1e-9)
    assert obf_spent(1.0, 0.05) == pytest.approx(0.05, abs=1e-12)
    assert obf_spent(0.25, 0.05) == pytest.approx(2 * 2 * sps.norm.sf(sps.norm.isf(0.0125) / 0.5), rel=1e-9)
    # unequal looks: 5 and 20 of 20 seeds; the last boundary lies between 1.96 and the first
    b = obf_boundaries([0.25, 1.0], 0.05)
    assert b[0] == pytest.approx(4.333, abs=2e-3) and 1.96 < b[1] < 2.0
    for bad in ([0.5, 0.5, 1.0], [0.0, 1.0], [0.5, 0.9], []):
        with pytest.raises(ValueError, match="information fractions"):
            obf_boundaries(bad)


def test_obf_boundaries_spend_alpha_by_simulation():
    """Brownian motion observed at the looks: crossing any boundary happens alpha of the time."""
    from reports.stats import obf_boundaries

    rng = np.random.default_rng(0)
    t = np.array([0.25, 0.5, 0.75, 1.0])
    c = np.array(obf_boundaries(list(t), 0.05))
    steps = rng.normal(0.0, 1.0, (200_000, 4)) * np.sqrt(np.diff(np.concatenate([[0.0], t])))
    z = np.cumsum(steps, axis=1) / np.sqrt(t)
    rate = float(np.mean(np.any(np.abs(z) >= c, axis=1)))
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 200_000)


def test_sequential_plan_spends_each_claims_share():
    from reports.primaries import sequential_plan

    plan = sequential_plan([5, 10, 15, 20], 0.05, n_primaries=2)
    assert plan["claim_alpha"] == pytest.approx(0.0125) and plan["fractions"] == [0.25, 0.5, 0.75, 1.0]
    assert plan["nominal"] == sorted(plan["nominal"]) and plan["nominal"][-1] < 0.0125
    with pytest.raises(ValueError, match="increase"):
        sequential_plan([5, 5, 10])
    with pytest.raises(ValueError, match="increase"):
        sequential_plan([1, 10])
