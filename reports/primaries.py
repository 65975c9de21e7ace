"""Pre-declared primary comparisons: the few questions a run was designed to answer, decided on its main benchmark.

A report that tests every pair of methods on every benchmark spends its multiplicity correction on questions nobody
asked (a 10-problem MATH500 slice that cannot reject anything; the base model, which every method beats). Here a
preset (or `tbrm report --primary "A:B"`) names its primaries before the runs exist, and:

* one Holm (1979) family holds every claim a primary can make: "A and B differ" (its test's p) and "A and B are
  equivalent within ±M points" (its TOST p), 2 claims per DECLARED primary; a declared primary that was not run
  (`dropped`: its methods were not trained) stays in the family with p = 1 and is listed. Every other comparison
  is exploratory (raw p, labelled so).
* each primary gets one verdict (rule VERDICT): "different" (its difference survives Holm), else "equivalent within
  ±M points" (its TOST survives Holm), else "inconclusive";
* and the minimum detectable difference (MDE) at 80% power, an estimate from the observed seed spread at the
  test's design df (Welch: the smaller seed count - 1, the df Welch's test falls to when one method's spread
  dominates; paired: pairs - 1), at Holm's first threshold alpha / (2 m), and how many seeds per method would
  detect the observed difference.

The test of a primary is seed-level (`reports.seeds`): the paired t over seeds when seed k of both methods was
trained on the same prompts in the same order (`matched_seeds`), Welch's t for >= 2 unmatched seeds on both sides,
`vs_single` against one untrained model. A trained method with ONE seed has an unknown seed-to-seed spread, so a
primary that involves one is "inconclusive" whatever its checkpoints show: the report is a smoke run.

A group-sequential design (`sequential_plan`, the `powered` preset) replaces Holm by O'Brien-Fleming-type
boundaries at each look, with Bonferroni over the 2 m claims (each claim spends alpha / (2 m) across the looks).
"""

from __future__ import annotations

import numpy as np

from reports.seed_tables import MethodGroup, group_matrix, matched_seeds
from reports.seeds import (_paired_over_problems, calibration_note, paired_design, paired_seeds, seed_sd,
                           single_design, vs_single, welch, welch_design)
from reports.stats import holm, mde, obf_boundaries, seeds_needed, tost_p
from reports.tables import BENCH_ORDER, DASH, ModelRow, Table, _p, bench_names, pct

# tables/primary.csv: exactly these columns, scores as fractions in [0, 1] like every other CSV of the report
PRIMARY_COLUMNS = ["benchmark", "a", "b", "seeds_a", "seeds_b", "test", "diff", "ci_low", "ci_high", "p", "p_holm",
                   "p_tost", "p_tost_holm", "mde", "verdict"]
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


def primary_test(ma: np.ndarray, mb: np.ndarray, alpha: float, matched: bool = False):
    """The seed-level test of a primary: the paired t over seeds (`matched`, the same seeds), Welch (>= 2 seeds
    each), vs_single (one side one model, swapped back to A - B), or the paired t over problems (one model each)."""
    if matched and ma.shape[0] >= 2 and ma.shape == mb.shape:
        return paired_seeds(ma, mb, alpha)
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
    """n -> (se, df) of the primary's test with n seeds per (seeded) method, the SD that drives it, and (se, df) of
    the design as run, for the MDE: Welch at the smaller seed count - 1 df (what its df falls to when one method's
    spread dominates, as near the floor, where the better method spreads more), paired at pairs - 1."""
    if res.test == "paired_seeds_t":
        sd = res.details["sd_d"]
        design = paired_design(sd)
        return design, sd, design(ma.shape[0])
    if ma.shape[0] >= 2 and mb.shape[0] >= 2:
        sd = float(np.sqrt((seed_sd(ma) ** 2 + seed_sd(mb) ** 2) / 2.0))
        return welch_design(sd, sd), sd, (res.details["se"], float(min(ma.shape[0], mb.shape[0]) - 1))
    if ma.shape[0] >= 2 or mb.shape[0] >= 2:
        seeded = ma if ma.shape[0] >= 2 else mb
        design = single_design(seed_sd(seeded), res.details["var_b"], seeded.shape[1])
        return design, seed_sd(seeded), (res.details["se"], res.details["df"])
    return None, None, (res.details["se"], res.details["df"])


