"""Calibration of the report's statistics by simulation with a known truth, at the designs the presets use: 3 and 10
seeds per method, 100 and 500 problems of mixed difficulty shared by every method, seed SDs of 5-15 points, and
seeds that sometimes collapse (as TBRM-Vref's seed 0 did, at 11%).

Data: problem p is solved with probability clip(q_p + u_s, 0, 1), q_p ~ U(0.1, 0.9) its easiness, u_s ~ N(0, sd)
the training seed's luck; a collapsed seed (probability 1/5 each) solves with probability q_p / 5. The base model is
one greedy run: problem p solved with the expected probability of a seed, so under H0 it equals the method's
expected accuracy on every problem. Simulated data are drawn with numpy in one go; the statistics are the real ones
(`reports.seeds`, `reports.stats`, `evals.metrics`).

Each check can fail: the negative controls show the harness detects a miscalibrated statistic (the seed-and-problem
bootstrap at 3 seeds, a one-sample t against the base model's score, the percentile bootstrap of 0/1 scores on 10
problems). Monte Carlo slack: 3 standard errors of the simulated rate (the RNG is seeded, so every run draws the
same data). The fast subset runs in CI; `-m slow` runs the whole grid.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from reports.seeds import seed_mean, vs_single, welch

ALPHA = 0.05
COLLAPSE_RATE = 0.2


def draw(rng, reps: int, seeds: int, q: np.ndarray, sd: float, collapse: bool) -> np.ndarray:
    """[reps, seeds, problems] 0/1 scores of one method on problems of easiness q."""
    prob = np.clip(q[None, None, :] + rng.normal(0.0, sd, (reps, seeds, 1)), 0.0, 1.0)
    if collapse:
        prob = np.where(rng.random((reps, seeds, 1)) < COLLAPSE_RATE, q[None, None, :] / 5.0, prob)
    return (rng.random(prob.shape) < prob).astype(np.float64)


def expected(q: np.ndarray, sd: float, collapse: bool) -> np.ndarray:
    """E over seeds of the solve probability of each problem (Gauss-Hermite quadrature over u ~ N(0, sd))."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    e = (np.clip(q[:, None] + sd * x[None, :], 0.0, 1.0) * w[None, :]).sum(axis=1) / w.sum()
    return (1 - COLLAPSE_RATE) * e + COLLAPSE_RATE * q / 5.0 if collapse else e


def slack(reps: int, rate: float = ALPHA) -> float:
    return 3.0 * np.sqrt(rate * (1 - rate) / reps)


def welch_type1(rng, seeds, problems, sd, collapse, reps):
    q = rng.uniform(0.1, 0.9, problems)
    a, b = draw(rng, reps, seeds, q, sd, collapse), draw(rng, reps, seeds, q, sd, collapse)
    return float(np.mean([welch(a[i], b[i]).p_value < ALPHA for i in range(reps)]))


def single_type1(rng, seeds, problems, sd, collapse, reps, naive: bool = False):
    """Type-I error of a method against the base model; naive=True: a one-sample t against the base's score."""
    q = rng.uniform(0.1, 0.9, problems)
    a = draw(rng, reps, seeds, q, sd, collapse)
    base = (rng.random((reps, problems)) < expected(q, sd, collapse)[None, :]).astype(np.float64)
    if naive:
        p = sps.ttest_1samp(a.mean(axis=2), base.mean(axis=1)[:, None], axis=1).pvalue
        return float(np.mean(p < ALPHA))
    return float(np.mean([vs_single(a[i], base[i]).p_value < ALPHA for i in range(reps)]))


