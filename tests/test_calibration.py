"""Calibration of the report's statistics by simulation with a known truth, at the designs the presets use: 3 and 10
seeds per method, 100 and 500 problems of mixed difficulty shared by every method, seed SDs of 5-15 points, seeds
that sometimes collapse (as TBRM-Vref's seed 0 did, at 11%), and the regime the powered run sits in: near the floor
(base 6%), seeds that either barely leave the base model or take off (bimodal), the better method spreading more.

Data: problem p is solved with probability clip(q_p + u_s, 0, 1), q_p ~ U(0.1, 0.9) its easiness, u_s ~ N(0, sd)
the training seed's luck; a collapsed seed (probability 1/5 each) solves with probability q_p / 5. Near the floor:
q_p ~ Beta with mean 6%, and each seed either stays at q_p (probability pi) or adds a lift ~ U(5, 30) points. The
base model is one greedy run: problem p solved with the expected probability of a seed, so under H0 it equals the
method's expected accuracy on every problem. Matched seeds share a prompt-stream effect. Simulated data are drawn
with numpy in one go; the statistics are the real ones (`reports.seeds`, `reports.stats`, `reports.primaries`).

Every check is two-sided where the statistic claims its level: the simulated rate lies within 3 Monte Carlo
standard errors of nominal (the RNG is seeded, so every run draws the same data). Where no statistic can hold its
level (few seeds from two modes: all of them land in one mode too often), the check asserts the documented failure
and that the report flags it. Negative controls show the harness sees a miscalibrated statistic. The fast subset
runs in CI; `-m slow` runs the whole grid. docs/statistics.md has the numbers.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from reports.primaries import sequential_plan
from reports.seeds import calibration_note, paired_seeds, seed_mean, vs_single, welch
from reports.stats import mde, tost_p

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


def holds(rate: float, reps: int, lowest: float) -> bool:
    """A test that holds its level conservatively in this design: the rate is at most alpha (within Monte Carlo
    error) and at least `lowest`, the documented conservative rate less its Monte Carlo error (so a test that never
    rejects, or one made still more conservative, fails too)."""
    return lowest - slack(reps) <= rate <= ALPHA + slack(reps)


def near(rate: float, nominal: float, reps: int) -> bool:
    """Two-sided: the simulated rate is within 3 Monte Carlo standard errors of the nominal one."""
    return abs(rate - nominal) <= slack(reps, nominal)


LIFT = (0.05, 0.30)


def floor_problems(rng, problems: int, floor: float = 0.06) -> np.ndarray:
    """Per-problem solve probabilities of the base model near the floor (Beta, mean `floor`, most problems ~0)."""
    return rng.beta(0.5, 0.5 * (1 - floor) / floor, problems)


def floor_draw(rng, reps: int, seeds: int, q: np.ndarray, pi: float, lift=LIFT, shared=None) -> np.ndarray:
    """[reps, seeds, problems] 0/1 scores near the floor: a seed stays at q (probability pi: it barely leaves the
    base model) or takes off by a lift ~ U(lift). `shared` ([reps, seeds, 1] uniforms): the prompt stream of seed k,
    shared by matched seeds of two methods, decides both the take-off and (partly) its size."""
    u = rng.random((reps, seeds, 1)) if shared is None else shared
    g = lift[0] + (lift[1] - lift[0]) * (0.5 * u + 0.5 * rng.random((reps, seeds, 1)) if shared is not None
                                         else rng.random((reps, seeds, 1)))
    prob = np.where(u < pi, q[None, None, :], np.clip(q[None, None, :] + g, 0.0, 1.0))
    return (rng.random(prob.shape) < prob).astype(np.float64)


def floor_expected(q: np.ndarray, pi: float, lift=LIFT, grid: int = 2001) -> np.ndarray:
    """E over seeds of each problem's solve probability near the floor."""
    g = np.linspace(lift[0], lift[1], grid)
    return pi * q + (1 - pi) * np.clip(q[:, None] + g[None, :], 0.0, 1.0).mean(axis=1)


def seed_scores(rng, reps: int, seeds: int, mean: float, sd: float, problems: int = 500) -> np.ndarray:
    """[reps, seeds, 1] per-seed accuracies: a seed's expected accuracy ~ N(mean, sd) clipped to [0, 1], scored on
    `problems` problems (binomial evaluation noise). Welch and the paired t see only per-seed means."""
    p = np.clip(rng.normal(mean, sd, (reps, seeds, 1)), 0.0, 1.0)
    return rng.binomial(problems, p) / problems


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


