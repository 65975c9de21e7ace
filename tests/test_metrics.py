"""Tests for evals.metrics: pass@k, maj@k, bootstrap CIs, summarize, length_stats."""

from __future__ import annotations

import itertools
import json
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.metrics import (
    ProblemResult,
    bootstrap_ci,
    default_ks,
    length_stats,
    majority_correct,
    pass_at_k,
    summarize,
)

FAST = settings(max_examples=60, deadline=None)


@st.composite
def nck(draw, max_n: int = 60):
    n = draw(st.integers(1, max_n))
    c = draw(st.integers(0, n))
    k = draw(st.integers(1, n))
    return n, c, k


# ----------------------------------------------------------------------------------------------- pass@k


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) containing a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(1 for s in subsets if any(i < c for i in s)) / len(subsets)


@FAST
@given(nck(max_n=9))
def test_pass_at_k_matches_brute_force_over_subsets(args):
    n, c, k = args
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


@FAST
@given(nck(max_n=300))
def test_pass_at_k_in_unit_interval_and_monotone_in_k_and_c(args):
    n, c, _ = args
    by_k = [pass_at_k(n, c, k) for k in range(1, n + 1)]
    assert all(0.0 <= v <= 1.0 for v in by_k)
    assert all(x <= y for x, y in zip(by_k, by_k[1:]))
    k = args[2]
    by_c = [pass_at_k(n, cc, k) for cc in range(n + 1)]
    assert all(x <= y for x, y in zip(by_c, by_c[1:]))


@FAST
@given(nck(max_n=500))
def test_pass_at_k_endpoints_and_pass_at_1(args):
    n, c, k = args
    assert pass_at_k(n, 0, k) == 0.0
    assert pass_at_k(n, n, k) == 1.0
    assert pass_at_k(n, c, 1) == pytest.approx(c / n, rel=1e-12, abs=1e-15)


def test_pass_at_k_hand_computed():
    # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-15)
    # 1 - C(6,3)/C(10,3) = 1 - 20/120
    assert pass_at_k(10, 4, 3) == pytest.approx(5 / 6, abs=1e-15)
    # n - c < k: every subset holds a correct sample
    assert pass_at_k(10, 8, 3) == 1.0


@pytest.mark.parametrize("n,c,k", [(2000, 3, 1000), (10000, 1, 1), (1024, 100, 512), (5000, 2500, 7)])
def test_pass_at_k_stable_for_large_n_against_exact_rationals(n, c, k):
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-10, abs=1e-14)


def test_pass_at_k_accepts_numpy_integers():
    assert pass_at_k(np.int64(4), np.int32(1), np.int64(2)) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "n,c,k",
    [(4, 1, 5), (4, 1, 0), (4, 5, 1), (4, -1, 1), (0, 0, 1), (4, 1, 1.5), (4.0, 1, 1), (4, True, 1)],
)
def test_pass_at_k_rejects_bad_inputs(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


# ---------------------------------------------------------------------------------------------- maj@k


@pytest.mark.parametrize(
    "keys,correct,expected",
    [
        (["5", "5", "5"], [True, True, True], 1.0),
        (["7", "7", "3"], [False, False, False], 0.0),
        (["5", "5", "7", "7", "7"], [True, True, False, False, False], 0.0),  # wrong answer outvotes gold
        # answers vote by key on both sides: two spellings of the right answer split, as two of a wrong one do
        (["1/2", "0.5", "3"], [True, True, False], 2 / 3),
        (["1/2", "0.5", "3", "3"], [True, True, False, False], 0.0),
        (["1/2", "0.5", "0.5", "3", "3"], [True, True, True, False, False], 0.5),
        ([None, None, "3"], [True, True, False], 1.0),  # correct samples without a key: one correct group
        (["5", "5", "7", "7"], [True, True, False, False], 0.5),  # 2-way tie with gold
        (["5", "a", "b"], [True, False, False], 1 / 3),  # 3-way tie with gold
        (["a", "a", "b", "b", "5"], [False, False, False, False, True], 0.0),  # tie not involving gold
        ([None, None, None, "5"], [False, False, False, True], 1.0),  # no-answer never wins
        ([None, None, "7"], [False, False, False], 0.0),
        ([None, None], [False, False], 0.0),  # no votes at all
        ([None, "7", "5"], [False, False, True], 0.5),  # None ignored: gold ties with "7"
        (["5"], [True], 1.0),
        # a wrong sample with a correct sample's key votes for that answer
        (["5", "5", "5", "7", "7"], [True, False, False, False, False], 1.0),
        (["5", "5", "7", "7"], [True, False, False, False], 0.5),  # "5" (2 with the wrong-judged one) ties "7"
    ],
)
def test_majority_correct_cases(keys, correct, expected):
    assert majority_correct(keys, correct) == pytest.approx(expected, abs=1e-15)


@FAST
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.sampled_from("abcd")), st.booleans()), min_size=1, max_size=12
    ),
    st.randoms(use_true_random=False),
)
def test_majority_correct_properties(samples, rnd):
    keys = [k for k, _ in samples]
    correct = [ok for _, ok in samples]
    v = majority_correct(keys, correct)
    assert 0.0 <= v <= 1.0
    if not any(correct):
        assert v == 0.0
    if all(correct):
        assert v == 1.0
    # order of samples does not matter
    perm = list(range(len(samples)))
    rnd.shuffle(perm)
    assert majority_correct([keys[i] for i in perm], [correct[i] for i in perm]) == v
    # renaming the wrong answers' keys does not matter
    rename = {"a": "z", "b": "y", "c": "x", "d": "w"}
    assert majority_correct([rename.get(k, k) if k else k for k in keys], correct) == v
    # gold gaining a vote (a wrong/None sample becoming correct) never lowers maj
    wrong = [i for i, ok in enumerate(correct) if not ok]
    if wrong:
        i = wrong[0]
        better = list(correct)
        better[i] = True
        assert majority_correct(keys, better) >= v