def sequential_plan(blocks: list[int], alpha: float = 0.05, n_primaries: int = 1) -> dict:
    """A group-sequential design over planned seed blocks (seeds per method at each look, increasing): the
    information fraction of look k is blocks[k] / blocks[-1] (the variance of a mean over seeds falls as 1 / seeds),
    each of the 2 m claims spends alpha / (2 m) by the O'Brien-Fleming-type function (`reports.stats.obf_boundaries`),
    and `nominal[k]` is the two-sided p a claim must fall below at look k (TOST: each one-sided test at nominal / 2)."""
    from scipy import stats as sps

    if not blocks or any(b < 2 for b in blocks) or any(y <= x for x, y in zip(blocks, blocks[1:])):
        raise ValueError(f"seed blocks must increase from >= 2 seeds per method, got {blocks}")
    level = alpha / (2 * max(1, n_primaries))
    fractions = [b / blocks[-1] for b in blocks]
    bounds = obf_boundaries(fractions, level)
    return {"blocks": list(blocks), "fractions": fractions, "alpha": alpha, "claim_alpha": level,
            "boundaries": bounds, "nominal": [float(2.0 * sps.norm.sf(c)) for c in bounds]}


def primary_table(groups: list[MethodGroup], pairs: list[tuple[MethodGroup, MethodGroup]], bench: str,
                  alpha: float = 0.05, margin: float = 5.0, dropped: list[tuple[str, str]] | None = None,
                  nominal: float | None = None) -> tuple[Table, list[str]]:
    """One row per primary on `bench`: A - B with its interval, raw and Holm-adjusted p of the difference and of
    TOST (one Holm family of 2 claims per declared primary, `dropped` ones at p = 1), the MDE at 80% power and the
    verdict (rule VERDICT in the module docstring), and a sentence in words. `margin` in percentage points.
    `nominal` (a group-sequential look): each claim is decided by its raw p < nominal instead of Holm. Records hold
    exactly PRIMARY_COLUMNS (the CSV); the seeds a design would need go to the display. Returns the table and one
    sentence per primary."""
    if margin <= 0:
        raise ValueError(f"--margin must be > 0 points, got {margin}")
    dropped = list(dropped or [])
    m = len(pairs) + len(dropped)
    level = alpha / max(2 * m, 1)  # Holm's first threshold over the 2 m claims: the MDE a primary has at its strictest
    if nominal is not None:
        level = nominal
    rows, tests = [], []
    for ga, gb in pairs:
        xa, xb = group_matrix(ga, bench), group_matrix(gb, bench)
        if xa is None or xb is None or xa[1] != xb[1]:
            why = [g.label for g, x in ((ga, xa), (gb, xb)) if x is None]
            raise ValueError(f"primary {ga.label}:{gb.label}: "
                             + (f"{' and '.join(why)} not scored on {bench} (every seed on the same problems)" if why
                                else f"the two were scored on different problems of {bench}"))
        ma, mb = xa[0], xb[0]
        matched = matched_seeds(ga, gb)
        res = primary_test(ma, mb, alpha, matched)
        design, sd, (se_run, df_run) = _design(ma, mb, res)
        smoke = _trained_single(ga) or _trained_single(gb)
        md = need = None
        if not smoke:
            md = mde(se_run, df_run, level, POWER)
            if design is not None:
                need = seeds_needed(abs(res.diff), design, level, POWER)
        p_eq = tost_p(res.diff, res.details["se"], res.details["df"], margin / 100.0)
        tests.append((res, p_eq))
        rows.append({"ga": ga, "gb": gb, "ma": ma, "mb": mb, "res": res, "mde": md, "need": need, "sd": sd,
                     "smoke": smoke, "matched": matched, "p_tost": p_eq})
    family = [p for r, pe in tests for p in (r.p_value, pe)] + [1.0] * (2 * len(dropped))
    adjusted = holm(family) if family else []
    records, display, sentences = [], [], []
    for i, row in enumerate(rows):
        res, ga, gb = row["res"], row["ga"], row["gb"]
        pe = tests[i][1]
        ph, peh = adjusted[2 * i], adjusted[2 * i + 1]
        cut_d, cut_e = (ph, peh) if nominal is None else (res.p_value, pe)
        threshold = alpha if nominal is None else nominal
        if row["smoke"]:
            v = INCONCLUSIVE
        elif cut_d < threshold and res.diff != 0.0:
            v = DIFFERENT
        elif cut_e < threshold:
            v = f"equivalent within ±{margin:g} points"
        else:
            v = INCONCLUSIVE
        records.append({"benchmark": bench, "a": ga.label, "b": gb.label, "seeds_a": row["ma"].shape[0],
                        "seeds_b": row["mb"].shape[0], "test": res.test, "diff": res.diff, "ci_low": res.ci_low,
                        "ci_high": res.ci_high, "p": res.p_value, "p_holm": ph, "p_tost": pe, "p_tost_holm": peh,
                        "mde": row["mde"], "verdict": v})
        need = row["need"]
        need_txt = DASH if need is None else str(need)
        display.append([bench, ga.label, gb.label, f"{row['ma'].shape[0]}+{row['mb'].shape[0]}",
                        res.test.replace("_", " "), pct(res.diff), f"{pct(res.ci_low)} to {pct(res.ci_high)}",
                        _p(res.p_value), _p(ph), _p(pe), _p(peh), DASH if row["mde"] is None else pct(row["mde"]),
                        need_txt, v])
        sentences.append(sentence(row, ph, peh, v, alpha, margin, m, nominal))
    columns = ["Benchmark", "A", "B", "Seeds (A+B)", "Test", "A − B (points)", f"{100 * (1 - alpha):.3g}% CI", "p",
               "p (Holm)", "TOST p", "TOST p (Holm)", "MDE (points)", "Seeds for observed diff", "Verdict"]
    fam = f"{m} declared primar{'y' if m == 1 else 'ies'}"
    notes = [f"One Holm family over the {2 * m} claims of the {fam} on {bench} (each primary's difference and its "
             f"equivalence): 'different' = Holm-adjusted p < {alpha:g}; else 'equivalent within ±{margin:g} points' "
             f"= two one-sided t-tests (TOST) at that margin, Holm-adjusted TOST p < {alpha:g}; else 'inconclusive'."
             if nominal is None else
             f"Group-sequential look: each claim is decided by its raw p below this look's nominal level "
             f"{nominal:.3g} (O'Brien-Fleming-type alpha spending, Bonferroni over the {2 * m} claims of the "
             f"{fam})."]
    if dropped:
        notes.append("Declared but not run (kept in the family at p = 1): "
                     + "; ".join(f"{a} vs {b}" for a, b in dropped) + ".")
    notes += [f"MDE = an estimate, from the observed seed spread, of the true difference this design detects with "
              f"{POWER:.0%} power at alpha/{2 * m} (Holm's strictest threshold over the claims), for the test's "
              f"own df at the seeds run (Welch: the smaller seed count − 1; paired: pairs − 1). The observed spread "
              f"is itself noisy with few seeds, so the true power at this difference may be lower. 'Seeds for "
              f"observed diff' = seeds per method at which the observed difference would be detected with "
              f"{POWER:.0%} power (– when none would, or for a smoke run). tables/primary.csv holds the same rows "
              f"with scores as fractions.",
              "Tests: the paired t-test over seeds when seed k of both methods was trained on the same prompts in "
              "the same order (the same seeds and prompt stream: pairing removes the shared prompts' part of the "
              "variance); Welch's t-test on per-seed scores when the seeds are not matched (>= 2 seeds each); "
              "against one untrained model, a t-test that adds its problem-level noise; a trained method with one "
              "seed makes the primary inconclusive (its seed-to-seed spread is unknown)."]
    cal = sorted({c for row in rows for c in (calibration_note(min(row["ma"].shape[0], row["mb"].shape[0])),) if c})
    notes += [f"Calibration: {c}." for c in cal]
    return Table("primary", columns, display, records, notes), sentences