def rate_of(test, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([test(a[i], b[i]).p_value < ALPHA for i in range(a.shape[0])]))


@pytest.mark.parametrize("collapse", [False, True])
def test_welch_keeps_its_level_at_3_seeds(collapse):
    rng = np.random.default_rng(1 + collapse)
    reps = 1500
    rate = welch_type1(rng, 3, 100, 0.15, collapse, reps=reps)
    print(f"Welch type I, 3 seeds, 100 problems, seed SD 15, collapse={collapse}: {rate:.3f}")
    assert holds(rate, reps, 0.03)  # clipped seed luck at SD 15 makes Welch a little conservative (3.2%, 4.6%)


def test_welch_keeps_its_level_with_unequal_seed_sds_where_students_df_does_not():
    """3 seeds each, seed SDs 3 and 12 points: Welch's df (about 2.1) holds 5%; the pooled df of Student's t (4)
    rejects far more often (the harness sees it)."""
    rng = np.random.default_rng(21)
    reps = 4000
    a, b = seed_scores(rng, reps, 3, 0.4, 0.03), seed_scores(rng, reps, 3, 0.4, 0.12)
    rate = rate_of(welch, a, b)
    student = float(np.mean(sps.ttest_ind(a[:, :, 0], b[:, :, 0], axis=1).pvalue < ALPHA))
    print(f"unequal seed SDs 3 vs 12 points, 3 seeds: Welch type I {rate:.3f}, Student's pooled t {student:.3f}")
    assert near(rate, ALPHA, reps)
    assert student > ALPHA + slack(reps)


@pytest.mark.parametrize("mean", [0.03, 0.97])
def test_welch_keeps_its_level_near_0_and_near_1(mean):
    rng = np.random.default_rng(22 + int(mean * 100))
    reps = 2000
    a, b = seed_scores(rng, reps, 10, mean, 0.02), seed_scores(rng, reps, 10, mean, 0.02)
    rate = rate_of(welch, a, b)
    print(f"Welch type I, 10 seeds at {mean:.0%} (clipped at the bound): {rate:.3f}")
    assert near(rate, ALPHA, reps)


def test_welch_keeps_its_level_with_a_method_by_problem_interaction():
    """A is better on hard problems and worse on easy ones by the same amount: equal expected accuracy, so H0
    holds for the methods' means though every problem differs."""
    rng = np.random.default_rng(23)
    reps, problems = 1500, 100
    q = rng.uniform(0.1, 0.9, problems)
    tilt = 0.15 * np.sign(0.5 - q)
    tilt -= tilt.mean()
    qa = np.clip(q + tilt, 0.0, 1.0)
    a = (rng.random((reps, 10, problems)) < np.clip(qa + rng.normal(0, 0.05, (reps, 10, 1)), 0, 1)).astype(float)
    b = (rng.random((reps, 10, problems)) < np.clip(q + rng.normal(0, 0.05, (reps, 10, 1)), 0, 1)).astype(float)
    b += 0.0 * (qa.mean() - q.mean())  # same mean by construction
    assert abs(qa.mean() - q.mean()) < 1e-3
    rate = rate_of(welch, a, b)
    print(f"Welch type I with a method x problem interaction, 10 seeds: {rate:.3f}")
    assert near(rate, ALPHA, reps)


