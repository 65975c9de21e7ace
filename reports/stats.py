"""Is a difference between two methods real? Paired tests over the same benchmark problems.

Two methods scored on the SAME problems give paired per-problem scores a[i], b[i] (avg@k in [0, 1], or 0/1
for single samples). Pairing removes the between-problem variance (some problems are just hard), which
makes these tests much more sensitive than comparing two independent accuracies.

The tests themselves come from the libraries reviewers already trust; this module only pairs the data, picks
the test and words the result:

* :func:`paired_bootstrap` -- ``scipy.stats.bootstrap`` (paired percentile interval of mean(a - b), resampling
  problems); p-value by inverting that interval on scipy's bootstrap distribution.
* :func:`paired_permutation` -- ``scipy.stats.permutation_test`` (sign flips of the per-problem differences).
* :func:`mcnemar` -- ``statsmodels.stats.contingency_tables.mcnemar`` (exact binomial / continuity-corrected
  chi-square) on single-sample 0/1 outcomes.
* :func:`adjust` -- ``statsmodels.stats.multitest.multipletests`` (Holm by default) over a report's comparisons.
* :func:`compare` pairs two ``{problem_id: score}`` dicts and picks a test; :func:`describe` words a result,
  its verdict following the ADJUSTED p-value when one is given.

The seed-and-problem bootstrap, which no library offers, lives in `reports.seeds`.

References
----------
* Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13 (percentile interval), ch. 15-16
  (bootstrap hypothesis tests; the achieved significance level of a CI-inverted test).
* Good 2005, "Permutation, Parametric and Bootstrap Tests of Hypotheses", §3 (paired sign-flip test).
  Phipson & Smyth 2010, "Permutation P-values Should Never Be Zero": the (B+1) correction.
* McNemar 1947, Psychometrika 12:153-157; Edwards 1948 (continuity correction); Fagerland, Lydersen & Laake
  2013, BMC Med Res Methodol 13:91 (exact conditional McNemar test).
* Agresti & Min 2005, Statistics in Medicine 24:729-740 (Wald CI for paired proportions after adding 0.5
  to each cell of the 2x2 table).
* Holm 1979, Scand. J. Statist. 6:65-70 (step-down family-wise error control).
* Dror et al. 2018, "The Hitchhiker's Guide to Testing Statistical Significance in NLP", ACL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats import contingency_tables, multitest

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
    "MCNEMAR_EXACT_BELOW",
    "PERMUTATION_EXACT_MAX",
]

# McNemar: use the exact binomial test when the number of discordant pairs is below this.
MCNEMAR_EXACT_BELOW = 25
# Sign-flip test: enumerate all 2**m signings when there are at most this many non-zero differences.
PERMUTATION_EXACT_MAX = 16


@dataclass
class PairedResult:
    """Outcome of a paired comparison of method A against method B.

    test: "paired_bootstrap", "paired_permutation", "mcnemar" or "seed_problem_bootstrap" (`reports.seeds`).
    n: number of paired problems.
    diff: mean(a - b) over problems (for 0/1 scores: accuracy of A minus accuracy of B), in score units.
    ci_low, ci_high: confidence interval for diff (None when the test gives none); level in details["ci_level"].
    p_value: two-sided p-value for H0 "no difference", in (0, 1], of this one comparison (not adjusted).
    details: test-specific numbers (counts, n_boot, seed, method, ...), JSON-serialisable.
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


def mcnemar(
    a_correct: Sequence[bool],
    b_correct: Sequence[bool],
    alpha: float = 0.05,
    method: str = "auto",
) -> PairedResult:
    """McNemar's test for paired single-sample outcomes (McNemar 1947), by
    ``statsmodels.stats.contingency_tables.mcnemar``.

    Discordant counts: b10 = #(A right, B wrong), b01 = #(A wrong, B right); concordant pairs carry no
    information about the difference. Under H0, b10 ~ Binomial(b01 + b10, 1/2).
      * "exact" (used by "auto" when b01 + b10 < 25): the exact binomial test (Fagerland et al. 2013).
      * "chi2" (used by "auto" otherwise): X = (|b10 - b01| - 1)**2 / N with Edwards' continuity correction,
        p = P(chi2_1 >= X).
    No discordant pair gives p = 1 (statsmodels would divide by zero for chi2).
    diff = (b10 - b01) / n = acc(A) - acc(B). CI (level 1 - alpha): Wald interval after adding 0.5 to each
    of the four cells (Agresti & Min 2005; statsmodels has no paired-proportion interval), clipped to [-1, 1].
    details: b01, b10, n11 (both right), n00 (both wrong), method, statistic (chi2 only), ci_level.
    """
    _check_alpha(alpha)
    if method not in ("auto", "exact", "chi2"):
        raise ValueError(f"method must be 'auto', 'exact' or 'chi2', got {method!r}")
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
    if method == "auto":
        method = "exact" if disc < MCNEMAR_EXACT_BELOW else "chi2"
    details: dict[str, Any] = {"b01": b01, "b10": b10, "n11": n11, "n00": n00, "method": method,
                               "implementation": "statsmodels.stats.contingency_tables.mcnemar"}
    if disc == 0:
        p = 1.0
        if method == "chi2":
            details["statistic"] = 0.0
    else:
        res = contingency_tables.mcnemar([[n11, b10], [b01, n00]], exact=method == "exact", correction=True)
        p = float(res.pvalue)
        if method == "chi2":
            details["statistic"] = float(res.statistic)
    # Agresti & Min (2005) adjusted Wald CI for a difference of paired proportions.
    z = float(sps.norm.ppf(1.0 - alpha / 2.0))
    na, b10a, b01a = n + 2.0, b10 + 0.5, b01 + 0.5
    d_adj = (b10a - b01a) / na
    se = float(np.sqrt(max((b10a + b01a) - (b10a - b01a) ** 2 / na, 0.0))) / na
    details["ci_level"] = 1.0 - alpha
    details["ci_method"] = "Agresti-Min adjusted Wald (+0.5 per cell)"
    return PairedResult(
        test="mcnemar",
        n=n,
        diff=(b10 - b01) / n,
        ci_low=max(-1.0, d_adj - z * se),
        ci_high=min(1.0, d_adj + z * se),
        p_value=float(min(1.0, p)),
        details=details,
    )


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
    "mcnemar": "McNemar test",
    "seed_problem_bootstrap": "seed-and-problem bootstrap",
}


