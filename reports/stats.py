"""Is a difference between two methods real? Paired tests over the same benchmark problems.

Two methods scored on the SAME problems give paired per-problem scores a[i], b[i] (avg@k in [0, 1], or 0/1
for single samples). Pairing removes the between-problem variance (some problems are just hard), which
makes these tests much more sensitive than comparing two independent accuracies.

* :func:`paired_bootstrap` -- CI of mean(a - b) by resampling problems; p-value by inverting that CI.
* :func:`paired_permutation` -- sign-flip (randomisation) test on the per-problem differences.
* :func:`mcnemar` -- single-sample 0/1 outcomes: exact binomial / continuity-corrected chi-square.
* :func:`compare` pairs two ``{problem_id: score}`` dicts and picks a test; :func:`describe` words a result.

All functions are pure and deterministic for a fixed seed. Only numpy and the standard library are used
(``math.erfc`` for the 1-dof chi-square tail, ``statistics.NormalDist`` for normal quantiles).

References
----------
* Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13 (percentile interval), ch. 15-16
  (bootstrap hypothesis tests; the achieved significance level of a CI-inverted test).
* Good 2005, "Permutation, Parametric and Bootstrap Tests of Hypotheses", §3 (one-sample / paired sign-flip
  test). Phipson & Smyth 2010, "Permutation P-values Should Never Be Zero": the (B+1) correction.
* McNemar 1947, Psychometrika 12:153-157; Edwards 1948, Psychometrika 13:185-187 (continuity correction);
  Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91 (exact conditional McNemar test).
* Agresti & Min 2005, Statistics in Medicine 24:729-740 (Wald CI for paired proportions after adding 0.5
  to each cell of the 2x2 table).
* Dror et al. 2018, "The Hitchhiker's Guide to Testing Statistical Significance in NLP", ACL.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

from evals.metrics import bootstrap_means

__all__ = [
    "PairedResult",
    "paired_bootstrap",
    "paired_permutation",
    "mcnemar",
    "compare",
    "describe",
    "MCNEMAR_EXACT_BELOW",
    "PERMUTATION_EXACT_MAX",
]

# McNemar: use the exact binomial test when the number of discordant pairs is below this.
MCNEMAR_EXACT_BELOW = 25
# Sign-flip test: enumerate all 2**m signings when there are at most this many non-zero differences.
PERMUTATION_EXACT_MAX = 16
_CHUNK_ELEMS = 2_000_000


@dataclass
class PairedResult:
    """Outcome of a paired comparison of method A against method B.

    test: "paired_bootstrap", "paired_permutation" or "mcnemar".
    n: number of paired problems.
    diff: mean(a - b) over problems (for 0/1 scores: accuracy of A minus accuracy of B), in score units.
    ci_low, ci_high: confidence interval for diff (None when the test gives none); level in details["ci_level"].
    p_value: two-sided p-value for H0 "no difference", in (0, 1].
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
        """True when p_value < alpha."""
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


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedResult:
    """Paired percentile bootstrap of the mean difference mean(a - b), resampling problems.

    Args: a, b: per-problem scores, shape (n,), aligned by problem; n_boot resamples; CI level 1 - alpha.
    CI: alpha/2 and 1 - alpha/2 quantiles of the n_boot resampled mean differences d*.
    p-value (two-sided): the CI-inversion ("proportion on the other side of 0") method,
        p = min(1, 2 * min(#{d* <= 0} + 1, #{d* >= 0} + 1) / (n_boot + 1)),
    i.e. roughly the smallest alpha at which the equal-tailed percentile CI excludes 0 (Efron & Tibshirani
    1993, §15.4 and §16.4), so p < alpha agrees with "0 outside the CI" up to quantile interpolation.
    Resampled differences exactly 0 count on both sides (conservative); the +1 keeps p > 0
    (Phipson & Smyth 2010). Identical methods give p = 1.
    """
    _check_alpha(alpha)
    x, y = _paired_arrays(a, b)
    d = x - y
    boots = bootstrap_means(d, n_boot, seed)
    lo, hi = np.quantile(boots, [alpha / 2.0, 1.0 - alpha / 2.0])
    below = int(np.count_nonzero(boots <= 0.0))
    above = int(np.count_nonzero(boots >= 0.0))
    p = min(1.0, 2.0 * (min(below, above) + 1) / (len(boots) + 1))
    return PairedResult(
        test="paired_bootstrap",
        n=int(d.size),
        diff=float(d.mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=float(p),
        details={
            "n_boot": len(boots),
            "seed": int(seed),
            "ci_level": 1.0 - alpha,
            "p_method": "percentile CI inversion: 2*min(P(d*<=0), P(d*>=0)), (count+1)/(B+1)",
        },
    )


def _sign_matrix(m: int) -> np.ndarray:
    """All 2**m sign vectors as a (2**m, m) float array of +-1 (row 0 is all +1)."""
    bits = (np.arange(2**m, dtype=np.int64)[:, None] >> np.arange(m, dtype=np.int64)) & 1
    return 1.0 - 2.0 * bits


def paired_permutation(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_perm: int = 10000,
    seed: int = 0,
) -> PairedResult:
    """Two-sided sign-flip permutation test of H0 "a[i] - b[i] is symmetric about 0" (Good 2005, §3).

    Under H0 the label swap A<->B within a problem is exchangeable, so each non-zero difference d_i keeps or
    flips its sign with probability 1/2. Statistic: |sum_i d_i| (equivalently |mean d|); zero differences
    contribute nothing and are dropped. p = P(|sum s_i d_i| >= |sum d_i|) with ties included (relative
    tolerance 1e-9 against float rounding).
      * m <= 16 non-zero differences: exact, enumerating all 2**m signings (p is a multiple of 2**-m).
      * otherwise: n_perm random signings, p = (count + 1) / (n_perm + 1) (Phipson & Smyth 2010).
    No CI (ci_low = ci_high = None). All differences zero gives p = 1.
    """
    x, y = _paired_arrays(a, b)
    d = x - y
    nz = d[d != 0.0]
    m = int(nz.size)
    diff = float(d.mean())
    details: dict[str, Any] = {"n_nonzero": m}
    if m == 0:
        details["method"] = "exact"
        return PairedResult("paired_permutation", int(d.size), diff, None, None, 1.0, details)
    obs = abs(float(nz.sum()))
    tol = 1e-9 * float(np.abs(nz).sum())
    if m <= PERMUTATION_EXACT_MAX:
        stats = np.abs(_sign_matrix(m) @ nz)
        p = float(np.count_nonzero(stats >= obs - tol)) / stats.size
        details.update(method="exact", n_signings=int(stats.size))
    else:
        n_perm = int(n_perm)
        if n_perm < 1:
            raise ValueError(f"n_perm must be >= 1, got {n_perm}")
        rng = np.random.default_rng(seed)
        rows = max(1, _CHUNK_ELEMS // m)
        count = 0
        for start in range(0, n_perm, rows):
            size = min(rows, n_perm - start)
            signs = 1.0 - 2.0 * rng.integers(0, 2, size=(size, m))
            count += int(np.count_nonzero(np.abs(signs @ nz) >= obs - tol))
        p = (count + 1) / (n_perm + 1)
        details.update(method="monte_carlo", n_perm=n_perm, seed=int(seed))
    return PairedResult("paired_permutation", int(d.size), diff, None, None, min(1.0, p), details)


def _binom_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n fair coin flips: min(1, 2 * P(X <= min(k, n-k))), exact ints."""
    lo = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(lo + 1))
    return min(1.0, 2 * tail / 2**n)  # int / int is correctly rounded in Python


def mcnemar(
    a_correct: Sequence[bool],
    b_correct: Sequence[bool],
    alpha: float = 0.05,
    method: str = "auto",
) -> PairedResult:
    """McNemar's test for paired single-sample outcomes (McNemar 1947).

    Discordant counts: b10 = #(A right, B wrong), b01 = #(A wrong, B right); concordant pairs carry no
    information about the difference. Under H0, b10 ~ Binomial(b01 + b10, 1/2).
      * "exact" (used by "auto" when b01 + b10 < 25): p = min(1, 2 * sum_{i<=min(b01,b10)} C(N, i) / 2**N),
        N = b01 + b10 (exact conditional test; Fagerland et al. 2013). N = 0 gives p = 1.
      * "chi2" (used by "auto" otherwise): X = (|b10 - b01| - 1)**2 / N with Edwards' continuity correction
        (X = 0 when |b10 - b01| <= 1), p = P(chi2_1 >= X) = erfc(sqrt(X / 2)).
    diff = (b10 - b01) / n = acc(A) - acc(B). CI (level 1 - alpha): Wald interval after adding 0.5 to each
    of the four cells (Agresti & Min 2005), clipped to [-1, 1].
    details: b01, b10, n11 (both right), n00 (both wrong), method, statistic (chi2 only), ci_level.
    """
    _check_alpha(alpha)
    if method not in ("auto", "exact", "chi2"):
        raise ValueError(f"method must be 'auto', 'exact' or 'chi2', got {method!r}")
    if len(a_correct) != len(b_correct):
        raise ValueError(f"a has {len(a_correct)} problems but b has {len(b_correct)}; outcomes must be paired")
    if len(a_correct) == 0:
        raise ValueError("no problems to compare")
    xa = [bool(v) for v in a_correct]
    xb = [bool(v) for v in b_correct]
    n = len(xa)
    b10 = sum(1 for u, v in zip(xa, xb) if u and not v)
    b01 = sum(1 for u, v in zip(xa, xb) if v and not u)
    n11 = sum(1 for u, v in zip(xa, xb) if u and v)
    n00 = n - b10 - b01 - n11
    disc = b01 + b10
    if method == "auto":
        method = "exact" if disc < MCNEMAR_EXACT_BELOW else "chi2"
    details: dict[str, Any] = {"b01": b01, "b10": b10, "n11": n11, "n00": n00, "method": method}
    if disc == 0:
        p = 1.0
        if method == "chi2":
            details["statistic"] = 0.0
    elif method == "exact":
        p = _binom_two_sided_half(b10, disc)
    else:
        stat = max(abs(b10 - b01) - 1, 0) ** 2 / disc
        p = math.erfc(math.sqrt(stat / 2.0))
        details["statistic"] = stat
    # Agresti & Min (2005) adjusted Wald CI for a difference of paired proportions.
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    na, b10a, b01a = n + 2.0, b10 + 0.5, b01 + 0.5
    d_adj = (b10a - b01a) / na
    se = math.sqrt(max((b10a + b01a) - (b10a - b01a) ** 2 / na, 0.0)) / na
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


def describe(result: PairedResult, name_a: str, name_b: str, alpha: float = 0.05) -> str:
    """One honest sentence about a PairedResult, with scores in [0, 1] reported as percentage points.

    Significant (p < alpha and diff != 0): "A is ahead of B by 4.2 points (95% CI 1.1 to 7.3, p=0.008,
    paired bootstrap over 500 problems)" -- the CI shown is for leader minus trailer.
    Otherwise: "A and B are not distinguishable at this sample size (diff +1.0 points, A − B; 95% CI −2.3
    to 4.4, p=0.55, paired bootstrap over 40 problems)". The CI level is the one the result was computed
    with (details["ci_level"]); `alpha` only sets the significance threshold.
    """
    test = _TEST_NAMES.get(result.test, result.test)
    has_ci = result.ci_low is not None and result.ci_high is not None
    level = result.details.get("ci_level", 1.0 - alpha)
    ci_label = f"{level * 100:.3g}% CI"
    where = f"{test} over {result.n} problem{'s' if result.n != 1 else ''}"
    p = _fmt_p(result.p_value)
    if result.significant(alpha) and result.diff != 0.0:
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
    return (
        f"{name_a} and {name_b} are not distinguishable at this sample size "
        f"(diff {signed} points, {name_a} \u2212 {name_b}{ci_txt}, {p}, {where})"
    )
