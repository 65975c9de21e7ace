"""Several training seeds per method: the mean over seeds with a small-sample t interval, per-seed scores, and
seed-level comparisons between methods, with the seed counts and seed distributions at which they hold their level
measured by simulation (tests/test_calibration.py, docs/statistics.md).

One training run is one draw of the training randomness (sampling, data order): two runs of one command moved
held-out accuracy by 14 points on the CPU preset, so a method's score is a mean over seeds, and its uncertainty has
two sources: which seeds were drawn and which problems were scored. Scores of one method form a matrix M[s, p]
(seed s, problem p; each entry the mean correctness over that problem's samples), every seed on the SAME problems.

* :func:`seed_mean` -- the mean over seeds with a t interval whose variance is the crossed design's
  (two-way random effects, seeds x problems): Var(mean) = sigma_seed^2 / S + sigma_problem^2 / P +
  sigma_residual^2 / (S P), estimated by var(per-seed means) / S + (MS_problems - MS_residual) / (S P), on S - 1
  degrees of freedom (the seed term's: Satterthwaite's df would be liberal at 3 seeds). It covers the expected
  accuracy over new seeds AND new problems. One seed: the t interval over problems (Wilson for 0/1 scores).
* :func:`paired_seeds` -- two methods whose seed k was trained on the same prompts in the same order: the paired
  t-test on the per-seed differences (S - 1 df). Shared prompts make the two methods' seed-k scores correlate, and
  pairing removes that shared part from the difference's variance.
* :func:`welch` -- two methods with >= 2 seeds each, seeds not matched: Welch's t-test on their per-seed accuracies
  (Welch 1947) with Welch-Satterthwaite df. The problems are shared, so their difficulty cancels in the difference.
* :func:`vs_single` -- a method with >= 2 seeds against ONE model (the greedy base model, which has no training
  randomness): the model's problem-level variance, var(its per-problem scores) / P, is added to the seed mean's
  variance, on S - 1 df (a one-sample t against the model's score would treat it as exact: 7-35% at 5%).
* :func:`seed_paired` picks between them (or, for one seed on each side, the per-problem paired test of
  `reports.stats.compare`, which is about the two checkpoints, not the methods).

Where they hold (simulated, docs/statistics.md): unimodal seed spreads at 3 and 10 seeds; seeds that collapse or
take off near the floor at 10 seeds when about half or fewer collapse. When few seeds are drawn from two modes,
all S of them land in one mode with probability up to max(pi, 1 - pi)^S, and then no interval built from those
seeds covers the mean: at 3 seeds nothing (t, bootstrap-t, percentile bootstrap) holds 95% there, and the report
says so beside the number (:func:`calibration_note`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from reports.stats import PairedResult, compare, t_result, wilson

__all__ = ["SeedMean", "seed_mean", "seed_paired", "welch", "paired_seeds", "vs_single", "seed_sd", "welch_design",
           "paired_design", "single_design", "calibration_note", "CALIBRATED_SEEDS"]

# Below this many seeds per method, the seed-level interval and tests are not calibrated where seeds split between
# collapsing and taking off (docs/statistics.md: 84% coverage and 13% type-I at 3 seeds when half collapse).
CALIBRATED_SEEDS = 10


@dataclass
class SeedMean:
    """A method's score over seeds: `value` (mean over seeds of each seed's mean over problems), the interval
    [ci_low, ci_high] at `ci_level`, `per_seed` scores in seed order, and how the interval was made (`method`)."""

    value: float
    ci_low: float
    ci_high: float
    ci_level: float
    per_seed: list[float]
    n_seeds: int
    n_problems: int
    method: str = ""


def _matrix(m: object, what: str) -> np.ndarray:
    x = np.asarray(m, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{what}: scores must be a non-empty [seeds, problems] matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: scores contain NaN or inf")
    return x


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _is_binary(m: np.ndarray) -> bool:
    return bool(np.all((m == 0.0) | (m == 1.0)))


def _satterthwaite(terms: list[tuple[float, float]]) -> float:
    """df of a sum of variance terms [(v_i, df_i)]: (sum v)^2 / sum(v_i^2 / df_i) (Satterthwaite 1946)."""
    num = sum(v for v, _ in terms) ** 2
    den = sum(v * v / d for v, d in terms if v > 0.0)
    return float(num / den) if den > 0.0 else float(max(d for _, d in terms))


def calibration_note(n_seeds: int) -> str | None:
    """The caveat a report prints beside a seed-level number from `n_seeds` seeds (None from CALIBRATED_SEEDS up)."""
    if n_seeds >= CALIBRATED_SEEDS or n_seeds < 2:
        return None
    return (f"{n_seeds} seeds: calibrated only where the seeds spread unimodally; where seeds split between "
            f"collapsing and taking off, no interval from {n_seeds} seeds holds its level (simulated coverage of a "
            f"nominal 95% about 84% at 3 seeds, docs/statistics.md)")


def seed_sd(scores: object) -> float:
    """Standard deviation (ddof 1) of the per-seed mean scores of a [seeds, problems] matrix (0 for one seed)."""
    m = _matrix(scores, "seed_sd")
    return float(np.std(m.mean(axis=1), ddof=1)) if m.shape[0] > 1 else 0.0


def seed_mean(scores: object, alpha: float = 0.05) -> SeedMean:
    """Mean over seeds of a [seeds, problems] score matrix with a t interval on S - 1 df for the expected score over
    new seeds and new problems (module docstring); clipped to [0, 1] when the scores are accuracies. One seed of 0/1 scores:
    the Wilson interval; one seed of avg@k scores: mean +- t_{P-1} sd / sqrt(P)."""
    m = _matrix(scores, "seed_mean")
    _check_alpha(alpha)
    s, p = m.shape
    value = float(m.mean())
    per_seed = [float(x) for x in m.mean(axis=1)]
    if s == 1 and _is_binary(m):
        lo, hi = wilson(int(m.sum()), p, alpha)
        return SeedMean(value, lo, hi, 1.0 - alpha, per_seed, s, p, "Wilson")
    if s == 1:
        se = float(np.std(m[0], ddof=1) / np.sqrt(p)) if p > 1 else 0.0
        df = max(p - 1, 1)
        method = "t over problems"
    else:
        rows, cols = m.mean(axis=1), m.mean(axis=0)  # per-seed and per-problem means
        v_seed = float(np.var(rows, ddof=1)) / s
        if p > 1:
            resid = m - rows[:, None] - cols[None, :] + value
            ms_resid = float((resid ** 2).sum()) / ((s - 1) * (p - 1))
            v_prob = max(0.0, float(np.var(cols, ddof=1)) - ms_resid / s) / p
        else:
            v_prob = 0.0
        se = float(np.sqrt(v_seed + v_prob))
        df = s - 1  # the smaller df of the two terms: Satterthwaite's would be liberal at 3 seeds
        method = "t, seeds x problems"
    crit = float(sps.t.ppf(1.0 - alpha / 2.0, df))
    if s >= CALIBRATED_SEEDS and se > 0.0:
        boot = _boot_t_crit(rows, v_prob, alpha)
        if boot > crit:
            crit, method = boot, "symmetric bootstrap-t over seeds (wider than t), seeds x problems"
    half = crit * se
    lo, hi = value - half, value + half
    if m.min() >= 0.0 and m.max() <= 1.0:  # an accuracy: the interval stays where accuracies are
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return SeedMean(value, float(lo), float(hi), 1.0 - alpha, per_seed, s, p, method)


BOOT_T_REPLICATES = 4000


def _boot_t_crit(per_seed: np.ndarray, v_prob: float, alpha: float) -> float:
    """The (1 - alpha) quantile of |mean* - mean| / se* over seeds resampled with replacement (the symmetric
    bootstrap-t, Hall 1988; se*^2 = var(resampled seeds) / S + v_prob, the problems' share kept fixed). Where the
    seeds are skewed (a few take off, many collapse) it is wider than t's quantile, and the seed-mean interval uses
    the wider of the two from CALIBRATED_SEEDS seeds on (docs/statistics.md: 93% coverage with t alone at 10
    seeds, half collapsing). Seeded, so a report is reproducible."""
    s = per_seed.size
    idx = np.random.default_rng(0).integers(0, s, (BOOT_T_REPLICATES, s))
    ys = per_seed[idx]
    se = np.sqrt(np.var(ys, axis=1, ddof=1) / s + v_prob)
    t = np.abs(ys.mean(axis=1) - per_seed.mean()) / np.where(se > 0.0, se, np.inf)
    return float(np.quantile(t, 1.0 - alpha))


def welch_design(sd_a: float, sd_b: float):
    """n -> (se, df) of Welch's t with n seeds per method at per-seed SDs sd_a and sd_b (for power and MDE)."""
    def design(n: int) -> tuple[float, float]:
        va, vb = sd_a ** 2 / n, sd_b ** 2 / n
        return float(np.sqrt(va + vb)), _satterthwaite([(va, n - 1), (vb, n - 1)])
    return design


def paired_design(sd_d: float):
    """n -> (se, df) of the paired t with n matched seed pairs whose per-pair differences have SD sd_d."""
    def design(n: int) -> tuple[float, float]:
        return float(sd_d / np.sqrt(n)), float(n - 1)
    return design


def single_design(sd_a: float, var_b: float, n_problems: int):
    """n -> (se, df) of `vs_single` with n seeds of the method at per-seed SD sd_a, against one model whose mean
    has variance var_b over n_problems problems."""
    def design(n: int) -> tuple[float, float]:
        va = sd_a ** 2 / n
        return float(np.sqrt(va + var_b)), float(n - 1)
    return design


def _paired_over_problems(ma: np.ndarray, mb: np.ndarray, alpha: float, details: dict) -> PairedResult:
    """Fallback when no seed varies: the paired t over problems of the seed-mean scores (what the checkpoints
    give; the seed-level variance is not estimable)."""
    d = ma.mean(axis=0) - mb.mean(axis=0)
    se = float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    diff = float(d.mean())
    if se == 0.0 and diff != 0.0:  # every problem moved by the same amount: nothing left to test against
        return PairedResult("paired_t", d.size, diff, diff, diff, 0.0,
                            {"se": 0.0, "df": float(max(d.size - 1, 1)), "ci_level": 1.0 - alpha, **details})
    details = {**details, "note": "no seed-to-seed variation on either side; paired t over problems"}
    return t_result("paired_t", d.size, diff, se, max(d.size - 1, 1), alpha, details)


def welch(a: object, b: object, alpha: float = 0.05) -> PairedResult:
    """Welch's t-test on the per-seed mean scores of two methods, each a [seeds, problems] matrix (>= 2 seeds) over
    the SAME problems. diff = mean(A) - mean(B); CI diff +- t_{1-alpha/2, df} se with Welch-Satterthwaite df (what
    ``scipy.stats.ttest_ind(equal_var=False)`` computes; details keep se and df for TOST and power)."""
    ma, mb = _matrix(a, "method A"), _matrix(b, "method B")
    _check_alpha(alpha)
    if ma.shape[1] != mb.shape[1]:
        raise ValueError(f"method A has {ma.shape[1]} problems but method B has {mb.shape[1]}; scores must be "
                         f"paired by problem")
    if ma.shape[0] < 2 or mb.shape[0] < 2:
        raise ValueError(f"Welch's t needs >= 2 seeds per method, got {ma.shape[0]} and {mb.shape[0]}")
    ya, yb = ma.mean(axis=1), mb.mean(axis=1)
    va, vb = float(np.var(ya, ddof=1)) / ya.size, float(np.var(yb, ddof=1)) / yb.size
    details = _seed_details(ma, mb)
    diff = float(ya.mean() - yb.mean())
    if va + vb == 0.0:
        if diff == 0.0:
            return t_result("welch_t", ma.shape[1], 0.0, 0.0, 1.0, alpha, details)
        return _paired_over_problems(ma, mb, alpha, details)
    df = _satterthwaite([(va, ya.size - 1), (vb, yb.size - 1)])
    return t_result("welch_t", ma.shape[1], diff, float(np.sqrt(va + vb)), df, alpha, details)


def paired_seeds(a: object, b: object, alpha: float = 0.05) -> PairedResult:
    """Paired t-test over matched seeds: row k of `a` and row k of `b` ([seeds, problems] matrices, the same seed
    count >= 2, the same problems) were trained on the same prompts in the same order. d_k = mean(A_k) - mean(B_k);
    diff = mean(d), se = sd(d) / sqrt(S), df = S - 1 (what ``scipy.stats.ttest_rel`` computes). details also keep
    the correlation of the two methods' per-seed scores ("r")."""
    ma, mb = _matrix(a, "method A"), _matrix(b, "method B")
    _check_alpha(alpha)
    if ma.shape != mb.shape:
        raise ValueError(f"paired seeds need the same [seeds, problems] shape on both sides, got {ma.shape} and "
                         f"{mb.shape}")
    if ma.shape[0] < 2:
        raise ValueError(f"a paired t over seeds needs >= 2 seed pairs, got {ma.shape[0]}")
    ya, yb = ma.mean(axis=1), mb.mean(axis=1)
    d = ya - yb
    details = _seed_details(ma, mb)
    sa, sb = float(np.std(ya)), float(np.std(yb))
    details["r"] = float(np.corrcoef(ya, yb)[0, 1]) if sa > 0.0 and sb > 0.0 else None
    details["sd_d"] = float(np.std(d, ddof=1))
    diff = float(d.mean())
    if details["sd_d"] == 0.0:
        if diff == 0.0:
            return t_result("paired_seeds_t", ma.shape[1], 0.0, 0.0, 1.0, alpha, details)
        return _paired_over_problems(ma, mb, alpha, details)
    return t_result("paired_seeds_t", ma.shape[1], diff, details["sd_d"] / np.sqrt(d.size), d.size - 1, alpha,
                    details)


def vs_single(a: object, b: object, alpha: float = 0.05) -> PairedResult:
    """A method with >= 2 seeds ([seeds, problems] matrix `a`) against ONE model (its per-problem scores `b`, or a
    [1, problems] matrix) on the same problems. se^2 = var(per-seed means of A) / S + var(b over problems) / P: the
    seed spread of A, and the model's problem-level noise (an upper bound of its evaluation noise given these
    problems, so the test errs on the safe side). df = S - 1, the seed term's (Welch-Satterthwaite's, from S - 1
    and P - 1, would be liberal at 3 seeds)."""
    ma = _matrix(a, "method A")
    mb = _matrix(np.atleast_2d(np.asarray(b, dtype=np.float64)), "single model B")
    _check_alpha(alpha)
    if mb.shape[0] != 1:
        raise ValueError(f"vs_single compares with ONE model, got {mb.shape[0]} rows for B")
    if ma.shape[1] != mb.shape[1]:
        raise ValueError(f"method A has {ma.shape[1]} problems but model B has {mb.shape[1]}; scores must be "
                         f"paired by problem")
    if ma.shape[0] < 2:
        raise ValueError(f"vs_single needs >= 2 seeds of method A, got {ma.shape[0]}")
    ya, yb = ma.mean(axis=1), mb[0]
    p = yb.size
    va = float(np.var(ya, ddof=1)) / ya.size
    vb = float(np.var(yb, ddof=1)) / p if p > 1 else 0.0
    details = _seed_details(ma, mb)
    diff = float(ya.mean() - yb.mean())
    details["var_b"] = vb
    if va + vb == 0.0:
        if diff == 0.0:
            return t_result("seeds_vs_single", p, 0.0, 0.0, 1.0, alpha, details)
        return _paired_over_problems(ma, mb, alpha, details)
    df = ya.size - 1  # the smaller df of the two terms: Satterthwaite's would be liberal at 3 seeds
    return t_result("seeds_vs_single", p, diff, float(np.sqrt(va + vb)), df, alpha, details)


def _seed_details(ma: np.ndarray, mb: np.ndarray) -> dict:
    return {"n_seeds": f"{ma.shape[0]}+{mb.shape[0]}", "n_seeds_a": int(ma.shape[0]), "n_seeds_b": int(mb.shape[0]),
            "per_seed_a": [float(x) for x in ma.mean(axis=1)], "per_seed_b": [float(x) for x in mb.mean(axis=1)],
            "sd_a": seed_sd(ma), "sd_b": seed_sd(mb)}


def seed_paired(a: object, b: object, alpha: float = 0.05, single_test: str = "auto",
                n_boot: int = 10_000, matched: bool = False) -> PairedResult:
    """Method A against method B, each a [seeds, problems] matrix over the SAME problems (columns aligned; the seed
    counts may differ): the paired t over seeds (`paired_seeds`) when `matched` (row k of both trained on the same
    prompts in the same order) and both have the same >= 2 seeds, else Welch's t when both have >= 2 seeds, `vs_single` when one side has one seed (A and B
    swapped back so diff stays A - B), and for one seed each the per-problem paired test of
    `reports.stats.compare` (`single_test`: "auto" = McNemar for 0/1 scores, else the paired bootstrap with
    `n_boot` replicates), which compares the two checkpoints."""
    ma, mb = _matrix(a, "method A"), _matrix(b, "method B")
    if ma.shape[1] != mb.shape[1]:
        raise ValueError(f"method A has {ma.shape[1]} problems but method B has {mb.shape[1]}; scores must be "
                         f"paired by problem")
    if matched and ma.shape[0] >= 2 and ma.shape == mb.shape:
        return paired_seeds(ma, mb, alpha)
    if ma.shape[0] >= 2 and mb.shape[0] >= 2:
        return welch(ma, mb, alpha)
    if ma.shape[0] >= 2:
        return vs_single(ma, mb, alpha)
    if mb.shape[0] >= 2:
        r = vs_single(mb, ma, alpha)
        d = r.details
        d.update(n_seeds=f"{ma.shape[0]}+{mb.shape[0]}", n_seeds_a=int(ma.shape[0]), n_seeds_b=int(mb.shape[0]),
                 per_seed_a=d["per_seed_b"], per_seed_b=d["per_seed_a"], sd_a=d["sd_b"], sd_b=d["sd_a"])
        return PairedResult(r.test, r.n, -r.diff, -r.ci_high, -r.ci_low, r.p_value, d)
    ids = [str(i) for i in range(ma.shape[1])]
    res = compare(dict(zip(ids, ma[0])), dict(zip(ids, mb[0])), test=single_test, alpha=alpha, n_boot=n_boot)
    res.details.update(n_seeds_a=1, n_seeds_b=1)
    return res
