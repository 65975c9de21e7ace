"""Is a difference between two methods real? Tests over the same benchmark problems, and over training seeds.

Two methods scored on the SAME problems give paired per-problem scores a[i], b[i] (avg@k in [0, 1], or 0/1
for single samples). Pairing removes the between-problem variance (some problems are just hard), which
makes these tests much more sensitive than comparing two independent accuracies. A one-seed comparison over
problems answers whether two CHECKPOINTS differ on these problems; whether two METHODS differ needs several
training seeds per method (`reports.seeds`), because one seed of a method is one draw of its training randomness.

The tests themselves come from the libraries reviewers already trust; this module only pairs the data, picks
the test and words the result:

* :func:`paired_bootstrap` -- ``scipy.stats.bootstrap`` (paired percentile interval of mean(a - b), resampling
  problems); p-value by inverting that interval on scipy's bootstrap distribution. Its smallest possible p (the
  "floor", 2 / (B + 1)) is kept in details["p_floor"], and a p at the floor prints as "p≤floor".
* :func:`paired_permutation` -- ``scipy.stats.permutation_test`` (sign flips of the per-problem differences).
* :func:`mcnemar` -- the mid-p McNemar test (``scipy.stats.binom``) on single-sample 0/1 outcomes, with the
  interval that inverts the same test.
* :func:`wilson` -- ``statsmodels.stats.proportion.proportion_confint(method="wilson")`` for one accuracy.
* :func:`t_result`, :func:`tost_p`, :func:`power_t`, :func:`mde`, :func:`seeds_needed` -- t-based p-values,
  intervals, equivalence tests (TOST) and power, for the seed-level tests of `reports.seeds` (``scipy.stats.t``
  and ``scipy.stats.nct``).
* :func:`obf_boundaries` -- group-sequential boundaries that spend alpha across planned looks with the Lan-DeMets
  O'Brien-Fleming-type spending function, from the joint normal law of the looks (``scipy.stats.multivariate_normal``).
* :func:`adjust` -- ``statsmodels.stats.multitest.multipletests`` (Holm by default) over a family of comparisons.
* :func:`compare` pairs two ``{problem_id: score}`` dicts and picks a test; :func:`describe` words a result,
  its verdict following the ADJUSTED p-value when one is given.

References
----------
* Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13 (percentile interval), ch. 15-16
  (bootstrap hypothesis tests; the achieved significance level of a CI-inverted test).
* Good 2005, "Permutation, Parametric and Bootstrap Tests of Hypotheses", §3 (paired sign-flip test).
  Phipson & Smyth 2010, "Permutation P-values Should Never Be Zero": the (B+1) correction.
* McNemar 1947, Psychometrika 12:153-157; Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91 (the
  mid-p McNemar test keeps its level where the exact and the continuity-corrected ones are conservative);
  Berry & Armitage 1995, The Statistician 44:417-423 (mid-p intervals).
* Wilson 1927, JASA 22:209-212; Brown, Cai & DasGupta 2001, Statistical Science 16:101-133 (intervals for a
  proportion at small n).
* Welch 1947, Biometrika 34:28-35 (unequal variances, Satterthwaite df); Schuirmann 1987, J Pharmacokinet
  Biopharm 15:657-680 (two one-sided tests, TOST, for equivalence).
* Lan & DeMets 1983, Biometrika 70:659-663 (alpha spending); O'Brien & Fleming 1979, Biometrics 35:549-556;
  Jennison & Turnbull 2000, "Group Sequential Methods with Applications to Clinical Trials", ch. 7 (table 7.5).
* Holm 1979, Scand. J. Statist. 6:65-70 (step-down family-wise error control).
* Dror et al. 2018, "The Hitchhiker's Guide to Testing Statistical Significance in NLP", ACL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats import multitest

__all__ = [
    "PairedResult",
    "paired_bootstrap",
    "paired_permutation",
    "mcnemar",
    "adjust",
    "holm",
    "compare",
    "describe",
    "verdict",
    "wilson",
    "t_result",
    "tost_p",
    "power_t",
    "mde",
    "seeds_needed",
    "boot_replicates",
    "obf_boundaries",
    "PERMUTATION_EXACT_MAX",
]

# Sign-flip test: enumerate all 2**m signings when there are at most this many non-zero differences.
PERMUTATION_EXACT_MAX = 16


@dataclass
class PairedResult:
    """Outcome of a paired comparison of method A against method B.

    test: "paired_bootstrap", "paired_permutation", "mcnemar", "paired_t", or a seed-level test of `reports.seeds`
        ("welch_t", "paired_seeds_t", "seeds_vs_single").
    n: number of paired problems.
    diff: mean(a - b) over problems (for 0/1 scores: accuracy of A minus accuracy of B), in score units.
    ci_low, ci_high: confidence interval for diff (None when the test gives none); level in details["ci_level"].
    p_value: two-sided p-value for H0 "no difference", in (0, 1], of this one comparison (not adjusted).
    details: test-specific numbers (counts, n_boot, seed, method, ...), JSON-serialisable; t-based tests keep
        their standard error "se" and degrees of freedom "df" (for TOST and power), a bootstrap its "p_floor".
    """

    test: str
    n: int
    diff: float
    ci_low: float | None
    ci_high: float | None
    p_value: float
    details: dict[str, Any] = field(default_factory=dict)

    def significant(self, alpha: float = 0.05) -> bool:
        """True when the UNADJUSTED p_value < alpha (a report's verdict uses the adjusted p: `verdict`)."""
        return self.p_value < alpha

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return asdict(self)


def _paired_arrays(a: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate two aligned per-problem score vectors; returns float64 arrays of shape (n,)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"a and b must be 1-D per-problem scores, got shapes {x.shape} and {y.shape}")
    if x.size != y.size:
        raise ValueError(f"a has {x.size} problems but b has {y.size}; scores must be paired by problem")
    if x.size == 0:
        raise ValueError("no problems to compare")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("scores contain NaN or inf")
    return x, y


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def ci_inversion_p(boots: np.ndarray) -> float:
    """Two-sided p of H0 "the statistic is 0" from its bootstrap distribution (Efron & Tibshirani 1993, §15.4):
    p = min(1, 2 * min(#{d* <= 0} + 1, #{d* >= 0} + 1) / (B + 1)), roughly the smallest alpha at which the
    equal-tailed percentile interval excludes 0. Resamples exactly 0 count on both sides (conservative); the +1
    keeps p > 0 (Phipson & Smyth 2010). A distribution that is all 0 gives p = 1."""
    boots = np.asarray(boots, dtype=np.float64)
    below = int(np.count_nonzero(boots <= 0.0))
    above = int(np.count_nonzero(boots >= 0.0))
    return float(min(1.0, 2.0 * (min(below, above) + 1) / (boots.size + 1)))


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedResult:
    """Paired percentile bootstrap of mean(a - b), resampling problems (``scipy.stats.bootstrap``).

    Args: a, b: per-problem scores, shape (n,), aligned by problem; n_boot resamples; CI level 1 - alpha.
    CI: scipy's percentile interval of the n_boot resampled mean differences d*. p-value (two-sided):
    :func:`ci_inversion_p` on scipy's bootstrap distribution, so p < alpha agrees with "0 outside the CI" up to
    quantile interpolation. Identical methods give p = 1.
    """
    _check_alpha(alpha)
    x, y = _paired_arrays(a, b)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    d = x - y
    if np.all(d == d[0]):  # degenerate: every resample has the same mean (scipy would warn and give NaN)
        boots = np.full(int(n_boot), float(d[0]))
        lo = hi = float(d[0])
    else:
        res = sps.bootstrap((d,), np.mean, n_resamples=int(n_boot), confidence_level=1.0 - alpha,
                            method="percentile", vectorized=True, rng=np.random.default_rng(seed))
        boots = res.bootstrap_distribution
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return PairedResult(
        test="paired_bootstrap",
        n=int(d.size),
        diff=float(d.mean()),
        ci_low=lo,
        ci_high=hi,
        p_value=ci_inversion_p(boots),
        details={
            "n_boot": int(boots.size),
            "p_floor": 2.0 / (boots.size + 1),
            "seed": int(seed),
            "ci_level": 1.0 - alpha,
            "implementation": "scipy.stats.bootstrap (percentile)",
            "p_method": "percentile CI inversion: 2*min(P(d*<=0), P(d*>=0)), (count+1)/(B+1)",
        },
    )


def _mean_last_axis(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def paired_permutation(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_perm: int = 10000,
    seed: int = 0,
) -> PairedResult:
    """Two-sided sign-flip permutation test of H0 "a[i] - b[i] is symmetric about 0" (Good 2005, §3), by
    ``scipy.stats.permutation_test(..., permutation_type="samples")`` on the non-zero differences.

    Under H0 swapping A and B within a problem is exchangeable, so each non-zero difference keeps or flips its
    sign with probability 1/2; zero differences carry no information and are dropped (so "exact" enumerates
    2**m signings of the m non-zero ones). scipy enumerates all signings when 2**m <= n_perm (at most
    2**PERMUTATION_EXACT_MAX here), else draws n_perm random ones with p = (count + 1) / (n_perm + 1) per
    side. Two-sided p = 2 * min(one-sided p), which for this symmetric null equals P(|S| >= |s|).
    No CI (ci_low = ci_high = None). All differences zero gives p = 1.
    """
    x, y = _paired_arrays(a, b)
    d = x - y
    nz = d[d != 0.0]
    m = int(nz.size)
    diff = float(d.mean())
    details: dict[str, Any] = {"n_nonzero": m, "implementation": "scipy.stats.permutation_test"}
    if m <= 1:  # no difference, or one whose two signings are equally extreme (scipy needs two values)
        details.update(method="exact", n_signings=2**m)
        return PairedResult("paired_permutation", int(d.size), diff, None, None, 1.0, details)
    n_perm = int(n_perm)
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    exact = m <= PERMUTATION_EXACT_MAX
    res = sps.permutation_test((nz,), _mean_last_axis, permutation_type="samples", vectorized=True,
                               n_resamples=2**m if exact else n_perm, alternative="two-sided",
                               rng=np.random.default_rng(seed))
    if exact:
        details.update(method="exact", n_signings=2**m)
    else:
        details.update(method="monte_carlo", n_perm=n_perm, seed=int(seed))
    return PairedResult("paired_permutation", int(d.size), diff, None, None, float(min(1.0, res.pvalue)), details)


def _midp_tails(x: int, n: int, pi: float, mid: float) -> tuple[float, float]:
    """(P(X < x) + mid * P(X = x), P(X > x) + mid * P(X = x)) for X ~ Binomial(n, pi): the lower and upper one-sided
    p-values of x (mid = 0.5: mid-p; mid = 1: exact)."""
    at = float(sps.binom.pmf(x, n, pi))
    return float(sps.binom.cdf(x - 1, n, pi)) + mid * at, float(sps.binom.sf(x, n, pi)) + mid * at


def _invert_binomial(x: int, n: int, alpha: float, mid: float) -> tuple[float, float]:
    """Equal-tailed interval for pi of X ~ Binomial(n, pi) observed at x, inverting the one-sided tails of
    `_midp_tails` at alpha / 2 each (mid = 1: Clopper-Pearson; mid = 0.5: the mid-p interval, Berry & Armitage
    1995). n = 0 gives [0, 1]. pi = 1/2 lies outside it iff 2 * min(tails at 1/2) < alpha."""
    from scipy.optimize import brentq

    if n == 0:
        return 0.0, 1.0
    lo = 0.0 if x == 0 else brentq(lambda p: _midp_tails(x, n, p, mid)[1] - alpha / 2, 1e-15, 1 - 1e-15)
    hi = 1.0 if x == n else brentq(lambda p: _midp_tails(x, n, p, mid)[0] - alpha / 2, 1e-15, 1 - 1e-15)
    return float(lo), float(hi)


def wilson(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion (``statsmodels.stats.proportion.proportion_confint``, Wilson 1927;
    Brown, Cai & DasGupta 2001 recommend it for small n): 0 of 10 gives (0, 0.28), not the percentile
    bootstrap's (0, 0)."""
    from statsmodels.stats.proportion import proportion_confint

    if n < 1:
        raise ValueError(f"a proportion needs n >= 1, got {n}")
    lo, hi = proportion_confint(int(successes), int(n), alpha=alpha, method="wilson")
    share = successes / n  # the interval holds it; rounding at 0/n and n/n could leave it a hair outside
    return max(0.0, min(float(lo), share)), min(1.0, max(float(hi), share))


def mcnemar(
    a_correct: Sequence[bool],
    b_correct: Sequence[bool],
    alpha: float = 0.05,
    method: str = "auto",
) -> PairedResult:
    """McNemar's test for paired single-sample outcomes (McNemar 1947) as the mid-p binomial test (Fagerland,
    Lydersen & Laake 2013: the exact conditional test and the continuity-corrected chi-square are conservative;
    the mid-p test holds its level closely at every sample size).

    Discordant counts: b10 = #(A right, B wrong), b01 = #(A wrong, B right); concordant pairs carry no
    information about the difference. Under H0, b10 ~ Binomial(N = b01 + b10, 1/2).
      * "midp" (the default; "auto" means it): p = 2 * min(P(X < b10) + P(X = b10) / 2, P(X > b10) + P(X = b10) / 2).
      * "exact": the same with the whole P(X = b10) in each tail (the exact conditional test).
    No discordant pair gives p = 1.

    diff = (b10 - b01) / n = acc(A) - acc(B) = (2 pi - 1) rho, where pi = P(A wins | discordant) and rho the
    discordance rate. CI (level 1 - alpha): the interval for pi that inverts the SAME binomial test (mid-p or
    exact), mapped to the difference over the Wilson interval of rho (the widest of the ends it allows; rho > 0
    whenever a pair is discordant, so each end keeps the sign of 2 pi - 1). So the interval excludes 0 exactly
    when p < alpha: the interval and the verdict cannot
    disagree. details: b01, b10, n11 (both right), n00 (both wrong), method, ci_level, ci_method.
    """
    _check_alpha(alpha)
    if method == "auto":
        method = "midp"
    if method not in ("midp", "exact"):
        raise ValueError(f"method must be 'auto', 'midp' or 'exact', got {method!r}")
    if len(a_correct) != len(b_correct):
        raise ValueError(f"a has {len(a_correct)} problems but b has {len(b_correct)}; outcomes must be paired")
    if len(a_correct) == 0:
        raise ValueError("no problems to compare")
    xa = np.asarray([bool(v) for v in a_correct])
    xb = np.asarray([bool(v) for v in b_correct])
    n = int(xa.size)
    b10 = int(np.count_nonzero(xa & ~xb))
    b01 = int(np.count_nonzero(~xa & xb))
    n11 = int(np.count_nonzero(xa & xb))
    n00 = n - b10 - b01 - n11
    disc = b01 + b10
    mid = 0.5 if method == "midp" else 1.0
    if disc == 0:
        p = 1.0
    else:
        lower, upper = _midp_tails(b10, disc, 0.5, mid)
        p = min(1.0, 2.0 * min(lower, upper))
    pi_lo, pi_hi = _invert_binomial(b10, disc, alpha, mid)
    rho_lo, rho_hi = wilson(disc, n, alpha)
    g_lo, g_hi = 2.0 * pi_lo - 1.0, 2.0 * pi_hi - 1.0
    lo, hi = min(g_lo * rho_lo, g_lo * rho_hi), max(g_hi * rho_lo, g_hi * rho_hi)  # widest over rho's interval
    details: dict[str, Any] = {"b01": b01, "b10": b10, "n11": n11, "n00": n00, "method": method,
                               "implementation": "scipy.stats.binom (mid-p McNemar)" if mid == 0.5 else
                               "scipy.stats.binom (exact conditional McNemar)",
                               "ci_level": 1.0 - alpha,
                               "ci_method": f"{'mid-p' if mid == 0.5 else 'Clopper-Pearson'} interval of the share "
                                            f"of discordant pairs won by A, times the Wilson interval of the "
                                            f"discordance rate"}
    return PairedResult(
        test="mcnemar",
        n=n,
        diff=(b10 - b01) / n,
        ci_low=float(max(-1.0, lo)),
        ci_high=float(min(1.0, hi)),
        p_value=float(p),
        details=details,
    )


def boot_replicates(n_comparisons: int, alpha: float = 0.05, minimum: int = 10_000) -> int:
    """Bootstrap replicates for a family of `n_comparisons`: enough that the smallest p a CI-inverted bootstrap can
    give, 2 / (B + 1), lies 100 times below alpha / m (Holm's first threshold), so no decision depends on the
    floor; at least `minimum`."""
    return max(int(minimum), int(np.ceil(200.0 * max(1, n_comparisons) / alpha)))


def t_result(test: str, n: int, diff: float, se: float, df: float, alpha: float = 0.05,
             details: dict[str, Any] | None = None) -> PairedResult:
    """A PairedResult from a t statistic: two-sided p = 2 P(T_df > |diff| / se), interval diff +- t_{1-alpha/2, df}
    se (so p < alpha iff 0 is outside it). se = 0 gives p = 1 and the interval [diff, diff] when diff = 0; a
    nonzero diff with se = 0 must be handled by the caller (no variance to test against)."""
    _check_alpha(alpha)
    if not (np.isfinite(se) and se >= 0.0 and np.isfinite(df) and df > 0.0):
        raise ValueError(f"t test needs a finite se >= 0 and df > 0, got se={se}, df={df}")
    if se == 0.0:
        if diff != 0.0:
            raise ValueError("a nonzero difference with zero standard error has no t test")
        p, lo, hi = 1.0, diff, diff
    else:
        p = float(min(1.0, 2.0 * sps.t.sf(abs(diff) / se, df)))
        half = float(sps.t.ppf(1.0 - alpha / 2.0, df)) * se
        lo, hi = diff - half, diff + half
    return PairedResult(test, int(n), float(diff), float(lo), float(hi), p,
                        {"se": float(se), "df": float(df), "ci_level": 1.0 - alpha, **(details or {})})


def tost_p(diff: float, se: float, df: float, margin: float) -> float:
    """Two one-sided t-tests (Schuirmann 1987) of H0 "|true difference| >= margin": p = max(P(T_df >= (diff +
    margin) / se), P(T_df <= (diff - margin) / se)); p < alpha means "equivalent within +-margin" at level alpha
    (the 1 - 2 alpha interval lies inside (-margin, margin)). se = 0: 0 when |diff| < margin, else 1."""
    if margin <= 0.0:
        raise ValueError(f"the equivalence margin must be > 0, got {margin}")
    if se == 0.0:
        return 0.0 if abs(diff) < margin else 1.0
    return float(max(sps.t.sf((diff + margin) / se, df), sps.t.cdf((diff - margin) / se, df)))


def power_t(delta: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Power of the two-sided level-alpha t test (df, standard error se) against a true difference delta, from the
    noncentral t distribution (``scipy.stats.nct``, noncentrality delta / se)."""
    if se <= 0.0:
        return 1.0 if delta != 0.0 else alpha
    crit = float(sps.t.ppf(1.0 - alpha / 2.0, df))
    nc = abs(delta) / se
    power = float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))
    if not np.isfinite(power):  # scipy's nct gives NaN far in the tail, where the power is 1
        return 1.0 if nc > crit else alpha
    return power


def mde(se: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference: the true |difference| that the two-sided level-alpha t test with this se and
    df detects with probability `power` (0 when se = 0)."""
    from scipy.optimize import brentq

    if se <= 0.0:
        return 0.0
    hi = se
    while power_t(hi, se, df, alpha) < power:
        hi *= 2.0
    return float(brentq(lambda d: power_t(d, se, df, alpha) - power, 0.0, hi))


def seeds_needed(diff: float, design, alpha: float = 0.05, power: float = 0.8, most: int = 100_000) -> int | None:
    """The smallest number of seeds n (per method; from 2) at which the t test of `design(n) -> (se, df)` detects a
    true difference `diff` with probability `power`; None when diff = 0 or not even `most` seeds would."""
    if diff == 0.0 or not np.isfinite(diff):
        return None

    def ok(n: int) -> bool:
        se, df = design(n)
        return power_t(diff, se, df, alpha) >= power

    if not ok(most):
        return None
    lo, hi = 2, most
    if ok(lo):
        return lo
    while hi - lo > 1:  # power grows with n: bisect for the first n that reaches it
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def obf_spent(t: float, alpha: float) -> float:
    """Lan-DeMets O'Brien-Fleming-type spending function, two-sided (each side spends alpha / 2 by
    2 - 2 Phi(z_{1 - alpha/4} / sqrt(t))): the two-sided alpha spent by information fraction t in (0, 1], alpha at
    t = 1."""
    return float(4.0 - 4.0 * sps.norm.cdf(sps.norm.ppf(1.0 - alpha / 4.0) / np.sqrt(t)))


def obf_boundaries(fractions: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Two-sided z boundaries c_1..c_K of a group-sequential test with looks at information fractions `fractions`
    (increasing, the last 1), spending alpha by `obf_spent`: c_k solves P(|Z_j| < c_j for j < k, |Z_k| >= c_k) =
    spent(t_k) - spent(t_{k-1}) under H0, where (Z_1..Z_K) is normal with corr(Z_i, Z_j) = sqrt(t_i / t_j) (the
    canonical joint law of a statistic recomputed on accumulating data; Jennison & Turnbull 2000, ch. 7). A test
    stops at look k when |Z_k| >= c_k; with a t statistic, compare its p with the nominal level 2 (1 - Phi(c_k)).
    Four equal looks at alpha 0.05 give 4.33, 2.96, 2.36, 2.01."""
    _check_alpha(alpha)
    t = np.asarray(fractions, dtype=np.float64)
    if t.ndim != 1 or t.size < 1 or not np.all(np.diff(t) > 0.0) or t[0] <= 0.0 or abs(t[-1] - 1.0) > 1e-12:
        raise ValueError(f"information fractions must increase from > 0 to 1, got {list(fractions)}")
    from scipy.optimize import brentq

    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    bounds: list[float] = []
    for k in range(t.size):
        target = obf_spent(t[k], alpha) - (obf_spent(t[k - 1], alpha) if k else 0.0)
        if k == 0:
            bounds.append(float(sps.norm.isf(target / 2.0)))
            continue
        law = sps.multivariate_normal(np.zeros(k + 1), cov[: k + 1, : k + 1], seed=0)
        law_prev = sps.multivariate_normal(np.zeros(k), cov[:k, :k], seed=0)
        prev = np.asarray(bounds)
        cont = float(law_prev.cdf(prev, lower_limit=-prev)) if k > 1 else 1.0 - 2.0 * sps.norm.sf(prev[0])

        def crossed(c: float) -> float:  # P(continue to look k, then cross at look k) - target
            inside = float(law.cdf(np.append(prev, c), lower_limit=-np.append(prev, c)))
            return cont - inside - target

        bounds.append(float(brentq(crossed, 0.5, 12.0, xtol=1e-6)))
    return bounds


CORRECTIONS = {"holm": "Holm", "bonferroni": "Bonferroni", "fdr_bh": "Benjamini-Hochberg"}


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values over a family of comparisons (``statsmodels.stats.multitest.multipletests``).
    method: "holm" (default; Holm 1979, family-wise error control without independence assumptions),
    "bonferroni" or "fdr_bh" (false discovery rate). An empty family gives []."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}")
    ps = [float(p) for p in pvalues]
    if not ps:
        return []
    if not all(0.0 <= p <= 1.0 for p in ps):
        raise ValueError(f"p-values must be in [0, 1], got {ps}")
    return [float(x) for x in multitest.multipletests(ps, method=method)[1]]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values (family-wise error control over all comparisons)."""
    return adjust(pvalues, "holm")


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0.0) | (values == 1.0)))


def compare(
    a: Mapping[str, float],
    b: Mapping[str, float],
    test: str = "auto",
    n_boot: int = 10000,
    n_perm: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedResult:
    """Compare two methods' per-problem scores ``{problem_id: score}``, paired by problem id.

    Raises ValueError (listing up to 5 ids each way) when the two dicts do not cover the same problems,
    and when they are empty. Problems are sorted by id, so the result does not depend on dict order.
    test: "auto" picks "mcnemar" when every score of both methods is exactly 0 or 1 (single-sample
    correctness; note an avg@k score can also be all 0/1 by chance -- pass test="bootstrap" then), else
    "bootstrap"; "permutation" runs :func:`paired_permutation`.
    """
    if test not in ("auto", "mcnemar", "bootstrap", "permutation"):
        raise ValueError(f"test must be 'auto', 'mcnemar', 'bootstrap' or 'permutation', got {test!r}")
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    if only_a or only_b:
        raise ValueError(
            "methods were not scored on the same problems: "
            f"{len(only_a)} id(s) only in a (e.g. {only_a[:5]}), "
            f"{len(only_b)} id(s) only in b (e.g. {only_b[:5]}); "
            "restrict both to their common problems before comparing"
        )
    ids = sorted(a)
    if not ids:
        raise ValueError("no problems to compare")
    x, y = _paired_arrays([a[i] for i in ids], [b[i] for i in ids])
    if test == "auto":
        test = "mcnemar" if _is_binary(x) and _is_binary(y) else "bootstrap"
    if test == "mcnemar":
        if not (_is_binary(x) and _is_binary(y)):
            raise ValueError("McNemar needs 0/1 single-sample scores; use test='bootstrap' for avg@k scores")
        return mcnemar(x == 1.0, y == 1.0, alpha=alpha)
    if test == "permutation":
        return paired_permutation(x, y, n_perm=n_perm, seed=seed)
    return paired_bootstrap(x, y, n_boot=n_boot, alpha=alpha, seed=seed)


_TEST_NAMES = {
    "paired_bootstrap": "paired bootstrap",
    "paired_permutation": "sign-flip permutation test",
    "mcnemar": "mid-p McNemar test",
    "paired_t": "paired t-test",
    "welch_t": "Welch's t-test on per-seed scores",
    "paired_seeds_t": "paired t-test over matched seeds",
    "seeds_vs_single": "t-test of the seed mean against one model (its problem-level noise added)",
}


def _num(x: float) -> str:
    """One decimal, Unicode minus for negatives ("−2.3"), no "-0.0"."""
    s = f"{x:.1f}"
    if s in ("-0.0", "0.0"):
        return "0.0"
    return s.replace("-", "\u2212")


def at_floor(p: float, floor: float | None) -> bool:
    """True when p is the smallest value its bootstrap can give (the true p may be smaller)."""
    return floor is not None and p <= floor * (1.0 + 1e-9)


def _fmt_p(p: float, floor: float | None = None) -> str:
    if at_floor(p, floor):
        return f"p\u2264{floor:.2g}"
    if p < 0.001:
        return "p<0.001"
    if p < 0.01:
        return f"p={p:.3f}"
    return f"p={p:.2g}"


NOT_DISTINGUISHABLE = "not distinguishable"
AFTER_CORRECTION = "not distinguishable after correction"
EXPLORATORY = "exploratory"


def verdict(result: PairedResult, alpha: float = 0.05, p_adjusted: float | None = None) -> str:
    """"A ahead", "B ahead", "not distinguishable after correction" (raw p < alpha but adjusted p >= alpha) or
    "not distinguishable". It follows `p_adjusted` when given (a report's family of comparisons), else the raw p."""
    p = result.p_value if p_adjusted is None else p_adjusted
    if p < alpha and result.diff != 0.0:
        return "A ahead" if result.diff > 0 else "B ahead"
    if p_adjusted is not None and result.p_value < alpha and result.diff != 0.0:
        return AFTER_CORRECTION
    return NOT_DISTINGUISHABLE


def _where(result: PairedResult) -> str:
    test = _TEST_NAMES.get(result.test, result.test)
    unit = result.details.get("unit", "problem")
    if "n_seeds" in result.details:
        return f"{test} over {result.details['n_seeds']} seeds and {result.n} problems"
    return f"{test} over {result.n} {unit}{'s' if result.n != 1 else ''}"


def describe(result: PairedResult, name_a: str, name_b: str, alpha: float = 0.05,
             p_adjusted: float | None = None, correction: str = "Holm", n_comparisons: int | None = None,
             about: str = "methods") -> str:
    """One honest sentence about a PairedResult, with scores in [0, 1] reported as percentage points.

    Without `p_adjusted` the verdict follows the raw p. With it (a report that makes many comparisons), the
    verdict follows the adjusted p, and both p-values are shown: "A is ahead of B by 4.2 points (95% CI 1.1 to
    7.3, p=0.002, Holm-adjusted p=0.02 over 20 comparisons, paired bootstrap over 500 problems)". A raw p under
    alpha whose adjusted p is not reads "A and B are not distinguishable after correction (...)".
    Otherwise: "A and B are not distinguishable at this sample size (diff +1.0 points, A − B; 95% CI −2.3
    to 4.4, p=0.55, paired bootstrap over 40 problems)". The CI level is the one the result was computed
    with (details["ci_level"]); `alpha` only sets the significance threshold. A p at its bootstrap floor reads
    "p≤floor" (the adjusted one too: it is then an upper bound).

    about="checkpoints" words it about two trained checkpoints (one seed of each method): "The A checkpoint is
    ahead of the B checkpoint by ... on these problems", never as a claim about the methods.
    about="exploratory" gives no verdict: "Exploratory: A − B = +4.2 points (95% CI ..., raw p=..., ...)".
    """
    if about not in ("methods", "checkpoints", "exploratory"):
        raise ValueError(f"about must be 'methods', 'checkpoints' or 'exploratory', got {about!r}")
    has_ci = result.ci_low is not None and result.ci_high is not None
    level = result.details.get("ci_level", 1.0 - alpha)
    ci_label = f"{level * 100:.3g}% CI"
    where = _where(result)
    floor = result.details.get("p_floor")
    p = _fmt_p(result.p_value, floor)
    signed = _num(result.diff * 100)
    if result.diff * 100 >= 0.05:
        signed = "+" + signed
    if about == "exploratory":
        ci_txt = f"{ci_label} {_num(result.ci_low * 100)} to {_num(result.ci_high * 100)}, " if has_ci else ""
        return (f"Exploratory: {name_a} \u2212 {name_b} = {signed} points ({ci_txt}raw {p}, not corrected for "
                f"multiple comparisons, {where})")
    if p_adjusted is not None:
        over = f" over {n_comparisons} comparisons" if n_comparisons else ""
        p += f", {correction}-adjusted {_fmt_p(p_adjusted, p_adjusted if at_floor(result.p_value, floor) else None)}"
        p += over
    v = verdict(result, alpha, p_adjusted)
    ckpt = about == "checkpoints"
    if v in ("A ahead", "B ahead"):
        if result.diff > 0:
            lead, trail, gap, ci = name_a, name_b, result.diff, (result.ci_low, result.ci_high)
        else:
            lead, trail, gap = name_b, name_a, -result.diff
            ci = (-result.ci_high, -result.ci_low) if has_ci else (None, None)
        ci_txt = f"{ci_label} {_num(ci[0] * 100)} to {_num(ci[1] * 100)}, " if has_ci else ""
        if ckpt:
            return (f"The {lead} checkpoint is ahead of the {trail} checkpoint by {_num(gap * 100)} points on these "
                    f"problems ({ci_txt}{p}, {where})")
        return f"{lead} is ahead of {trail} by {_num(gap * 100)} points ({ci_txt}{p}, {where})"
    ci_txt = (
        f"; {ci_label} {_num(result.ci_low * 100)} to {_num(result.ci_high * 100)}" if has_ci else ""
    )
    what = "after correction" if v == AFTER_CORRECTION else "at this sample size"
    subject = f"The {name_a} and {name_b} checkpoints" if ckpt else f"{name_a} and {name_b}"
    return (
        f"{subject} are not distinguishable {what} "
        f"(diff {signed} points, {name_a} \u2212 {name_b}{ci_txt}, {p}, {where})"
    )