def mean_coverage(rng, seeds, problems, sd, collapse, reps, interval=None):
    """Coverage of the expected accuracy over new seeds AND new problems (problems redrawn per experiment)."""
    truth = float(expected(np.linspace(0.1, 0.9, 100_001), sd, collapse).mean())
    q = rng.uniform(0.1, 0.9, (reps, 1, problems))
    prob = np.clip(q + rng.normal(0.0, sd, (reps, seeds, 1)), 0.0, 1.0)
    if collapse:
        prob = np.where(rng.random((reps, seeds, 1)) < COLLAPSE_RATE, q / 5.0, prob)
    m = (rng.random(prob.shape) < prob).astype(np.float64)
    interval = interval or (lambda x: (lambda r: (r.ci_low, r.ci_high))(seed_mean(x, alpha=ALPHA)))
    hits = 0
    for i in range(reps):
        lo, hi = interval(m[i])
        hits += lo <= truth <= hi
    return hits / reps


def crossed_bootstrap(m: np.ndarray, n_boot: int = 400, seed: int = 0, clip: bool = True) -> tuple[float, float]:
    """The seed-and-problem percentile bootstrap the reports used before (seeds resampled with variance-adjusted
    deviations, problems resampled and shared by a replicate's seeds): the negative control."""
    rng = np.random.default_rng(seed)
    s, p = m.shape
    centre = m.mean(axis=0, keepdims=True)
    adj = centre + np.sqrt(s / (s - 1)) * (m - centre)
    si = rng.integers(0, s, (n_boot, s))
    pi = rng.integers(0, p, (n_boot, p))
    reps = np.array([adj[si[b]][:, pi[b]].mean() for b in range(n_boot)])
    lo, hi = np.quantile(reps, [ALPHA / 2, 1 - ALPHA / 2])
    return (max(lo, 0.0), min(hi, 1.0)) if clip else (lo, hi)


# ------------------------------------------------------------------------------------------------ fast subset


@pytest.mark.parametrize("collapse", [False, True])
def test_welch_keeps_its_level_at_3_seeds(collapse):
    rng = np.random.default_rng(1 + collapse)
    rate = welch_type1(rng, 3, 100, 0.15, collapse, reps=800)
    print(f"Welch type I, 3 seeds, 100 problems, seed SD 15, collapse={collapse}: {rate:.3f}")
    assert rate <= ALPHA + slack(800)


def test_a_method_against_the_base_model_keeps_its_level_and_the_naive_t_does_not():
    rng = np.random.default_rng(3)
    ok = single_type1(rng, 10, 100, 0.05, False, reps=800)
    naive = single_type1(np.random.default_rng(3), 10, 100, 0.05, False, reps=800, naive=True)
    print(f"method vs base, 10 seeds, 100 problems, seed SD 5: type I {ok:.3f}; one-sample t: {naive:.3f}")
    assert ok <= ALPHA + slack(800)
    assert naive > 0.2  # the harness sees a test that ignores the base model's own noise (issue 19: 7-35%)


def test_seed_mean_interval_covers_where_the_old_bootstrap_did_not():
    reps = 400
    new = mean_coverage(np.random.default_rng(4), 3, 100, 0.15, False, reps)
    old = mean_coverage(np.random.default_rng(4), 3, 100, 0.15, False, reps, interval=crossed_bootstrap)
    print(f"95% interval of a 3-seed mean, seed SD 15, 100 problems: t interval {new:.3f}, old bootstrap {old:.3f}")
    assert new >= 0.95 - slack(reps, 0.05)
    assert old < 0.92  # the seed-and-problem bootstrap is miscalibrated at 3 seeds, and this check sees it


def test_wilson_covers_a_rare_success_on_10_problems_where_the_percentile_bootstrap_does_not():
    """Exact coverage at 10 problems and 5% accuracy, summed over the 11 possible outcomes: the eval summary's
    Wilson interval covers about 91% (its known dip at extreme p and tiny n), the percentile bootstrap 40% (0/10
    gives the interval 0-0)."""
    from evals.metrics import ProblemResult, bootstrap_ci, summarize

    n, p = 10, 0.05
    wilson = boot = 0.0
    for x in range(n + 1):
        w = np.arange(n) < x
        s = summarize([ProblemResult(f"q{i}", [bool(v)], ["1"]) for i, v in enumerate(w)])["avg@1"]
        lo, hi = bootstrap_ci(w.astype(float), n_boot=2000)
        weight = sps.binom.pmf(x, n, p)
        wilson += weight * (s["ci_low"] <= p <= s["ci_high"])
        boot += weight * (lo <= p <= hi)
    print(f"10 problems at 5%: Wilson covers {wilson:.3f}, percentile bootstrap {boot:.3f}")
    assert wilson >= 0.90 and boot < 0.6


