"""Pre-declared primary comparisons: the few questions a run was designed to answer, decided on its main benchmark.

A report that tests every pair of methods on every benchmark spends its multiplicity correction on questions nobody
asked (a 10-problem MATH500 slice that cannot reject anything; the base model, which every method beats). Here a
preset (or `tbrm report --primary "A:B"`) names its primaries before the runs exist, and:

* Holm (1979) runs over the primaries only; every other comparison is exploratory (raw p, labelled so).
* each primary gets one verdict (rule VERDICT below): "different" (the difference survives Holm), "equivalent within
  ±M points" (TOST at margin M survives Holm over the primaries' TOST p-values), or "inconclusive";
* and the minimum detectable difference (MDE) at 80% power for its design (its seeds per method, its seed SDs,
  at Holm's first threshold alpha / m), and how many seeds per method would detect the observed difference.

The test of a primary is seed-level (`reports.seeds`): Welch's t for >= 2 seeds on both sides, `vs_single` against
one untrained model. A trained method with ONE seed has an unknown seed-to-seed spread, so a primary that involves
one is "inconclusive" whatever its checkpoints show: the report is a smoke run.
"""

from __future__ import annotations

import numpy as np

from reports.seed_tables import MethodGroup, group_matrix
from reports.seeds import _paired_over_problems, seed_sd, single_design, vs_single, welch, welch_design
from reports.stats import holm, mde, seeds_needed, tost_p
from reports.tables import BENCH_ORDER, DASH, ModelRow, Table, _p, bench_names, pct

# tables/primary.csv: exactly these columns, scores as fractions in [0, 1] like every other CSV of the report
PRIMARY_COLUMNS = ["benchmark", "a", "b", "seeds_a", "seeds_b", "diff", "ci_low", "ci_high", "p", "p_holm", "mde",
                   "verdict"]
POWER = 0.8
DIFFERENT, INCONCLUSIVE = "different", "inconclusive"


def parse_primary(spec: str) -> tuple[str, str]:
    """'A:B' -> ('A', 'B'), names stripped; a clear error otherwise."""
    parts = [x.strip() for x in str(spec).split(":")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"--primary {spec!r}: expected 'METHOD A:METHOD B', e.g. 'TBRM n=1:PPO n=1'")
    if parts[0].casefold() == parts[1].casefold():
        raise ValueError(f"--primary {spec!r}: a method compared with itself")
    return parts[0], parts[1]


def resolve_primaries(pairs: list[tuple[str, str]], groups: list[MethodGroup]) -> list[tuple[MethodGroup, MethodGroup]]:
    """Method names (case-insensitive) -> their groups; a name not among the runs' methods is an error that lists
    the methods present."""
    by = {g.label.casefold(): g for g in groups}
    out = []
    for a, b in pairs:
        missing = [x for x in (a, b) if x.casefold() not in by]
        if missing:
            present = ", ".join(repr(g.label) for g in groups)
            raise ValueError(f"--primary {a}:{b}: no method named {', '.join(map(repr, missing))} in these runs; "
                             f"the methods present are {present} (names match case-insensitively)")
        out.append((by[a.casefold()], by[b.casefold()]))
    return out


def is_math500_slice(bench: str, rows: list[ModelRow]) -> bool:
    """MATH500 scored on fewer than its 500 problems: a sanity check, never a decision (0-2 correct per model on
    10 problems cannot reject anything)."""
    sizes = [r.benchmarks[bench].n_problems for r in rows if bench in r.benchmarks]
    return bench == "math500" and bool(sizes) and min(sizes) < 500


def main_benchmark(rows: list[ModelRow], name: str | None = None) -> str | None:
    """The benchmark the primaries (and, without primaries, the report's Holm family) use: `name` when given (an
    error listing the benchmarks when no run has it); else the single held-out benchmark (one that is not a
    registry benchmark: the suite's own problems); else the one with the most problems. A MATH500 slice is chosen
    only when it is the only benchmark. None without benchmarks."""
    names = bench_names(rows)
    if name is not None:
        if name not in names:
            raise ValueError(f"--main-benchmark {name!r}: no run has it; the benchmarks are "
                             f"{', '.join(map(repr, names)) or 'none'}")
        return name
    if not names:
        return None
    eligible = [b for b in names if not is_math500_slice(b, rows)] or names
    heldout = [b for b in eligible if b not in BENCH_ORDER]
    if len(heldout) == 1:
        return heldout[0]
    size = {b: max(r.benchmarks[b].n_problems for r in rows if b in r.benchmarks) for b in eligible}
    return max(eligible, key=lambda b: (size[b], -eligible.index(b)))


