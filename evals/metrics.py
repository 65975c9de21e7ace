"""Benchmark metrics over per-problem lists of per-sample results: pass@k, maj@k, avg@n, bootstrap CIs.

Conventions
-----------
* A benchmark run gives, for every problem, ``n`` sampled responses; each is judged ``correct`` (bool) by the
  shared verifier and reduced to an ``answer_key`` (canonical answer string, or None when no answer could be
  extracted). :class:`ProblemResult` holds one problem's samples.
* Every metric is first computed **per problem** (a float in [0, 1]) and then averaged over problems, so each
  problem weighs the same whatever its sample count. Confidence intervals come from a percentile bootstrap
  that resamples **problems** (the unit that was sampled from the benchmark's population), not samples.

References
----------
* Chen et al. 2021, "Evaluating Large Language Models Trained on Code" (Codex), §2.1 and Fig. 3: unbiased
  pass@k estimator and its numerically stable product form.
* Wang et al. 2023, "Self-Consistency Improves Chain of Thought Reasoning in Language Models": majority vote.
* Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13: percentile intervals.
* Wilson 1927, JASA 22:209-212; Brown, Cai & DasGupta 2001, Statistical Science 16:101-133: with one sample per
  problem the score is a binomial proportion, whose percentile bootstrap covers badly on few problems (40% at 10
  problems and 5% accuracy, and 0/10 gives the interval 0-0); Wilson's interval is used for it instead.
"""

from __future__ import annotations

import operator
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "ProblemResult",
    "problem_results",
    "mean_accuracy",
    "outcome_counts",
    "pass_at_k",
    "majority_correct",
    "bootstrap_means",
    "bootstrap_ci",
    "default_ks",
    "summarize",
    "length_stats",
]

# Upper bound on the number of int64 indices drawn at once by the bootstrap (about 16 MB).
_BOOT_CHUNK_ELEMS = 2_000_000


@dataclass
class ProblemResult:
    """All samples for one problem.

    problem_id: the benchmark's stable id (``Problem.id``).
    correct: per-sample verdicts, length n.
    answer_keys: per-sample canonical answers (None = no answer extracted), length n, aligned with `correct`.
    """

    problem_id: str
    correct: list[bool]
    answer_keys: list[str | None]


# Every verdict the verifier gives (`evals.grading.verifier.Outcome`); counts list all four, so a zero is never silent.
OUTCOMES = ("correct", "wrong", "unparsed", "timeout")


def problem_results(rows: Iterable[dict], outcome: str = "outcome") -> list[ProblemResult]:
    """Graded sample rows -> one ProblemResult per ``problem_id``, problems in order of first appearance, samples
    in ``sample_index`` order. A sample is correct when ``row[outcome] == "correct"``; its answer key is
    ``row["answer_key"]`` (None where the row has none). The one grouping behind `tbrm eval`'s and `tbrm grade`'s
    metrics and the grader audit's scores."""
    per_problem: dict[str, list[dict]] = {}
    for r in rows:
        per_problem.setdefault(r["problem_id"], []).append(r)
    results = []
    for pid, samples in per_problem.items():
        samples.sort(key=lambda r: r.get("sample_index", 0))
        results.append(ProblemResult(pid, [s[outcome] == "correct" for s in samples],
                                     [s.get("answer_key") for s in samples]))
    return results


def mean_accuracy(results: Sequence[ProblemResult]) -> float:
    """Mean over problems of each problem's fraction of correct samples (avg@n, also where n differs)."""
    return float(np.mean([np.mean(r.correct) for r in results]))


def outcome_counts(rows: Iterable[dict]) -> dict[str, int]:
    """How many rows got each verdict, every outcome listed."""
    counts = Counter(r["outcome"] for r in rows)
    return {k: counts.get(k, 0) for k in OUTCOMES}