_WHY_TEST = {"paired_seeds_t": "paired t over seeds: seed k of both methods saw the same prompts in the same order",
             "welch_t": "Welch's t: the seeds are not matched by prompt stream",
             "seeds_vs_single": "t-test against one untrained model, its problem-level noise added"}


def sentence(row: dict, p_holm: float, p_eq: float, v: str, alpha: float, margin: float, m: int,
             nominal: float | None = None) -> str:
    """A primary in words: the verdict first, then the numbers that carry it, the test and why it was chosen.
    `nominal`: a group-sequential look, whose claims are decided by their raw p below it (no Holm)."""
    res, a, b = row["res"], row["ga"].label, row["gb"].label
    sa, sb = row["ma"].shape[0], row["mb"].shape[0]
    ci = f"{100 * (1 - alpha):.3g}% CI {pct(res.ci_low)} to {pct(res.ci_high)}"
    why = _WHY_TEST.get(res.test, res.test.replace("_", " "))
    if res.test == "paired_seeds_t" and res.details.get("r") is not None:
        why += f"; per-seed scores correlate at r = {res.details['r']:.2f}"
    fam = (f"Holm-adjusted p={p_holm:.2g} over the {2 * m} claims of {m} primar{'y' if m == 1 else 'ies'}"
           if nominal is None else f"this look's nominal level {nominal:.2g}")
    nums = f"{a} − {b} = {pct(res.diff)} points ({ci}; p={res.p_value:.2g}, {fam}; {sa}+{sb} seeds; {why})"
    if row["smoke"]:
        return (f"{a} vs {b}: inconclusive — a smoke run, one training seed of a method: {nums} compares two "
                f"checkpoints, not the methods. Method-level claims need several seeds per method.")
    cal = calibration_note(min(sa, sb))
    if cal:
        nums += f" [{cal}]"
    if row["mde"] is not None:
        sd_txt = ""
        if row["sd"] is not None:
            sd_txt = f", {'SD of the paired differences' if res.test == 'paired_seeds_t' else 'seed SD'} " \
                     f"{pct(row['sd'])} points"
        power = (f" Estimated from the observed spread, this design detects a true difference of {pct(row['mde'])} "
                 f"points with about 80% power (at alpha/{2 * m}{sd_txt})")
        if row["need"] is not None:
            power += f"; the observed {pct(abs(res.diff))} points would need {row['need']} seeds per method."
        elif row["sd"] is not None:
            power += "; no number of seeds detects the observed difference."
        else:
            power += "."
    else:
        power = ""
    tost = f"TOST Holm-adjusted p={p_eq:.2g}" if nominal is None else f"TOST p={row['p_tost']:.2g}"
    if v == DIFFERENT:
        lead, trail = (a, b) if res.diff > 0 else (b, a)
        head = f"{lead} beats {trail}: different"
    elif v.startswith("equivalent"):
        head = f"{a} and {b} are {v} (TOST at ±{margin:g} points, {tost})"
    else:
        head = (f"{a} vs {b}: inconclusive — neither a difference nor equivalence within ±{margin:g} points "
                f"({tost}) is shown")
    return f"{head}. {nums}.{power}"