def test_mid_p_mcnemar_keeps_its_level_on_100_problems():
    from reports.stats import mcnemar

    rng = np.random.default_rng(6)
    reps = 300
    q = rng.uniform(0.1, 0.9, 100)
    a, b = rng.random((reps, 100)) < q, rng.random((reps, 100)) < q  # two checkpoints equally good on every problem
    rate = np.mean([mcnemar(a[i], b[i]).p_value < ALPHA for i in range(reps)])
    print(f"mid-p McNemar type I, 100 problems: {rate:.3f}")
    assert rate <= ALPHA + slack(reps)


# ------------------------------------------------------------------------------------------------ full grid

GRID = list(itertools.product((3, 10), (100, 500), (0.05, 0.10, 0.15), (False, True)))


@pytest.mark.slow
@pytest.mark.parametrize("seeds,problems,sd,collapse", GRID)
def test_welch_type1_on_the_grid(seeds, problems, sd, collapse):
    reps = 2000
    rate = welch_type1(np.random.default_rng(hash((seeds, problems, sd, collapse)) % 2**32), seeds, problems, sd,
                       collapse, reps)
    print(f"Welch type I {seeds} seeds, {problems} problems, SD {sd}, collapse={collapse}: {rate:.3f}")
    assert rate <= ALPHA + slack(reps)


@pytest.mark.slow
@pytest.mark.parametrize("seeds,problems,sd", [g[:3] for g in GRID if not g[3]])
def test_method_vs_base_type1_and_mean_coverage_on_the_grid(seeds, problems, sd):
    """Unimodal seed spreads. With seeds that collapse at random the seed distribution is bimodal, and a few seeds
    often show no collapse at all (51% of 3-seed draws, 11% of 10-seed draws): no interval for the mean, and no test
    against a fixed model at that mean, can then hold 95%; method-vs-method Welch still does (above)."""
    reps = 1500
    rng = np.random.default_rng(int(1000 * sd) + seeds + problems)
    rate = single_type1(rng, seeds, problems, sd, False, reps)
    cov = mean_coverage(rng, seeds, problems, sd, False, reps // 2)
    print(f"{seeds} seeds, {problems} problems, SD {sd}: vs base type I {rate:.3f}, mean coverage {cov:.3f}")
    assert rate <= ALPHA + slack(reps)
    assert cov >= 0.95 - slack(reps // 2)


@pytest.mark.slow
def test_old_bootstrap_vs_base_is_miscalibrated_at_3_seeds():
    """The seed-and-problem bootstrap interval of the difference method - base: the harness finds it too liberal
    (the audit of issue 19 measured 11-14% at 5%)."""
    rng = np.random.default_rng(9)
    reps, seeds, problems, sd = 400, 3, 100, 0.15
    q = rng.uniform(0.1, 0.9, problems)
    a = draw(rng, reps, seeds, q, sd, False)
    base = (rng.random((reps, problems)) < expected(q, sd, False)[None, :]).astype(np.float64)
    rejected = 0
    for i in range(reps):
        lo, hi = crossed_bootstrap(a[i] - base[i][None, :], n_boot=400, seed=i, clip=False)
        rejected += not lo <= 0.0 <= hi
    print(f"old bootstrap, method vs base, 3 seeds: type I {rejected / reps:.3f}")
    assert rejected / reps > ALPHA + slack(reps)