def test_majority_correct_rejects_bad_inputs():
    with pytest.raises(ValueError, match="answer_keys has 2 entries but correct has 1"):
        majority_correct(["a", "b"], [True])
    with pytest.raises(ValueError, match="majority_correct needs at least one sample"):
        majority_correct([], [])


# ------------------------------------------------------------------------------------------ bootstrap


@FAST
@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=80), st.integers(0, 99))
def test_bootstrap_ci_contains_mean_and_is_ordered(values, seed):
    arr = np.array(values)
    lo, hi = bootstrap_ci(arr, n_boot=300, seed=seed)
    assert lo <= hi
    assert lo - 1e-12 <= arr.mean() <= hi + 1e-12
    assert min(values) - 1e-12 <= lo and hi <= max(values) + 1e-12


def test_bootstrap_ci_deterministic_for_seed_and_seed_matters():
    rng = np.random.default_rng(1)
    vals = rng.integers(0, 2, size=200).astype(float)
    a = bootstrap_ci(vals, n_boot=1000, seed=7)
    assert a == bootstrap_ci(vals.copy(), n_boot=1000, seed=7)
    assert a != bootstrap_ci(vals, n_boot=1000, seed=8)


def test_bootstrap_ci_constant_values_is_degenerate():
    assert bootstrap_ci(np.full(30, 0.75), n_boot=200) == (0.75, 0.75)


def test_bootstrap_ci_narrows_with_more_problems_at_sqrt_n_rate():
    small = np.array([1.0, 0.0] * 20)  # 40 problems, p = 0.5
    large = np.array([1.0, 0.0] * 2000)  # 4000 problems, p = 0.5
    ws = np.subtract(*bootstrap_ci(small, n_boot=2000)[::-1])
    wl = np.subtract(*bootstrap_ci(large, n_boot=2000)[::-1])
    assert wl < ws
    assert ws / wl == pytest.approx(10.0, rel=0.2)  # width ~ 1/sqrt(n)


def test_bootstrap_ci_width_matches_normal_theory():
    vals = np.array([1.0, 0.0] * 200)  # p = 0.5, n = 400: 95% width ~ 2 * 1.96 * sqrt(.25 / 400) = 0.098
    lo, hi = bootstrap_ci(vals, n_boot=4000, seed=3)
    assert hi - lo == pytest.approx(0.098, rel=0.12)
    lo90, hi90 = bootstrap_ci(vals, n_boot=4000, alpha=0.10, seed=3)
    assert hi90 - lo90 < hi - lo


@pytest.mark.parametrize("bad", [[], [[0.0, 1.0]], [0.0, float("nan")]])
def test_bootstrap_ci_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        bootstrap_ci(np.array(bad, dtype=float))


def test_bootstrap_ci_rejects_bad_alpha_and_n_boot():
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), alpha=1.5)
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), n_boot=0)


# ------------------------------------------------------------------------------------------ summarize


def pr(pid, correct, keys=None):
    return ProblemResult(pid, list(correct), list(keys) if keys is not None else ["x"] * len(correct))