@pytest.mark.parametrize("seeds", [3, 10])
def test_welch_and_the_paired_t_keep_their_level_near_the_floor_with_bimodal_seeds(seeds):
    """Half of each method's seeds barely leave the base model, the rest take off. Unmatched seeds: Welch. Matched
    seeds (seed k of both draws the same prompts, which moves both): the paired t. A difference of two draws from
    one mixture is symmetric, so both hold even at 3 seeds."""
    rng = np.random.default_rng(30 + seeds)
    reps = 2000 if seeds == 3 else 1000
    q = floor_problems(rng, 500)
    a, b = floor_draw(rng, reps, seeds, q, 0.5), floor_draw(rng, reps, seeds, q, 0.5)
    shared = rng.random((reps, seeds, 1))
    pa, pb = floor_draw(rng, reps, seeds, q, 0.5, shared=shared), floor_draw(rng, reps, seeds, q, 0.5, shared=shared)
    w, pt = rate_of(welch, a, b), rate_of(paired_seeds, pa, pb)
    r = float(np.nanmean([np.corrcoef(pa[i].mean(1), pb[i].mean(1))[0, 1] for i in range(min(reps, 300))]))
    print(f"near the floor, bimodal, {seeds} seeds: Welch type I {w:.3f}, paired t {pt:.3f} (seed correlation "
          f"{r:.2f})")
    # both conservative here (3.3% and 2.7% at 3 seeds, 4.2% and 3.2% at 10): differences of matched seeds are
    # mostly small with occasional large ones (heavy tails), where the t is conservative
    assert holds(w, reps, 0.03) and holds(pt, reps, 0.025)
    if seeds == 10:
        assert r > 0.3  # the matched design really shares the seed effect


def test_difference_intervals_cover_at_their_level():
    """A true difference of 4 points, 3 seeds: Welch's and the paired t's 95% intervals cover it within Monte Carlo
    error (an interval with a normal quantile but a t p-value would cover about 88%)."""
    rng = np.random.default_rng(24)
    reps = 4000
    a, b = seed_scores(rng, reps, 3, 0.34, 0.05), seed_scores(rng, reps, 3, 0.30, 0.08)
    shared = rng.normal(0, 0.06, (reps, 3, 1))
    pa = np.clip(0.34 + shared + rng.normal(0, 0.03, shared.shape), 0, 1)
    pb = np.clip(0.30 + shared + rng.normal(0, 0.03, shared.shape), 0, 1)
    truth = 0.04
    cov_w = np.mean([(lambda r: r.ci_low <= truth <= r.ci_high)(welch(a[i], b[i])) for i in range(reps)])
    cov_p = np.mean([(lambda r: r.ci_low <= truth <= r.ci_high)(paired_seeds(pa[i], pb[i])) for i in range(reps)])
    print(f"95% interval of A - B, 3 seeds: Welch covers {cov_w:.3f}, paired t {cov_p:.3f}")
    assert near(cov_p, 0.95, reps)
    assert 0.95 - slack(reps) <= cov_w <= 0.975  # Welch at 3 seeds errs to the safe side (96.4%)


def test_tost_rejects_at_its_level_at_the_margin():
    """The true difference sits on the equivalence margin (5 points), 3 seeds each with a seed SD of 1 point: TOST
    at 5% declares 'equivalent' 5% of the time (with a normal quantile, or min in place of max, far more)."""
    rng = np.random.default_rng(25)
    reps = 4000
    a, b = seed_scores(rng, reps, 3, 0.35, 0.01, 5000), seed_scores(rng, reps, 3, 0.30, 0.01, 5000)
    res = [welch(a[i], b[i]) for i in range(reps)]
    rate = float(np.mean([tost_p(r.diff, r.details["se"], r.details["df"], 0.05) < ALPHA for r in res]))
    print(f"TOST at the margin, 3 seeds: type I {rate:.3f}")
    assert near(rate, ALPHA, reps)


def test_power_at_the_printed_mde():
    """The MDE that a design prints is the difference it detects with 80% power: the paired t at its pairs - 1 df
    (exact for normal differences), and Welch at the smaller seed count - 1 df, which errs to more power (about
    84% at 10 seeds) where Welch's own df would promise 80% and give 67-79% at 3-10 seeds."""
    rng = np.random.default_rng(26)
    reps, n, sd = 3000, 10, 0.06
    se = sd / np.sqrt(n)
    d = mde(se, n - 1, ALPHA, 0.8)
    diffs = rng.normal(d, sd, (reps, n))
    power = float(np.mean(sps.ttest_1samp(diffs, 0.0, axis=1).pvalue < ALPHA))
    print(f"paired t, 10 pairs: MDE {100 * d:.1f} points, power there {power:.3f}")
    assert near(power, 0.8, reps)
    sda, sdb = 0.12, 0.04  # near the floor the better method spreads more
    se_w = np.sqrt((sda ** 2 + sdb ** 2) / n)
    d = mde(se_w, n - 1, ALPHA, 0.8)
    a, b = rng.normal(d, sda, (reps, n)), rng.normal(0.0, sdb, (reps, n))
    power = float(np.mean(sps.ttest_ind(a, b, axis=1, equal_var=False).pvalue < ALPHA))
    print(f"Welch, 10 seeds, seed SDs 12 and 4 points: MDE {100 * d:.1f} points, power there {power:.3f}")
    assert 0.8 - slack(reps, 0.8) <= power <= 0.95