def _trained_single(g: MethodGroup) -> bool:
    return not g.is_base and len(g.rows) == 1 and g.rows[0].runs[0].trained is not None


def primary_test(ma: np.ndarray, mb: np.ndarray, alpha: float):
    """The seed-level test of a primary: Welch (>= 2 seeds each), vs_single (one side one model, swapped back to
    A - B), or the paired t over problems (one model each)."""
    if ma.shape[0] >= 2 and mb.shape[0] >= 2:
        return welch(ma, mb, alpha)
    if ma.shape[0] >= 2 or mb.shape[0] >= 2:
        flip = ma.shape[0] < 2
        r = vs_single(mb, ma, alpha) if flip else vs_single(ma, mb, alpha)
        if flip:
            r.diff, r.ci_low, r.ci_high = -r.diff, -r.ci_high, -r.ci_low
        return r
    return _paired_over_problems(ma, mb, alpha, {"n_seeds": "1+1"})


def _design(ma: np.ndarray, mb: np.ndarray, res):
    """n -> (se, df) of the primary's test with n seeds per (seeded) method, and the SD that drives it."""
    if ma.shape[0] >= 2 and mb.shape[0] >= 2:
        sd = float(np.sqrt((seed_sd(ma) ** 2 + seed_sd(mb) ** 2) / 2.0))
        return welch_design(sd, sd), sd
    if ma.shape[0] >= 2 or mb.shape[0] >= 2:
        seeded = ma if ma.shape[0] >= 2 else mb
        return single_design(seed_sd(seeded), res.details["var_b"], seeded.shape[1]), seed_sd(seeded)
    return None, None


def primary_table(groups: list[MethodGroup], pairs: list[tuple[MethodGroup, MethodGroup]], bench: str,
                  alpha: float = 0.05, margin: float = 5.0) -> tuple[Table, list[str]]:
    """One row per primary on `bench`: A - B with its interval, raw and Holm-adjusted p over the primaries, the MDE
    at 80% power and the verdict (rule VERDICT in the module docstring), and a sentence in words. `margin` in
    percentage points. Records hold exactly PRIMARY_COLUMNS (the CSV); the seeds a design would need go to the
    display. Returns the table and one sentence per primary."""
    if margin <= 0:
        raise ValueError(f"--margin must be > 0 points, got {margin}")
    m = len(pairs)
    level = alpha / max(m, 1)  # Holm's first threshold: the MDE a primary has at its strictest
    rows, tests = [], []
    for ga, gb in pairs:
        xa, xb = group_matrix(ga, bench), group_matrix(gb, bench)
        if xa is None or xb is None or xa[1] != xb[1]:
            why = [g.label for g, x in ((ga, xa), (gb, xb)) if x is None]
            raise ValueError(f"primary {ga.label}:{gb.label}: "
                             + (f"{' and '.join(why)} not scored on {bench} (every seed on the same problems)" if why
                                else f"the two were scored on different problems of {bench}"))
        ma, mb = xa[0], xb[0]
        res = primary_test(ma, mb, alpha)
        design, sd = _design(ma, mb, res)
        smoke = _trained_single(ga) or _trained_single(gb)
        md = need = None
        if design is not None and not smoke:
            se_now, df_now = res.details["se"], res.details["df"]
            md = mde(se_now, df_now, level, POWER)
            need = seeds_needed(abs(res.diff), design, level, POWER)
        elif not smoke:  # two untrained models: the design is the problems, not seeds
            md = mde(res.details["se"], res.details["df"], level, POWER)
        p_eq = tost_p(res.diff, res.details["se"], res.details["df"], margin / 100.0)
        tests.append((res, p_eq))
        rows.append({"ga": ga, "gb": gb, "ma": ma, "mb": mb, "res": res, "mde": md, "need": need, "sd": sd,
                     "smoke": smoke})
    p_holm = holm([r.p_value for r, _ in tests])
    eq_holm = holm([p for _, p in tests])
    records, display, sentences = [], [], []
    for row, ph, pe in zip(rows, p_holm, eq_holm):
        res, ga, gb = row["res"], row["ga"], row["gb"]
        if row["smoke"]:
            v = INCONCLUSIVE
        elif ph < alpha and res.diff != 0.0:
            v = DIFFERENT
        elif pe < alpha:
            v = f"equivalent within ±{margin:g} points"
        else:
            v = INCONCLUSIVE
        records.append({"benchmark": bench, "a": ga.label, "b": gb.label, "seeds_a": row["ma"].shape[0],
                        "seeds_b": row["mb"].shape[0], "diff": res.diff, "ci_low": res.ci_low,
                        "ci_high": res.ci_high, "p": res.p_value, "p_holm": ph, "mde": row["mde"], "verdict": v})
        need = row["need"]
        need_txt = DASH if need is None else str(need)
        display.append([bench, ga.label, gb.label, f"{row['ma'].shape[0]}+{row['mb'].shape[0]}", pct(res.diff),
                        f"{pct(res.ci_low)} to {pct(res.ci_high)}", _p(res.p_value), _p(ph),
                        DASH if row["mde"] is None else pct(row["mde"]), need_txt, v])
        sentences.append(sentence(row, ph, pe, v, alpha, margin, m))
    columns = ["Benchmark", "A", "B", "Seeds (A+B)", "A − B (points)", f"{100 * (1 - alpha):.3g}% CI", "p",
               "p (Holm)", "MDE (points)", "Seeds for observed diff", "Verdict"]
    notes = [f"Holm runs over these {m} pre-declared primar{'y' if m == 1 else 'ies'} only, on {bench}: "
             f"'different' = Holm-adjusted p < {alpha:g}; 'equivalent within ±{margin:g} points' = two one-sided "
             f"t-tests (TOST) at that margin, Holm-adjusted over the primaries, p < {alpha:g}; else 'inconclusive'.",
             f"MDE = the true difference this design detects with {POWER:.0%} power at alpha/{m} (Holm's strictest "
             f"threshold), from its own seed counts and seed SDs; 'Seeds for observed diff' = seeds per method at "
             f"which the observed difference would be detected with {POWER:.0%} power (– when none would, or for "
             f"a smoke run). tables/primary.csv holds the same rows with scores as fractions.",
             "Tests: Welch's t-test on per-seed scores (>= 2 seeds each); against one untrained model, a t-test that "
             "adds its problem-level noise; a trained method with one seed makes the primary inconclusive (its "
             "seed-to-seed spread is unknown)."]
    return Table("primary", columns, display, records, notes), sentences