@pytest.mark.parametrize("n,expected", [(1, [1]), (2, [1, 2]), (5, [1, 2, 4, 5]), (8, [1, 2, 4, 8]), (12, [1, 2, 4, 8, 12])])
def test_default_ks(n, expected):
    assert default_ks(n) == expected


@FAST
@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_avg_at_1_equals_accuracy(flags):
    res = [pr(f"p{i}", [ok]) for i, ok in enumerate(flags)]
    out = summarize(res, n_boot=50)
    assert out["n_samples"] == 1 and out["ci_method"] == "wilson"
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(sum(flags), len(flags), alpha=0.05, method="wilson")
    assert out["avg@1"]["ci_low"] == pytest.approx(max(0.0, lo)) and out["avg@1"]["ci_high"] == pytest.approx(hi)
    assert out["avg@1"]["value"] == pytest.approx(sum(flags) / len(flags), abs=1e-12)
    assert out["pass@1"]["value"] == pytest.approx(out["avg@1"]["value"], abs=1e-12)
    assert "maj@1" not in out


def test_summarize_hand_computed():
    res = [
        pr("a", [True, False], ["1", "2"]),  # pass@1 .5, pass@2 1, maj: 1-1 tie -> .5
        pr("b", [False, False], ["3", "3"]),  # all zero
        pr("c", [True, True], ["4", "4.0"]),  # all one
        pr("d", [False, True], [None, "9"]),  # None does not vote -> maj 1
    ]
    out = summarize(res, n_boot=200)
    assert out["n_problems"] == 4 and out["n_samples"] == 2
    assert set(out) == {"n_problems", "n_samples", "avg@2", "pass@1", "pass@2", "maj@2", "bootstrap"}
    assert out["avg@2"]["value"] == pytest.approx((0.5 + 0 + 1 + 0.5) / 4)
    assert out["pass@1"]["value"] == pytest.approx(0.5)
    assert out["pass@2"]["value"] == pytest.approx(0.75)
    assert out["maj@2"]["value"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    for key in ("avg@2", "pass@1", "pass@2", "maj@2"):
        m = out[key]
        assert 0.0 <= m["ci_low"] <= m["value"] <= m["ci_high"] <= 1.0
    json.dumps(out)  # JSON-serialisable (no numpy scalars)
    assert all(type(v) is float for k in ("avg@2", "maj@2") for v in out[k].values())


def test_summarize_default_and_custom_ks():
    res = [pr(f"p{i}", [i % 2 == 0] * 6) for i in range(5)]
    out = summarize(res, n_boot=50)
    assert [k for k in out if k.startswith("pass@")] == ["pass@1", "pass@2", "pass@4", "pass@6"]
    out = summarize(res, ks=[3, 1], n_boot=50)
    assert [k for k in out if k.startswith("pass@")] == ["pass@1", "pass@3"]
    with pytest.raises(ValueError, match="k"):
        summarize(res, ks=[7])


def test_summarize_is_independent_of_result_order():
    rng = random.Random(0)
    res = [pr(f"p{i:03d}", [rng.random() < 0.4 for _ in range(4)], [rng.choice("abc") for _ in range(4)]) for i in range(60)]
    shuffled = res[:]
    rng.shuffle(shuffled)
    assert summarize(res, n_boot=300, seed=5) == summarize(shuffled, n_boot=300, seed=5)


def test_summarize_errors_on_ragged_sample_counts_naming_the_problem():
    res = [pr("alpha", [True, False]), pr("beta", [True, False, True]), pr("gamma", [False, False])]
    with pytest.raises(ValueError, match="beta"):
        summarize(res)


def test_summarize_other_errors():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError, match="dup"):
        summarize([pr("a", [True]), pr("a", [False])])
    with pytest.raises(ValueError, match="q7"):
        summarize([ProblemResult("q7", [True, False], ["1"])])


# ------------------------------------------------------------------------------------------- lengths


def test_length_stats_hand_computed():
    out = length_stats([100, 200, 300, 1000], [False, False, False, True])
    assert out == {
        "n_responses": 4,
        "mean_tokens": 400.0,
        "median_tokens": 250.0,
        "max_tokens": 1000,
        "truncation_rate": 0.25,
    }
    json.dumps(out)


def test_length_stats_rejects_bad_inputs():
    with pytest.raises(ValueError):
        length_stats([1, 2], [True])
    with pytest.raises(ValueError):
        length_stats([], [])
    with pytest.raises(ValueError):
        length_stats([-1], [False])