def _first_seeds(g: MethodGroup, n: int) -> MethodGroup | None:
    """The group cut to its seeds 0..n-1 (a look of a group-sequential design); None when one is missing. A group
    without seeds (the base model) is kept whole."""
    if g.is_base or all(s is None for s in g.seeds):
        return g
    if any(k not in g.seeds for k in range(n)):
        return None
    keep = [i for i, s in enumerate(g.seeds) if s is not None and s < n]
    return MethodGroup(g.label, [g.rows[i] for i in keep], [g.seeds[i] for i in keep], g.is_base)


def sequential_table(groups: list[MethodGroup], pairs: list[tuple[MethodGroup, MethodGroup]], bench: str,
                     blocks: list[int], alpha: float = 0.05, margin: float = 5.0,
                     dropped: list[tuple[str, str]] | None = None) -> dict:
    """The looks of a group-sequential design (`sequential_plan`) over the seeds these runs have: look k uses seeds
    0..blocks[k]-1 of every method and decides each claim by its raw p below the look's nominal level. The design
    stops at the first look where every primary is decided (different or equivalent within ±margin), or at the last
    block. Returns {"plan", "looks": [{look, seeds, boundary, nominal, rows, decided}], "stopped" (the look index it
    stopped at, or None while seeds remain to be added), "next" (seeds per method to add up to, or None), "table":
    the primary Table at the look that counts (the stopping look, else the latest), "sentences", "notes"}."""
    dropped = list(dropped or [])
    plan = sequential_plan(blocks, alpha, len(pairs) + len(dropped))
    looks, last = [], None
    stopped = None
    for k, n in enumerate(blocks):
        cut = [(_first_seeds(a, n), _first_seeds(b, n)) for a, b in pairs]
        if any(a is None or b is None for a, b in cut):
            break
        table, said = primary_table(groups, cut, bench, alpha, margin, dropped, nominal=plan["nominal"][k])
        decided = all(r["verdict"] != INCONCLUSIVE for r in table.records)
        looks.append({"look": k + 1, "seeds": n, "boundary": plan["boundaries"][k], "nominal": plan["nominal"][k],
                      "rows": table.records, "decided": decided})
        last = (table, said)
        if decided or k == len(blocks) - 1:
            stopped = k
            break
    if last is None:
        raise ValueError(f"group-sequential design {blocks}: the primaries' methods do not have the first block's "
                         f"{blocks[0]} seeds (0..{blocks[0] - 1}) yet")
    nxt = None if stopped is not None else blocks[len(looks)]
    bounds = ", ".join(f"look {k + 1} at {n} seeds: |z| ≥ {c:.2f} (nominal p < {p:.2g})"
                       for k, (n, c, p) in enumerate(zip(blocks, plan["boundaries"], plan["nominal"])))
    notes = [f"Group-sequential design, planned looks at {', '.join(map(str, blocks))} seeds per method; "
             f"O'Brien-Fleming-type alpha spending (Lan-DeMets), each of the {2 * (len(pairs) + len(dropped))} "
             f"claims (difference and equivalence per declared primary) at alpha {plan['claim_alpha']:.3g} "
             f"(Bonferroni of {alpha:g}): {bounds}. TOST's one-sided tests use half the nominal level each."]
    if stopped is not None and looks[stopped]["decided"]:
        notes.append(f"Stopped at look {stopped + 1} ({blocks[stopped]} seeds per method): every primary decided."
                     + (" Seeds beyond it do not enter the verdict." if any(
                         len(g.rows) > blocks[stopped] for pr in pairs for g in pr if not g.is_base) else ""))
    elif stopped is not None:
        notes.append(f"Reached the last look ({blocks[-1]} seeds per method) without deciding every primary: "
                     f"what the last look's interval excludes is all this design can say.")
    else:
        notes.append(f"Look {len(looks)} ({blocks[len(looks) - 1]} seeds per method) decided not every primary: "
                     f"continue to {nxt} seeds per method.")
    return {"plan": plan, "looks": looks, "stopped": stopped, "next": nxt, "table": last[0], "sentences": last[1],
            "notes": notes}


def looks_table(seq: dict) -> Table:
    """The looks of `sequential_table` as a Table (tables/sequential.csv): one row per look and primary."""
    columns = ["Look", "Seeds per method", "Boundary |z|", "Nominal p", "A", "B", "Test", "A − B (points)", "p",
               "TOST p", "Verdict at this look"]
    display, records = [], []
    for lk in seq["looks"]:
        for r in lk["rows"]:
            records.append({"look": lk["look"], "seeds": lk["seeds"], "boundary": lk["boundary"],
                            "nominal": lk["nominal"], "a": r["a"], "b": r["b"], "test": r["test"], "diff": r["diff"],
                            "p": r["p"], "p_tost": r["p_tost"], "verdict": r["verdict"]})
            display.append([str(lk["look"]), str(lk["seeds"]), f"{lk['boundary']:.2f}", f"{lk['nominal']:.2g}",
                            r["a"], r["b"], r["test"].replace("_", " "), pct(r["diff"]), _p(r["p"]),
                            _p(r["p_tost"]), r["verdict"]])
    return Table("sequential", columns, display, records, seq["notes"])
