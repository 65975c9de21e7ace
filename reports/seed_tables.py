"""Report tables over several training seeds: runs that share everything but the seed form one method, scored by
the mean over seeds with a small-sample t interval (`reports.seeds`), with per-seed scores and comparisons between
methods at the seed level (Welch's t; against the base model, its problem-level noise added), Holm-adjusted over
the report's family (`reports.tables.family_of`), the rest exploratory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from itertools import combinations

import numpy as np

from reports.runs import TrainRun
from tbrm.config import RESUMABLE_CHANGES
from reports.seeds import calibration_note, seed_mean, seed_paired
from reports.stats import EXPLORATORY, at_floor, boot_replicates
from reports.tables import (DASH, ModelRow, Table, _p, bench_names, family_of, finish_paired, paired_note,
                            pct)

# train_config fields that do not make two runs different methods: the seed, and what may change on resume
# (TrainConfig's field metadata: speed, memory, logging, length; never what a step computes)
NOT_METHOD = {"seed", *RESUMABLE_CHANGES}
# what makes seed k of two methods see the same prompts in the same order (besides the seed itself)
PROMPT_KEYS = ("data", "data_path", "data_config", "arith_digits", "arith_ops", "heldout_size", "problem_field",
               "answer_field", "prompts_per_step", "template")


@dataclass
class MethodGroup:
    """One method: the rows (checkpoints) of its seeds, in seed order; the base model is a group of one."""

    label: str
    rows: list[ModelRow]
    seeds: list[int | None]
    is_base: bool


def method_key(config: dict) -> str:
    """What makes a training run a method: its config without the seed (and settings that may change on
    resume, which do not change what is computed). An off-policy trajectory file counts by its name (which
    policy sampled it); its folder may differ per seed (each seed samples its own file once)."""
    key = {k: v for k, v in config.items() if k not in NOT_METHOD}
    if key.get("offline_trajectories"):
        key["offline_trajectories"] = Path(str(key["offline_trajectories"])).name
    return json.dumps(key, sort_keys=True, default=str)


def group_seeds(rows: list[ModelRow]) -> list[MethodGroup]:
    """Checkpoints trained with the same config but for the seed -> one group per method, in row order."""
    groups: list[MethodGroup] = []
    keys: list[str] = []
    for r in rows:
        run = r.runs[0]
        if r.is_base or run.trained is None:
            key = "\0row\0" + r.label
        else:
            key = f"{run.group_label}\0{run.checkpoint_step}\0{method_key(run.trained)}"
        seed = None if run.trained is None else run.trained.get("seed")
        if key in keys:
            g = groups[keys.index(key)]
            g.rows.append(r)
            g.seeds.append(seed)
        else:
            keys.append(key)
            groups.append(MethodGroup(run.group_label if not r.is_base else r.label, [r], [seed], r.is_base))
    for g in groups:
        order = sorted(range(len(g.rows)), key=lambda i: (g.seeds[i] is None, g.seeds[i] or 0))
        g.rows, g.seeds = [g.rows[i] for i in order], [g.seeds[i] for i in order]
        if len(g.rows) > 1 and len(set(g.seeds)) == len(g.seeds):  # name each checkpoint by its seed
            for r, seed in zip(g.rows, g.seeds):
                r.label = f"{g.label} (seed {seed})"
    return groups


def matched_seeds(ga: MethodGroup, gb: MethodGroup) -> bool:
    """True when seed k of A and seed k of B were trained on the same prompts in the same order: both trained, the
    same >= 2 distinct seeds, and the same prompt stream settings (PROMPT_KEYS) on every seed."""
    if ga.is_base or gb.is_base or len(ga.rows) < 2 or ga.seeds != gb.seeds or None in ga.seeds:
        return False
    if len(set(ga.seeds)) != len(ga.seeds):
        return False
    for ra, rb in zip(ga.rows, gb.rows):
        ca, cb = ra.runs[0].trained, rb.runs[0].trained
        if ca is None or cb is None or any(ca.get(k) != cb.get(k) for k in PROMPT_KEYS):
            return False
    return True


def group_trains(trains: list[TrainRun]) -> list[tuple[str, list[TrainRun]]]:
    """Training runs that share everything but the seed -> (method label, runs), for mean-and-band curves."""
    out: dict[str, tuple[str, list[TrainRun]]] = {}
    for t in trains:
        key = f"{t.group_label}\0{method_key(t.config)}"
        out.setdefault(key, (t.group_label, []))[1].append(t)
    return list(out.values())


def group_matrix(g: MethodGroup, bench: str) -> tuple[np.ndarray, list[str]] | None:
    """[seeds, problems] scores of a group on a benchmark, problems sorted by id; None unless every seed has it
    on the same problems."""
    res = [r.benchmarks.get(bench) for r in g.rows]
    if any(x is None for x in res) or len({frozenset(x.scores) for x in res}) > 1:
        return None
    ids = sorted(res[0].scores)
    return np.array([[x.scores[i] for i in ids] for x in res]), ids


def seed_table(groups: list[MethodGroup], alpha: float = 0.05) -> Table:
    """Table 1 over seeds: per method and benchmark, the mean over seeds with its t interval (`reports.seeds.
    seed_mean`), and the per-seed scores."""
    rows = [r for g in groups for r in g.rows]
    names = bench_names(rows)
    columns = ["Method", "Seeds"] + [f"{b} (mean over seeds, CI)" for b in names] + \
        [f"{b} per seed" for b in names]
    display, records = [], []
    notes_missing = []
    notes_cal: set[str] = set()
    for g in groups:
        rec: dict = {"label": g.label, "n_seeds": len(g.rows),
                     "seeds": " ".join(DASH if s is None else str(s) for s in g.seeds), "base": g.is_base}
        means, per = [], []
        for b in names:
            got = group_matrix(g, b)
            if got is None:
                means.append(DASH)
                per.append(DASH)
                if any(b in r.benchmarks for r in g.rows):
                    notes_missing.append(f"{g.label} on {b}: its seeds were not all scored on the same problems")
                continue
            m, _ = got
            sm = seed_mean(m, alpha=alpha)
            cal = calibration_note(sm.n_seeds) if not g.is_base else None
            means.append(f"{pct(sm.value)} ({pct(sm.ci_low)}{DASH}{pct(sm.ci_high)}){' †' if cal else ''}")
            if cal:
                notes_cal.add(cal)
            per.append(", ".join(pct(x) for x in sm.per_seed))
            rec.update({f"{b}_mean": sm.value, f"{b}_ci_low": sm.ci_low, f"{b}_ci_high": sm.ci_high,
                        f"{b}_ci_method": sm.method, f"{b}_per_seed": " ".join(f"{x:.6g}" for x in sm.per_seed),
                        f"{b}_n_problems": m.shape[1]})
        display.append([g.label, str(len(g.rows))] + means + per)
        records.append(rec)
    level = f"{100 * (1 - alpha):.3g}%"
    notes = [f"Scores in %: the mean over seeds of each seed's accuracy, with a {level} t interval for the expected "
             f"accuracy over new seeds and new problems: variance = the spread of the per-seed scores / seeds + "
             f"the problems' share (two-way seeds × problems ANOVA), on seeds − 1 degrees of freedom "
             f"(reports/seeds.py); from 10 seeds on, widened to the symmetric bootstrap-t over seeds where that is "
             f"wider (skewed seeds: a few take off, many stay near the base model). Few seeds give few degrees of "
             f"freedom (2 at 3 seeds), so the interval is wide: that is what few seeds know.",
             f"A model with one seed (the base model) shows problem-level uncertainty only: the {level} Wilson "
             f"interval for one sample per problem, else a t interval over problems."]
    notes += [f"† {c}." for c in sorted(notes_cal)] + notes_missing
    return Table("table1_seeds", columns, display, records, notes)


def seed_paired_table(groups: list[MethodGroup], alpha: float = 0.05, main: str | None = None,
                      primaries: set[tuple[str, str]] | None = None) -> Table:
    """Every pair of methods on every benchmark both have on the same problems: the difference of their means
    over seeds, by `reports.seeds.seed_paired` (Welch's t; `vs_single` against a one-seed model; the per-problem
    test for one seed each), Holm-adjusted over the family (`reports.tables.family_of`), the rest exploratory."""
    rows = [r for g in groups for r in g.rows]
    records, skipped, todo = [], [], []
    for b in bench_names(rows):
        have = [(g, group_matrix(g, b)) for g in groups]
        have = [(g, x) for g, x in have if x is not None]
        for (g1, x1), (g2, x2) in combinations(have, 2):
            (ga, (ma, ia)), (gb, (mb, ib)) = ((g2, x2), (g1, x1)) if g1.is_base and not g2.is_base else \
                ((g1, x1), (g2, x2))
            if ia != ib:
                skipped.append(f"{b}: {ga.label} vs {gb.label} — different problem sets; not paired")
                continue
            todo.append((b, ga, gb, ma, mb))
    fams = [family_of(b, ga.label, gb.label, main, primaries) for b, ga, gb, _, _ in todo]
    n_boot = boot_replicates(max(1, sum(f != EXPLORATORY for f in fams)), alpha)
    for (b, ga, gb, ma, mb), fam in zip(todo, fams):
        single = "mcnemar" if _one_sample(ga, b) and _one_sample(gb, b) else "bootstrap"
        res = seed_paired(ma, mb, alpha=alpha, single_test=single, n_boot=n_boot, matched=matched_seeds(ga, gb))
        one_seed_trained = any(len(g.rows) == 1 and not g.is_base and g.rows[0].runs[0].trained is not None
                               for g in (ga, gb))
        records.append({
            "benchmark": b, "method_a": ga.label, "method_b": gb.label, "seeds_a": ma.shape[0],
            "seeds_b": mb.shape[0], "n_problems": res.n, "score_a": float(ma.mean()), "score_b": float(mb.mean()),
            "diff": res.diff, "ci_low": res.ci_low, "ci_high": res.ci_high, "ci_level": 1.0 - alpha,
            "test": res.test, "p_value": res.p_value, "p_floor": res.details.get("p_floor"), "p_holm": None,
            "family": fam, "significant": None, "significant_raw": None, "verdict": None, "settings_differ": "",
            "sentence": None, "_result": res, "_about": "checkpoints" if one_seed_trained else "methods",
        })
    cal = {c for r in records if r["_about"] == "methods" for c in (calibration_note(min(r["seeds_a"], r["seeds_b"])),)
           if c}
    finish_paired(records, alpha)
    columns = ["Benchmark", "A", "B", "Seeds (A+B)", "Problems", "A − B (points)", "CI", "Test", "p", "p (Holm)",
               "Family", "Verdict (Holm-adjusted)"]
    display = [[r["benchmark"], r["method_a"], r["method_b"], f"{r['seeds_a']}+{r['seeds_b']}",
                str(r["n_problems"]), pct(r["diff"]), f"{pct(r['ci_low'])} to {pct(r['ci_high'])}",
                r["test"].replace("_", " "), _p(r["p_value"], r["p_floor"]),
                _p(r["p_holm"], r["p_holm"] if at_floor(r["p_value"], r["p_floor"]) else None), r["family"],
                r["verdict"]] for r in records]
    notes = [paired_note(records, alpha, main, bool(primaries)) if records else
             "No two methods share a benchmark's problems.",
             "Tests: the paired t-test over seeds when seed k of both methods was trained on the same prompts in "
             "the same order; else Welch's t-test on the per-seed scores when both methods have several seeds (the "
             "problems are shared, so their difficulty cancels; the spread of the per-seed scores holds both the "
             "seed and the evaluation noise); against a model with one seed (the base model), a t-test whose "
             "variance adds that model's problem-level noise to the seed spread, on seeds − 1 df. In simulation "
             "(tests/test_calibration.py, docs/statistics.md) they hold 5% at 3 and 10 seeds with unimodal seed "
             "spreads, and between methods also near the floor with seeds that collapse or take off; against the "
             "base model, near the floor, only from 10 seeds (13% at 3 seeds, half collapsing). So a method that "
             "moves between seeds needs a larger gap than a per-problem test of one seed each would ask for."]
    notes += [f"Calibration: {c}." for c in sorted(cal)]
    notes += [f"Not compared — {s}" for s in skipped]
    return Table("paired_seeds", columns, display, records, notes)


def _one_sample(g: MethodGroup, bench: str) -> bool:
    return all(r.benchmarks[bench].n_samples == 1 for r in g.rows)