def _as_int(x: object, name: str) -> int:
    if isinstance(x, bool):
        raise ValueError(f"{name} must be an integer, got bool {x!r}")
    try:
        return operator.index(x)  # accepts int and numpy integers, rejects floats
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {type(x).__name__} {x!r}") from None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021, eq. 1).

    pass@k = 1 - C(n-c, k) / C(n, k): the probability that a uniformly random size-k subset of the n samples
    contains at least one correct one. Computed with the numerically stable product form of the paper's
    Fig. 3, ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which never forms the huge binomials.

    Args: n >= 1 samples, 0 <= c <= n correct, 1 <= k <= n (all integers).
    Returns: a float in [0, 1]; exactly 0.0 when c == 0 and exactly 1.0 when n - c < k (every k-subset
        holds a correct sample). pass@1 == c / n up to rounding.
    Raises: ValueError for non-integers or values out of range (including k > n).
    """
    n, c, k = _as_int(n, "n"), _as_int(c, "c"), _as_int(k, "k")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if n - c < k:
        return 1.0
    # Every factor is in (0, 1) because i > n - c >= k.
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def majority_correct(answer_keys: Sequence[str | None], correct: Sequence[bool]) -> float:
    """maj@n for one problem: is the majority-vote answer over its n samples correct? (Wang et al. 2023).

    Voting groups, the same rule for right and wrong answers (so neither side gains votes the other could not):
      * samples vote for their answer key: one group per key, correct or not. A group is correct when any of its
        samples was judged correct (a vote is for an answer: the verifier can judge one answer string
        differently in two responses, e.g. when one was truncated after it);
      * correct answers with different keys (e.g. "1/2" and "0.5") stay separate groups, exactly as two wrong
        answers that mean the same thing do: merging only the correct ones by verdict would pool gold's votes and
        not the wrong answers', which biases maj@n upward;
      * a correct sample with no key forms one correct group of such samples; incorrect samples with key None (no
        answer extracted) do not vote, so "no answer" never wins.
    The majority group is the largest one. If several groups tie for largest, the result is the fraction of
    tied groups that are correct -- the expected correctness under a uniformly random tie-break. No votes at all
    gives 0.0.

    Args: answer_keys and correct, both of length n >= 1, aligned by sample.
    Returns: a float in [0, 1] (1.0 or 0.0 unless there is a tie involving gold).
    """
    if len(answer_keys) != len(correct):
        raise ValueError(f"answer_keys has {len(answer_keys)} entries but correct has {len(correct)}")
    if len(correct) == 0:
        raise ValueError("majority_correct needs at least one sample")
    votes: Counter = Counter()
    right: set = set()
    for key, ok in zip(answer_keys, correct):
        if key is None and not ok:
            continue
        group = ("key", key) if key is not None else ("no key, correct", None)
        votes[group] += 1
        if ok:
            right.add(group)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [g for g, v in votes.items() if v == top]
    return sum(g in right for g in tied) / len(tied)


def _as_scores(values: object, name: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per problem), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def bootstrap_means(values: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """Means of `n_boot` bootstrap resamples (with replacement, same size) of the 1-D array `values`.

    Vectorised: draws index matrices of shape (rows, len(values)) in chunks of about 2M indices, so memory
    stays bounded for large benchmarks. Deterministic for a given (values, n_boot, seed).

    Returns: float64 array of shape (n_boot,).
    """
    vals = _as_scores(values)
    n_boot = _as_int(n_boot, "n_boot")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n = vals.size
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CHUNK_ELEMS // n)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = vals[idx].mean(axis=1)
    return out


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem scores (Efron & Tibshirani 1993, §13.3).

    Resamples problems with replacement `n_boot` times and returns the alpha/2 and 1 - alpha/2 quantiles of
    the resampled means (numpy's default linear interpolation).

    Args: values, shape (n_problems,), finite; 0 < alpha < 1; n_boot >= 1; seed for numpy's default_rng.
    Returns: (ci_low, ci_high) as Python floats, ci_low <= ci_high.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    means = bootstrap_means(values, n_boot, seed)
    lo, hi = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def default_ks(n: int) -> list[int]:
    """Default k values for pass@k given n samples: powers of two up to n, plus n itself (sorted, unique)."""
    n = _as_int(n, "n")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks = {1 << i for i in range(n.bit_length()) if (1 << i) <= n}
    ks.add(n)
    return sorted(ks)


def _metric(scores: np.ndarray, n_boot: int, alpha: float, seed: int) -> dict[str, float]:
    lo, hi = bootstrap_ci(scores, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"value": float(scores.mean()), "ci_low": lo, "ci_high": hi}


def wilson_ci(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion, ``statsmodels.stats.proportion.proportion_confint(method="wilson")``."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(int(successes), int(n), alpha=alpha, method="wilson")
    share = successes / n  # the interval holds it; rounding at 0/n and n/n could leave it a hair outside
    return max(0.0, min(float(lo), share)), min(1.0, max(float(hi), share))


def _proportion(correct: np.ndarray, alpha: float) -> dict[str, float]:
    """A 0/1 score per problem (one sample each): its mean with Wilson's interval."""
    lo, hi = wilson_ci(int(correct.sum()), int(correct.size), alpha)
    return {"value": float(correct.mean()), "ci_low": lo, "ci_high": hi}