def test_a_method_against_the_base_model_keeps_its_level_and_the_naive_t_does_not():
    rng = np.random.default_rng(3)
    reps = 1500
    ok = single_type1(rng, 10, 100, 0.05, False, reps=reps)
    naive = single_type1(np.random.default_rng(3), 10, 100, 0.05, False, reps=reps, naive=True)
    print(f"method vs base, 10 seeds, 100 problems, seed SD 5: type I {ok:.3f}; one-sample t: {naive:.3f}")
    assert holds(ok, reps, 0.01)  # var(base over problems) / P bounds its evaluation noise from above: 1.4%
    assert naive > 0.2  # the harness sees a test that ignores the base model's own noise (issue 19: 7-35%)


def test_method_vs_base_holds_its_level_where_the_base_models_noise_dominates():
    """10 seeds 1 point apart, a base model on 100 problems of equal difficulty (so var(its scores) / P is its
    evaluation noise exactly): the test rejects 5% of the time; half the base's variance would reject far more."""
    rng = np.random.default_rng(31)
    reps, problems = 2000, 100
    prob = np.clip(0.5 + rng.normal(0.0, 0.01, (reps, 10, 1)), 0, 1) * np.ones((1, 1, problems))
    a = (rng.random(prob.shape) < prob).astype(np.float64)
    base = (rng.random((reps, 1, problems)) < 0.5).astype(np.float64)
    rate = rate_of(vs_single, a, base)
    print(f"method vs base, base noise dominating: type I {rate:.3f}")
    # df = S - 1 is conservative when the base's noise (P - 1 df) dominates: 2.4%; half its variance gives ~10%
    assert holds(rate, reps, 0.015)


def test_method_vs_base_near_the_floor_holds_at_10_seeds_and_is_flagged_at_3():
    """Near the floor, half the seeds collapsing: against the base model the t on S - 1 df holds 5% at 10 seeds.
    At 3 seeds all three land in one mode a quarter of the time, and no test holds (13% here); the report says so
    beside the number (`calibration_note`)."""
    rng = np.random.default_rng(27)
    q = floor_problems(rng, 500)
    base_p = floor_expected(q, 0.5)
    out = {}
    for seeds, reps in ((10, 1000), (3, 1000)):
        a = floor_draw(rng, reps, seeds, q, 0.5)
        base = (rng.random((reps, q.size)) < base_p[None, :]).astype(np.float64)
        out[seeds] = rate_of(vs_single, a, base[:, None, :])
    print(f"method vs base near the floor, half collapsing: type I {out[10]:.3f} at 10 seeds, {out[3]:.3f} at 3")
    assert near(out[10], ALPHA, 1000)
    assert out[3] > ALPHA + slack(1000)
    assert calibration_note(3) is not None and calibration_note(10) is None


