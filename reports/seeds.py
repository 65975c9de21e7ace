"""Several training seeds per method: the mean over seeds with an interval that accounts for both seeds and
problems, per-seed scores, and paired comparisons between methods that use the seed-level variation.

One training run is one draw of the training randomness (sampling, data order): two runs of one command moved
held-out accuracy by 14 points on the CPU preset, so a method's score is a mean over seeds, and its uncertainty has
two sources: which seeds were drawn and which problems were scored. No statistics library bootstraps that design,
so this module does, in the open:

* scores of one method form a matrix M[s, p] (seed s, problem p; each entry the mean correctness over that
  problem's samples). Every seed is scored on the SAME problems (a crossed design), so a bootstrap replicate draws
  S seeds with replacement and P problems with replacement, and its problems are shared by all its seeds (drawing
  problems per seed would treat one problem's difficulty as independent across seeds and shrink the problem
  variance by the number of seeds). Replicate value: the mean of M over the drawn seeds and problems.
* with few seeds, resampling them understates their spread by a factor (S - 1) / S in variance (the plug-in
  variance of S values), so seed deviations from the per-problem seed mean are scaled by sqrt(S / (S - 1))
  before resampling (Davison & Hinkley 1997, "Bootstrap Methods and their Application", §2.4/§3.3: adjusted
  residuals). The point estimate is unchanged.
* two methods: problems are paired (shared draws), seeds are not (independent draws per method: seed k of one
  method has nothing to do with seed k of another). p-value by inverting the percentile interval of the
  difference (`reports.stats.ci_inversion_p`), so verdicts and intervals agree; a report Holm-adjusts them.

A method with one seed (or the greedy base model, which has no training randomness) contributes problem variance
only; the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reports.stats import PairedResult, ci_inversion_p

__all__ = ["SeedMean", "seed_mean", "seed_paired", "seed_weights"]

_CHUNK = 2_000_000  # elements per chunk of bootstrap weights: memory stays bounded for big benchmarks


@dataclass
class SeedMean:
    """A method's score over seeds: `value` (mean over seeds of each seed's mean over problems), the interval
    [ci_low, ci_high] at `ci_level` from the seed-and-problem bootstrap, and `per_seed` scores in seed order."""

    value: float
    ci_low: float
    ci_high: float
    ci_level: float
    per_seed: list[float]
    n_seeds: int
    n_problems: int


def _matrix(m: object, what: str) -> np.ndarray:
    x = np.asarray(m, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{what}: scores must be a non-empty [seeds, problems] matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: scores contain NaN or inf")
    return x


def _adjusted(m: np.ndarray) -> np.ndarray:
    """Seed deviations from the per-problem seed mean scaled by sqrt(S / (S - 1)) (variance-unbiased resampling)."""
    s = m.shape[0]
    if s < 2:
        return m
    centre = m.mean(axis=0, keepdims=True)
    return centre + np.sqrt(s / (s - 1)) * (m - centre)


def seed_weights(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """[rows, n] bootstrap weights: counts of each index in a draw of n with replacement, divided by n."""
    idx = rng.integers(0, n, size=(rows, n))
    w = np.zeros((rows, n))
    np.add.at(w, (np.repeat(np.arange(rows), n), idx.ravel()), 1.0)
    return w / n


def _replicates(mats: list[np.ndarray], signs: list[float], n_boot: int, seed: int) -> np.ndarray:
    """n_boot values of sum_k sign_k * mean(M_k over resampled seeds, shared resampled problems)."""
    rng = np.random.default_rng(seed)
    n_prob = mats[0].shape[1]
    adj = [_adjusted(m) for m in mats]
    rows = max(1, _CHUNK // max(n_prob, max(m.shape[0] for m in mats)))
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        b = min(rows, n_boot - start)
        v = seed_weights(rng, b, n_prob)  # problems: one draw shared by every method and seed
        acc = np.zeros(b)
        for m, sign in zip(adj, signs):
            w = seed_weights(rng, b, m.shape[0])  # seeds: an independent draw per method
            acc += sign * np.einsum("bp,bp->b", w @ m, v)
        out[start:start + b] = acc
    return out


def seed_mean(scores: object, n_boot: int = 4000, alpha: float = 0.05, seed: int = 0) -> SeedMean:
    """Mean over seeds of a [seeds, problems] score matrix with its seed-and-problem bootstrap percentile CI."""
    m = _matrix(scores, "seed_mean")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    boots = _replicates([m], [1.0], int(n_boot), seed)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    if m.min() >= 0.0 and m.max() <= 1.0:
        # Accuracies: the adjusted seed deviations can push a replicate past 0 or 1 (seeds at 37%, 20% and 1%
        # gave -3%), a value no accuracy takes; clipping only drops that impossible part, so coverage holds.
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return SeedMean(float(m.mean()), float(lo), float(hi), 1.0 - alpha, [float(x) for x in m.mean(axis=1)],
                    m.shape[0], m.shape[1])


def seed_paired(a: object, b: object, n_boot: int = 4000, alpha: float = 0.05, seed: int = 0) -> PairedResult:
    """Method A against method B, each a [seeds, problems] matrix over the SAME problems (columns aligned; the
    seed counts may differ). diff = mean(A) - mean(B); CI and p from the seed-and-problem bootstrap of the
    difference (problems paired, seeds independent). details: n_seeds_a, n_seeds_b, per-seed means, n_boot."""
    ma, mb = _matrix(a, "method A"), _matrix(b, "method B")
    if ma.shape[1] != mb.shape[1]:
        raise ValueError(f"method A has {ma.shape[1]} problems but method B has {mb.shape[1]}; scores must be "
                         f"paired by problem")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    boots = _replicates([ma, mb], [1.0, -1.0], int(n_boot), seed)
    diff = float(ma.mean() - mb.mean())
    if np.allclose(boots, boots[0]):  # no variation at all (e.g. identical constant scores)
        lo = hi = float(boots[0])
    else:
        lo, hi = (float(x) for x in np.quantile(boots, [alpha / 2, 1 - alpha / 2]))
    return PairedResult(
        test="seed_problem_bootstrap", n=int(ma.shape[1]), diff=diff, ci_low=lo, ci_high=hi,
        p_value=ci_inversion_p(np.round(boots, 12)),
        details={"n_seeds": f"{ma.shape[0]}+{mb.shape[0]}", "n_seeds_a": int(ma.shape[0]),
                 "n_seeds_b": int(mb.shape[0]), "per_seed_a": [float(x) for x in ma.mean(axis=1)],
                 "per_seed_b": [float(x) for x in mb.mean(axis=1)], "n_boot": int(n_boot), "seed": int(seed),
                 "ci_level": 1.0 - alpha,
                 "method": "crossed bootstrap: seeds (independent per method, variance-adjusted) x problems "
                           "(shared); p by percentile CI inversion"},
    )