def summarize(
    results: Sequence[ProblemResult],
    ks: Sequence[int] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Benchmark-level metrics with percentile-bootstrap CIs over problems.

    Args:
        results: one ProblemResult per problem, all with the same number of samples n >= 1 and unique ids.
            Order does not matter: problems are sorted by id before bootstrapping, so the CIs do not
            depend on the order results were written in.
        ks: k values for pass@k (each in [1, n]); default :func:`default_ks` (powers of two up to n, plus n).
        n_boot, seed, alpha: bootstrap settings shared by every metric (same resamples for all metrics). With one
            sample per problem (n == 1), avg@1 and pass@1 get Wilson's interval at level 1 - alpha instead.

    Returns a JSON-serialisable dict::

        {"n_problems": int, "n_samples": n,
         "avg@n":  {"value", "ci_low", "ci_high"},   # mean per-problem accuracy; avg@1 == plain accuracy
         "ci_method": "wilson",                       # only when n == 1: avg@1 and pass@1 get Wilson's interval
         "pass@k": {...} for each k,                  # unbiased estimator, see pass_at_k
         "maj@n":  {...} only when n > 1,             # see majority_correct (ties -> expected value)
         "bootstrap": {"n_boot", "seed", "alpha"}}

    Raises: ValueError for no results, duplicate ids, a problem whose `correct` and `answer_keys` lengths
        differ, or ragged sample counts (naming the offending problem).
    """
    if len(results) == 0:
        raise ValueError("summarize needs at least one ProblemResult")
    ordered = sorted(results, key=lambda r: r.problem_id)
    first = ordered[0]
    n = len(first.correct)
    for r in ordered:
        if len(r.correct) != n:
            raise ValueError(
                f"problem {r.problem_id!r} has {len(r.correct)} samples but problem {first.problem_id!r} "
                f"has {n}; all problems must have the same number of samples"
            )
        if len(r.answer_keys) != len(r.correct):
            raise ValueError(
                f"problem {r.problem_id!r} has {len(r.correct)} verdicts but {len(r.answer_keys)} answer keys"
            )
    if n < 1:
        raise ValueError(f"problem {first.problem_id!r} has no samples")
    ids = [r.problem_id for r in ordered]
    dups = sorted({i for i, j in zip(ids, ids[1:]) if i == j})
    if dups:
        raise ValueError(f"duplicate problem ids: {dups[:5]}")
    ks = default_ks(n) if ks is None else sorted({_as_int(k, "k") for k in ks})
    bad = [k for k in ks if not 1 <= k <= n]
    if bad:
        raise ValueError(f"pass@k needs 1 <= k <= n_samples={n}, got k={bad}")

    correct = np.array([[bool(x) for x in r.correct] for r in ordered], dtype=bool)  # (P, n)
    n_correct = correct.sum(axis=1)
    out: dict = {"n_problems": len(ordered), "n_samples": n}
    if n == 1:  # one 0/1 score per problem: a binomial proportion (Wilson), for avg@1 and pass@1 alike
        out["avg@1"] = _proportion(correct[:, 0], alpha)
        if 1 in ks:
            out["pass@1"] = dict(out["avg@1"])
        out["ci_method"] = "wilson"
    else:
        out[f"avg@{n}"] = _metric(correct.mean(axis=1), n_boot, alpha, seed)
    for k in ks:
        if n == 1:
            continue
        scores = np.array([pass_at_k(n, int(c), k) for c in n_correct])
        out[f"pass@{k}"] = _metric(scores, n_boot, alpha, seed)
    if n > 1:
        scores = np.array([majority_correct(r.answer_keys, r.correct) for r in ordered])
        out[f"maj@{n}"] = _metric(scores, n_boot, alpha, seed)
    out["bootstrap"] = {"n_boot": int(n_boot), "seed": int(seed), "alpha": float(alpha)}
    return out


def length_stats(lengths: Sequence[int], truncated: Sequence[bool]) -> dict:
    """Response-length summary over all samples.

    Args: lengths, response lengths in tokens (>= 0), and truncated, whether each response hit the
        generation limit; same length m >= 1.
    Returns: {"n_responses": m, "mean_tokens": float, "median_tokens": float, "max_tokens": int,
        "truncation_rate": float in [0, 1]}.
    """
    lens = np.asarray(lengths, dtype=np.float64)
    trunc = np.asarray(truncated, dtype=bool)
    if lens.ndim != 1 or trunc.ndim != 1 or lens.size != trunc.size:
        raise ValueError(f"lengths ({lens.shape}) and truncated ({trunc.shape}) must be 1-D and the same length")
    if lens.size == 0:
        raise ValueError("length_stats needs at least one response")
    if not np.all(np.isfinite(lens)) or np.any(lens < 0):
        raise ValueError("lengths must be finite and >= 0")
    return {
        "n_responses": int(lens.size),
        "mean_tokens": float(lens.mean()),
        "median_tokens": float(np.median(lens)),
        "max_tokens": int(lens.max()),
        "truncation_rate": float(trunc.mean()),
    }