def _num(x: float) -> str:
    """One decimal, Unicode minus for negatives ("−2.3"), no "-0.0"."""
    s = f"{x:.1f}"
    if s in ("-0.0", "0.0"):
        return "0.0"
    return s.replace("-", "\u2212")


def _fmt_p(p: float) -> str:
    if p < 0.001:
        return "p<0.001"
    if p < 0.01:
        return f"p={p:.3f}"
    return f"p={p:.2g}"


NOT_DISTINGUISHABLE = "not distinguishable"
AFTER_CORRECTION = "not distinguishable after correction"


def verdict(result: PairedResult, alpha: float = 0.05, p_adjusted: float | None = None) -> str:
    """"A ahead", "B ahead", "not distinguishable after correction" (raw p < alpha but adjusted p >= alpha) or
    "not distinguishable". It follows `p_adjusted` when given (a report's family of comparisons), else the raw p."""
    p = result.p_value if p_adjusted is None else p_adjusted
    if p < alpha and result.diff != 0.0:
        return "A ahead" if result.diff > 0 else "B ahead"
    if p_adjusted is not None and result.p_value < alpha and result.diff != 0.0:
        return AFTER_CORRECTION
    return NOT_DISTINGUISHABLE


def describe(result: PairedResult, name_a: str, name_b: str, alpha: float = 0.05,
             p_adjusted: float | None = None, correction: str = "Holm", n_comparisons: int | None = None) -> str:
    """One honest sentence about a PairedResult, with scores in [0, 1] reported as percentage points.

    Without `p_adjusted` the verdict follows the raw p. With it (a report that makes many comparisons), the
    verdict follows the adjusted p, and both p-values are shown: "A is ahead of B by 4.2 points (95% CI 1.1 to
    7.3, p=0.002, Holm-adjusted p=0.02 over 20 comparisons, paired bootstrap over 500 problems)". A raw p under
    alpha whose adjusted p is not reads "A and B are not distinguishable after correction (...)".
    Otherwise: "A and B are not distinguishable at this sample size (diff +1.0 points, A − B; 95% CI −2.3
    to 4.4, p=0.55, paired bootstrap over 40 problems)". The CI level is the one the result was computed
    with (details["ci_level"]); `alpha` only sets the significance threshold.
    """
    test = _TEST_NAMES.get(result.test, result.test)
    has_ci = result.ci_low is not None and result.ci_high is not None
    level = result.details.get("ci_level", 1.0 - alpha)
    ci_label = f"{level * 100:.3g}% CI"
    unit = result.details.get("unit", "problem")
    where = f"{test} over {result.n} {unit}{'s' if result.n != 1 else ''}"
    if "n_seeds" in result.details:
        where = f"{test} over {result.details['n_seeds']} seeds and {result.n} problems"
    p = _fmt_p(result.p_value)
    if p_adjusted is not None:
        over = f" over {n_comparisons} comparisons" if n_comparisons else ""
        p += f", {correction}-adjusted {_fmt_p(p_adjusted)}{over}"
    v = verdict(result, alpha, p_adjusted)
    if v in ("A ahead", "B ahead"):
        if result.diff > 0:
            lead, trail, gap, ci = name_a, name_b, result.diff, (result.ci_low, result.ci_high)
        else:
            lead, trail, gap = name_b, name_a, -result.diff
            ci = (-result.ci_high, -result.ci_low) if has_ci else (None, None)
        ci_txt = f"{ci_label} {_num(ci[0] * 100)} to {_num(ci[1] * 100)}, " if has_ci else ""
        return f"{lead} is ahead of {trail} by {_num(gap * 100)} points ({ci_txt}{p}, {where})"
    signed = _num(result.diff * 100)
    if result.diff * 100 >= 0.05:
        signed = "+" + signed
    ci_txt = (
        f"; {ci_label} {_num(result.ci_low * 100)} to {_num(result.ci_high * 100)}" if has_ci else ""
    )
    what = "after correction" if v == AFTER_CORRECTION else "at this sample size"
    return (
        f"{name_a} and {name_b} are not distinguishable {what} "
        f"(diff {signed} points, {name_a} \u2212 {name_b}{ci_txt}, {p}, {where})"
    )