def sentence(row: dict, p_holm: float, p_eq: float, v: str, alpha: float, margin: float, m: int) -> str:
    """A primary in words: the verdict first, then the numbers that carry it."""
    res, a, b = row["res"], row["ga"].label, row["gb"].label
    sa, sb = row["ma"].shape[0], row["mb"].shape[0]
    ci = f"{100 * (1 - alpha):.3g}% CI {pct(res.ci_low)} to {pct(res.ci_high)}"
    nums = (f"{a} − {b} = {pct(res.diff)} points ({ci}; p={res.p_value:.2g}, Holm-adjusted over {m} "
            f"primar{'y' if m == 1 else 'ies'} {p_holm:.2g}; {sa}+{sb} seeds)")
    if row["smoke"]:
        return (f"{a} vs {b}: inconclusive — a smoke run, one training seed of a method: {nums} compares two "
                f"checkpoints, not the methods. Method-level claims need several seeds per method.")
    if row["mde"] is not None:
        sd_txt = f", seed SD {pct(row['sd'])} points" if row["sd"] is not None else ""
        power = (f" This design detects a true difference of {pct(row['mde'])} points with 80% power (at "
                 f"alpha/{m}{sd_txt})")
        if row["need"] is not None:
            power += f"; the observed {pct(abs(res.diff))} points would need {row['need']} seeds per method."
        elif row["sd"] is not None:
            power += "; no number of seeds detects the observed difference."
        else:
            power += "."
    else:
        power = ""
    if v == DIFFERENT:
        lead, trail = (a, b) if res.diff > 0 else (b, a)
        head = f"{lead} beats {trail}: different"
    elif v.startswith("equivalent"):
        head = f"{a} and {b} are {v} (TOST at ±{margin:g} points, Holm-adjusted p={p_eq:.2g})"
    else:
        head = (f"{a} vs {b}: inconclusive — neither a difference nor equivalence within ±{margin:g} points "
                f"(TOST Holm-adjusted p={p_eq:.2g}) is shown")
    return f"{head}. {nums}.{power}"