def test_seed_mean_interval_covers_where_the_old_bootstrap_did_not():
    reps = 2000
    new = mean_coverage(np.random.default_rng(4), 3, 100, 0.15, False, reps)
    old = mean_coverage(np.random.default_rng(4), 3, 100, 0.15, False, reps // 5, interval=crossed_bootstrap)
    print(f"95% interval of a 3-seed mean, seed SD 15, 100 problems: t interval {new:.3f}, old bootstrap {old:.3f}")
    assert 0.95 - slack(reps) <= new <= 0.985  # the problems' share makes it a little conservative (96.9%)
    assert old < 0.92  # the seed-and-problem bootstrap is miscalibrated at 3 seeds, and this check sees it


def test_seed_mean_interval_near_the_floor_holds_at_10_seeds_and_is_flagged_at_3():
    """Near the floor, half the seeds collapsing: from 10 seeds the wider of the t and the symmetric bootstrap-t
    intervals covers at least 95% (t alone: 93%); at 3 seeds nothing can (85% here), and the report flags it."""
    rng = np.random.default_rng(28)
    q = floor_problems(rng, 500)
    truth = float(floor_expected(floor_problems(np.random.default_rng(99), 200_000), 0.5, grid=101).mean())
    out = {}
    for seeds, reps in ((10, 600), (3, 1000)):
        m = floor_draw(rng, reps, seeds, q, 0.5)
        out[seeds] = float(np.mean([(lambda r: r.ci_low <= truth <= r.ci_high)(seed_mean(m[i]))
                                    for i in range(reps)]))
    print(f"seed-mean coverage near the floor, half collapsing: {out[10]:.3f} at 10 seeds, {out[3]:.3f} at 3")
    assert 0.95 - slack(600, 0.05) <= out[10] <= 0.99
    assert out[3] < 0.95 - slack(1000, 0.05)
    assert calibration_note(3) is not None


def test_group_sequential_looks_keep_the_overall_level_and_naive_peeking_does_not():
    """Looks at 5, 10, 15 and 20 matched seed pairs under H0, the paired t at each look against the O'Brien-Fleming
    nominal levels: the rejection rate over all looks is alpha; testing at 5% at every look is not."""
    rng = np.random.default_rng(29)
    plan = sequential_plan([5, 10, 15, 20], alpha=2 * ALPHA, n_primaries=1)  # one claim at alpha 0.05
    assert plan["claim_alpha"] == pytest.approx(ALPHA)
    reps = 4000
    for name, d in (("normal", rng.normal(0.0, 0.08, (reps, 20))),
                    ("bimodal", np.where(rng.random((reps, 20)) < 0.5, 0.0, 0.2) - np.where(
                        rng.random((reps, 20)) < 0.5, 0.0, 0.2) + rng.normal(0, 0.01, (reps, 20)))):
        stop = np.zeros(reps, bool)
        peek = np.zeros(reps, bool)
        for n, level in zip(plan["blocks"], plan["nominal"]):
            p = sps.ttest_1samp(d[:, :n], 0.0, axis=1).pvalue
            stop |= p < level
            peek |= p < ALPHA
        print(f"sequential, {name} differences: overall type I {stop.mean():.3f}; peeking at 5%: {peek.mean():.3f}")
        assert near(float(stop.mean()), ALPHA, reps)
        assert peek.mean() > ALPHA + 3 * slack(reps)


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
    assert 0.90 <= wilson <= 0.92 and boot < 0.6


def test_mid_p_mcnemar_keeps_its_level_on_100_problems():
    from reports.stats import mcnemar

    rng = np.random.default_rng(6)
    reps = 600
    q = rng.uniform(0.1, 0.9, 100)
    a, b = rng.random((reps, 100)) < q, rng.random((reps, 100)) < q  # two checkpoints equally good on every problem
    rate = np.mean([mcnemar(a[i], b[i]).p_value < ALPHA for i in range(reps)])
    print(f"mid-p McNemar type I, 100 problems: {rate:.3f}")
    assert near(float(rate), ALPHA, reps)


# ------------------------------------------------------------------------------------------------ full grid

GRID = list(itertools.product((3, 10), (100, 500), (0.05, 0.10, 0.15), (False, True)))


@pytest.mark.slow
@pytest.mark.parametrize("seeds,problems,sd,collapse", GRID)
def test_welch_type1_on_the_grid(seeds, problems, sd, collapse):
    reps = 2000
    rate = welch_type1(np.random.default_rng(hash((seeds, problems, sd, collapse)) % 2**32), seeds, problems, sd,
                       collapse, reps)
    print(f"Welch type I {seeds} seeds, {problems} problems, SD {sd}, collapse={collapse}: {rate:.3f}")
    if seeds >= 10 and not collapse:
        assert near(rate, ALPHA, reps)
    else:  # 3 seeds, or bimodal seeds: Welch is conservative here (2-4%, clipped seed luck; docs/statistics.md)
        assert holds(rate, reps, 0.02)


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
    # Conservative on this grid, down to 0% where the base model's problem-level noise dominates (100 problems,
    # seed SD 5 points): that noise is added to the seed variance whole, though the problems are shared. So only
    # the level is bounded here; the designs above with a documented floor (`holds`) catch a test that never rejects.
    assert rate <= ALPHA + slack(reps)
    assert 0.95 - slack(reps // 2) <= cov <= 0.999  # the wider interval from 10 seeds covers 95-99%


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
