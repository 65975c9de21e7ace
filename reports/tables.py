"""The report's tables, computed from loaded runs (`reports.runs`): Table 1 (methods x benchmarks), paired
significance, settings mismatches, training summary and efficiency.

Every table is a `Table`: display strings for Markdown/HTML plus raw records for its CSV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from statistics import mean, median

from reports.runs import BenchResult, EvalRun, TrainRun
from reports.stats import (AFTER_CORRECTION, EXPLORATORY, at_floor, boot_replicates, compare, describe, holm, verdict,
                           wilson)

BENCH_ORDER = ("math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench", "gsm8k")
SETTINGS = ("n_samples", "temperature", "top_p", "max_new_tokens", "template")
DASH = "–"


@dataclass
class Table:
    name: str  # CSV file stem
    columns: list[str]
    rows: list[list[str]]  # display cells
    records: list[dict]  # raw values for the CSV
    notes: list[str] = field(default_factory=list)


@dataclass
class ModelRow:
    """One Table 1 row: a model (base or trained checkpoint) with every eval run that scored it."""

    label: str
    runs: list[EvalRun]
    benchmarks: dict[str, BenchResult]
    is_base: bool
    base_model: str


@dataclass
class Mismatch:
    benchmark: str
    what: str  # "problems", "n_samples", "max_new_tokens", ...
    detail: str


def pct(x: float | None, digits: int = 1) -> str:
    """A [0, 1] score in percent, Unicode minus for negatives (as `reports.stats.describe` writes them)."""
    if x is None:
        return DASH
    s = f"{100 * x:.{digits}f}"
    return "0." + "0" * digits if s.lstrip("-") == "0." + "0" * digits else s.replace("-", "\u2212")


# ---------------------------------------------------------------------------------------------------- rows


def group_rows(evals: list[EvalRun]) -> list[ModelRow]:
    """Merge eval runs of the same model (same fingerprint and label) whose benchmarks do not overlap, e.g. a
    held-out run and a MATH500 run of one checkpoint, into one row; base model rows first within each base
    model; labels made unique with the run folder where needed."""
    rows: list[ModelRow] = []
    keys: list[str] = []
    for run in evals:
        key = run.identity + "\0" + (run.user_label or "")
        target = next((r for r, k in zip(rows, keys) if k == key and not set(r.benchmarks) & set(run.benchmarks)),
                      None)
        if target is None:
            rows.append(ModelRow(run.label, [run], dict(run.benchmarks), run.is_base, run.base_model))
            keys.append(key)
        else:
            target.runs.append(run)
            target.benchmarks.update(run.benchmarks)
    order = list(dict.fromkeys(r.base_model for r in rows))
    rows.sort(key=lambda r: (order.index(r.base_model), not r.is_base))  # stable: input order otherwise
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.label] = counts.get(r.label, 0) + 1
    for r in rows:
        if counts[r.label] > 1:
            r.label = f"{r.label} [{', '.join(x.path.name for x in r.runs)}]"
    return rows


def bench_names(rows: list[ModelRow]) -> list[str]:
    names = list(dict.fromkeys(b for r in rows for b in r.benchmarks))
    return sorted(names, key=lambda b: (BENCH_ORDER.index(b) if b in BENCH_ORDER else len(BENCH_ORDER),
                                        names.index(b)))


def _settings(b: BenchResult) -> dict:
    return {"n_samples": b.n_samples, "temperature": b.sampling.get("temperature"), "top_p": b.sampling.get("top_p"),
            "max_new_tokens": b.sampling.get("max_new_tokens"), "template": b.template}


# ---------------------------------------------------------------------------------------------------- mismatches


def find_mismatches(rows: list[ModelRow]) -> list[Mismatch]:
    """Per benchmark: rows that scored different problem sets (ids) or with different sampling settings or
    templates. Such numbers are shown, but flagged and kept out of the Average."""
    out: list[Mismatch] = []
    for bench in bench_names(rows):
        have = [r for r in rows if bench in r.benchmarks]
        if len(have) < 2:
            continue
        ids = [frozenset(r.benchmarks[bench].scores) for r in have]
        if len(set(ids)) > 1:
            common = frozenset.intersection(*ids)
            parts = [f"{r.label}: {len(i)} problems ({len(i - common)} not in every run)" for r, i in zip(have, ids)]
            out.append(Mismatch(bench, "problems", "different problem sets — " + "; ".join(parts)))
        for key in SETTINGS:
            vals = [_settings(r.benchmarks[bench])[key] for r in have]
            if len(set(map(repr, vals))) > 1:
                out.append(Mismatch(bench, key, f"different {key} — " +
                                    "; ".join(f"{r.label}: {v}" for r, v in zip(have, vals))))
    return out


def average_benchmarks(rows: list[ModelRow], mismatches: list[Mismatch],
                       average_over: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Benchmarks the Average column averages (every row has them, with matching problems and settings; within
    `average_over` if given) and one note per benchmark left out, saying why."""
    names = bench_names(rows)
    flagged = {m.benchmark for m in mismatches}
    used, notes = [], []
    for b in names:
        missing = [r.label for r in rows if b not in r.benchmarks]
        if average_over is not None and b not in average_over:
            notes.append(f"{b}: not in --average-over")
        elif missing:
            notes.append(f"{b}: not evaluated for {', '.join(missing)}")
        elif b in flagged:
            notes.append(f"{b}: problems or settings differ between rows (see Mismatches)")
        else:
            used.append(b)
    for b in average_over or []:
        if b not in names:
            notes.append(f"{b}: named in --average-over but in no run")
    return used, notes


# ---------------------------------------------------------------------------------------------------- Table 1


def table1(rows: list[ModelRow], mismatches: list[Mismatch], metric: str = "avg",
           average_over: list[str] | None = None) -> Table:
    """One row per model/method, one column per benchmark ("value (CI low–high)", in %), plus Average."""
    names = bench_names(rows)
    used, avg_notes = average_benchmarks(rows, mismatches, average_over)
    metric_of = {b: {r.benchmarks[b].metric(metric)[0] for r in rows if b in r.benchmarks} for b in names}
    flagged = {m.benchmark for m in mismatches}
    columns = ["Model / method"]
    for b in names:
        col = f"{b} ({next(iter(metric_of[b]))})" if len(metric_of[b]) == 1 else b
        columns.append(col + (" ⚠" if b in flagged else ""))
    columns.append("Average")
    display, records = [], []
    levels = set()
    for r in rows:
        cells = [r.label]
        rec: dict = {"label": r.label, "base": r.is_base, "runs": " ".join(x.display or x.path.name for x in r.runs)}
        vals = {}
        for b in names:
            res = r.benchmarks.get(b)
            if res is None:
                cells.append(DASH)
                continue
            mname, m = shown_metric(res, metric)
            levels.add(res.ci_level)
            vals[b] = m["value"]
            cell = f"{pct(m['value'])} ({pct(m['ci_low'])}{DASH}{pct(m['ci_high'])})"
            if len(metric_of[b]) > 1:
                cell += f" {mname}"
            cells.append(cell)
            rec.update({f"{b}_metric": mname, f"{b}_value": m["value"], f"{b}_ci_low": m["ci_low"],
                        f"{b}_ci_high": m["ci_high"], f"{b}_n_problems": res.n_problems,
                        f"{b}_n_samples": res.n_samples})
        avg = mean(vals[b] for b in used) if used else None
        cells.append(pct(avg))
        rec["average"] = avg
        display.append(cells)
        records.append(rec)
    level = ", ".join(f"{100 * x:.3g}%" for x in sorted(levels)) or "95%"
    notes = [f"Scores in %, {level} CI over problems in parentheses: Wilson's interval for avg@1 (one sample per "
             f"problem), else the percentile bootstrap of each run's summary.json; avg@k = mean accuracy over k "
             f"samples per problem, pass@k / maj@k as evaluated."]
    if used:
        notes.append(f"Average = unweighted mean over {', '.join(used)} (the benchmarks every row has with the "
                     f"same problems and settings); it has no CI.")
    else:
        notes.append("Average: no benchmark is shared by every row with the same problems and settings, so "
                     "there is nothing fair to average.")
    notes += [f"Left out of the Average — {n}" for n in avg_notes]
    return Table("table1", columns, display, records, notes)


def long_results(rows: list[ModelRow], used: list[str]) -> Table:
    """Tidy CSV: one line per (row, benchmark, metric)."""
    records = []
    for r in rows:
        for b, res in r.benchmarks.items():
            for mname, m in res.metrics.items():
                m = with_wilson(res, mname, m)
                records.append({"label": r.label, "benchmark": b, "metric": mname, "value": m["value"],
                                "ci_low": m["ci_low"], "ci_high": m["ci_high"], "ci_level": res.ci_level,
                                "n_problems": res.n_problems, "n_samples": res.n_samples,
                                "temperature": res.sampling.get("temperature"),
                                "max_new_tokens": res.sampling.get("max_new_tokens"), "template": res.template,
                                "in_average": b in used, "run": _display_of(r, res)})
    cols = list(records[0]) if records else []
    return Table("results_long", cols, [[str(x[c]) for c in cols] for x in records], records)


def shown_metric(res: BenchResult, kind: str = "avg") -> tuple[str, dict]:
    """`BenchResult.metric`, with the interval of avg@1 (and of maj@1/pass@1, which fall back to it) replaced by
    Wilson's (`reports.stats.wilson`): a percentile bootstrap of 0/1 scores on few problems covers 40% at 10
    problems and 5% accuracy, and shows 0/10 as "0.0 (0.0–0.0)"."""
    name, m = res.metric(kind)
    return name, with_wilson(res, name, m)


def with_wilson(res: BenchResult, name: str, m: dict) -> dict:
    """A metric's {"value", "ci_low", "ci_high"} with Wilson's interval when it is an accuracy of one sample per
    problem (avg@1, pass@1), else as evaluated."""
    if res.n_samples != 1 or name not in ("avg@1", "pass@1"):
        return m
    correct = sum(1 for v in res.scores.values() if v == 1.0)
    lo, hi = wilson(correct, len(res.scores), 1.0 - res.ci_level)
    return {**m, "ci_low": lo, "ci_high": hi}


def _display_of(row: ModelRow, res: BenchResult) -> str:
    run_dir = res.samples_path.parent.parent
    run = next((x for x in row.runs if x.path == run_dir), None)
    return (run.display if run is not None and run.display else run_dir.name)


# ---------------------------------------------------------------------------------------------------- paired tests


def paired_table(rows: list[ModelRow], alpha: float = 0.05, main: str | None = None,
                 primaries: set[tuple[str, str]] | None = None) -> Table:
    """Every pair of rows on every benchmark both scored on the SAME problems: per-problem scores (mean
    correctness over the problem's samples) -> mid-p McNemar (one sample per problem for both) or paired bootstrap
    (`reports.stats.compare`), and the sentence of `reports.stats.describe`. The Holm family (`family_of`) is the
    primaries when any are declared, else the comparisons on the `main` benchmark; the rest are exploratory. A
    trained checkpoint is one seed of its method: its comparisons are worded about the checkpoints."""
    records, skipped = [], []
    todo = []
    for b in bench_names(rows):
        have = [r for r in rows if b in r.benchmarks]
        for r1, r2 in combinations(have, 2):
            # A is the method, B the base model when one of them is the base; else table order
            a, bb = (r2, r1) if r1.is_base and not r2.is_base else (r1, r2)
            ra, rb = a.benchmarks[b], bb.benchmarks[b]
            if set(ra.scores) != set(rb.scores):
                skipped.append(f"{b}: {a.label} vs {bb.label} — different problem sets "
                               f"({len(ra.scores)} vs {len(rb.scores)} problems, "
                               f"{len(set(ra.scores) & set(rb.scores))} shared); not paired")
                continue
            todo.append((b, a, bb, ra, rb))
    fams = [family_of(b, a.label, bb.label, main, primaries) for b, a, bb, _, _ in todo]
    n_boot = boot_replicates(max(1, sum(f != EXPLORATORY for f in fams)), alpha)
    for (b, a, bb, ra, rb), fam in zip(todo, fams):
        test = "mcnemar" if ra.n_samples == 1 and rb.n_samples == 1 else "bootstrap"
        res = compare(ra.scores, rb.scores, test=test, alpha=alpha, n_boot=n_boot)
        diffs = [k for k in SETTINGS if _settings(ra)[k] != _settings(rb)[k]]
        trained = any(r.runs[0].trained is not None and not r.is_base for r in (a, bb))
        records.append({
            "benchmark": b, "method_a": a.label, "method_b": bb.label, "n_problems": res.n,
            "score_a": mean(ra.scores.values()), "score_b": mean(rb.scores.values()), "diff": res.diff,
            "ci_low": res.ci_low, "ci_high": res.ci_high, "ci_level": res.details.get("ci_level"),
            "test": res.test, "p_value": res.p_value, "p_floor": res.details.get("p_floor"), "p_holm": None,
            "family": fam, "significant": None, "significant_raw": None, "verdict": None,
            "settings_differ": " ".join(diffs), "sentence": None, "_result": res,
            "_about": "checkpoints" if trained else "methods",
        })
    finish_paired(records, alpha)
    columns = ["Benchmark", "A", "B", "Problems", "A − B (points)", "CI", "Test", "p", "p (Holm)", "Family",
               "Verdict (Holm-adjusted)"]
    display = []
    for r in records:
        ci = (f"{pct(r['ci_low'])} to {pct(r['ci_high'])}" if r["ci_low"] is not None else DASH)
        display.append([r["benchmark"], r["method_a"], r["method_b"], str(r["n_problems"]), pct(r["diff"]), ci,
                        r["test"].replace("_", " "), _p(r["p_value"], r["p_floor"]),
                        _p(r["p_holm"], r["p_holm"] if at_floor(r["p_value"], r["p_floor"]) else None),
                        r["family"], r["verdict"]])
    notes = [paired_note(records, alpha, main, bool(primaries))] if records else \
        ["No pair of rows shares a benchmark with the same problems."]
    if any(r["p_floor"] for r in records):
        notes.append(f"Bootstrap p-values come from {n_boot:,} replicates; the smallest they can be is "
                     f"{2 / (n_boot + 1):.2g}, and a p at that floor is printed as '≤' (the true p is smaller).")
    notes += [f"Not compared — {s}" for s in skipped]
    return Table("paired", columns, display, records, notes)


MAIN, PRIMARY = "main benchmark", "primary"


def family_of(bench: str, a: str, b: str, main: str | None, primaries: set[tuple[str, str]] | None) -> str:
    """Which family a comparison belongs to: "primary" (a declared primary on the main benchmark), "main benchmark"
    (no primaries declared: every comparison on the main benchmark), or "exploratory" (everything else)."""
    if bench != main:
        return EXPLORATORY
    if primaries:
        key = (a.casefold(), b.casefold())
        return PRIMARY if key in primaries or key[::-1] in primaries else EXPLORATORY
    return MAIN


def paired_note(records: list[dict], alpha: float, main: str | None = None, declared: bool = False) -> str:
    fam = [r for r in records if r.get("family", MAIN) != EXPLORATORY]
    n_exp = len(records) - len(fam)
    what = ("the pre-declared primary comparisons" if declared else
            f"every comparison on the main benchmark, {main}" if main else "every comparison in this table")
    text = (f"Verdicts follow the Holm-adjusted p-value (family-wise error over {what}: {len(fam)} comparison"
            f"{'s' if len(fam) != 1 else ''}, at {alpha:g}); the raw p of each comparison on its own is shown beside "
            f"it. A difference with raw p < {alpha:g} but adjusted p ≥ {alpha:g} is '{AFTER_CORRECTION}'.")
    if n_exp:
        text += (f" The other {n_exp} comparison{'s are' if n_exp != 1 else ' is'} exploratory: raw p only, no "
                 f"verdict, not corrected for multiple comparisons (MATH500 slices of fewer than 500 problems are "
                 f"never in the family).")
    return text


def finish_paired(records: list[dict], alpha: float) -> None:
    """Holm-adjust the family of comparisons in `records` (each with a "_result" PairedResult, popped here; those
    whose "family" is "exploratory" stay out of it) and set p_holm, significant (adjusted), significant_raw,
    verdict and the sentence, which follow the adjusted p. Exploratory comparisons get no verdict: p_holm and
    significant stay empty, the verdict reads "exploratory". "_about" (popped; default "methods") words a sentence
    about "checkpoints" (one training seed each) instead."""
    fam = [r for r in records if r.get("family", MAIN) != EXPLORATORY]
    adjusted = dict(zip(map(id, fam), holm([r["p_value"] for r in fam])))
    for rec in records:
        res = rec.pop("_result")
        about = rec.pop("_about", "methods")
        rec["significant_raw"] = res.p_value < alpha
        if id(rec) not in adjusted:
            rec.update(p_holm=None, significant=None, verdict=EXPLORATORY,
                       sentence=describe(res, rec["method_a"], rec["method_b"], alpha=alpha, about="exploratory"))
            continue
        p = adjusted[id(rec)]
        v = verdict(res, alpha, p)
        rec["p_holm"] = p
        rec["significant"] = v.endswith("ahead")
        tag = " checkpoint" if about == "checkpoints" else ""
        rec["verdict"] = (f"{rec['method_a']}{tag} ahead" if v == "A ahead" else f"{rec['method_b']}{tag} ahead"
                          if v == "B ahead" else v)
        rec["sentence"] = describe(res, rec["method_a"], rec["method_b"], alpha=alpha, p_adjusted=p,
                                   n_comparisons=len(fam), about=about)


def _p(p: float | None, floor: float | None = None) -> str:
    if p is None:
        return DASH
    if at_floor(p, floor):
        return f"≤{floor:.2g}"
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2g}"


# ---------------------------------------------------------------------------------------------------- training

TRAIN_SETTINGS = ("model", "data", "prompts_per_step", "max_new_tokens", "temperature", "micro_batch_size",
                  "dtype", "autocast", "gradient_checkpointing", "generation_batch_size", "device", "threads",
                  "arith_digits", "arith_ops", "heldout_size", "eval_problems", "eval_benchmark")


def train_mismatches(trains: list[TrainRun]) -> list[str]:
    """Settings (other than the algorithm and its rollouts per prompt) that differ between train runs, which
    make curves and the efficiency table compare more than the algorithm."""
    out = []
    for key in TRAIN_SETTINGS:
        vals = [t.config.get(key) for t in trains]
        if len(set(map(repr, vals))) > 1:
            out.append(f"training runs differ in {key} — " + "; ".join(f"{t.label}: {v}" for t, v in zip(trains, vals)))
    return out


def _first_last(rows: list[dict], key: str) -> tuple[float | None, float | None]:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return (vals[0], vals[-1]) if vals else (None, None)


def training_table(trains: list[TrainRun]) -> Table:
    names = list(dict.fromkeys(n for t in trains for n in t.eval_names))
    columns = ["Run", "Method", "Prompts/step", "Steps", "Rollouts", "Reward (first → last step)"]
    columns += [f"{n} accuracy (start → end)" for n in names]
    display, records = [], []
    for t in trains:
        c = t.config
        steps_cfg = c.get("steps")
        rollouts = max((r.get("rollouts") or 0 for r in t.rows), default=0)
        r0, r1 = _first_last([r for r in t.rows if r["step"] > 0], "reward/mean")
        cells = [t.label, t.method, str(c.get("prompts_per_step")), f"{t.steps_done}/{steps_cfg}", str(rollouts),
                 f"{r0:.3f} → {r1:.3f}" if r0 is not None else DASH]
        rec = {"label": t.label, "method": t.method, "run": t.display or t.path.name, "prompts_per_step": c.get("prompts_per_step"),
               "rollouts_per_prompt": c.get("rollouts_per_prompt"), "steps_done": t.steps_done,
               "steps_configured": steps_cfg, "rollouts": rollouts, "reward_first": r0, "reward_last": r1}
        for n in names:
            a0, a1 = _first_last(t.rows, f"eval/{n}/accuracy")
            cells.append(f"{pct(a0)} → {pct(a1)}" if a0 is not None else DASH)
            rec[f"{n}_accuracy_start"], rec[f"{n}_accuracy_end"] = a0, a1
        display.append(cells)
        records.append(rec)
    notes = ["Held-out accuracy is the trainer's greedy evaluation (in %) at step 0 and at the last evaluated step."]
    return Table("training", columns, display, records, notes)


PHASES = (("time/generation", "generation"), ("time/reference", "reference"), ("time/training", "training"),
          ("time/step", "step"))


def efficiency(t: TrainRun) -> dict:
    """Seconds/step by phase (median over steps after the first, which pays one-off warm-up), peak memory,
    rollout tokens/s. Medians: one step stalled by another process on a shared machine, or by the step's
    checkpoint write, must not move a method's figure."""
    steps = [r for r in t.rows if r["step"] > 0]
    body = [r for r in steps if r["step"] > 1] or steps
    out: dict = {"label": t.label, "method": t.method, "steps_averaged": len(body),
                 "first_step_excluded": len(body) < len(steps)}
    for key, name in PHASES:
        vals = [r[key] for r in body if r.get(key) is not None]
        out[f"{name}_s"] = median(vals) if vals else None
    mem = [r["memory/peak_gb"] for r in steps if r.get("memory/peak_gb") is not None]
    out["peak_memory_gb"] = max(mem) if mem else None
    tps = [r["rollout/tokens_per_second"] for r in body if r.get("rollout/tokens_per_second") is not None]
    out["rollout_tokens_per_s"] = median(tps) if tps else None
    out["device"] = t.config.get("device")
    return out


def _ratio(x: float | None, ref: float | None) -> float | None:
    return x / ref if x is not None and ref else None


def efficiency_table(trains: list[TrainRun]) -> Table:
    recs = [efficiency(t) for t in trains]
    ref = next((r for t, r in zip(trains, recs) if t.method == "TBRM n=1"), None)
    for r in recs:
        r["step_time_vs_tbrm_n1"] = _ratio(r["step_s"], ref and ref["step_s"])
        r["memory_vs_tbrm_n1"] = _ratio(r["peak_memory_gb"], ref and ref["peak_memory_gb"])
        r["tokens_per_s_vs_tbrm_n1"] = _ratio(r["rollout_tokens_per_s"], ref and ref["rollout_tokens_per_s"])
    x = lambda v: DASH if v is None else f"{v:.2f}×"  # noqa: E731
    s = lambda v, d=2: DASH if v is None else f"{v:.{d}f}"  # noqa: E731
    columns = ["Method", "Generation s", "Reference s", "Training s", "Total s/step", "Peak memory GB",
               "Rollout tok/s", "Time vs TBRM n=1", "Memory vs TBRM n=1", "Tok/s vs TBRM n=1"]
    display = [[r["label"], s(r["generation_s"]), s(r["reference_s"]), s(r["training_s"]), s(r["step_s"]),
                s(r["peak_memory_gb"]), s(r["rollout_tokens_per_s"], 0), x(r["step_time_vs_tbrm_n1"]),
                x(r["memory_vs_tbrm_n1"]), x(r["tokens_per_s_vs_tbrm_n1"])] for r in recs]
    notes = ["Seconds per step and tokens/s are medians over the steps after the first (the first pays one-off "
             "warm-up; it is used only when it is the only step; medians keep a step stalled by another process "
             "from moving the figure). Held-out evaluation time is not part of a step."]
    if ref:
        notes.append(f"Ratios are to {ref['label']} (the paper: PPO takes 1.3× and GRPO n=4 3.1× TBRM n=1's time "
                     f"per step; TBRM n=1 uses 33% less memory than PPO).")
    else:
        notes.append("No TBRM n=1 run given, so no ratios.")
    if any(str(t.config.get("device", "")).startswith("cpu") or t.config.get("device") == "auto" for t in trains):
        notes.append("On CPU, peak memory is the process's peak resident memory (models, optimizer, Python); on "
                     "CUDA it is peak allocated GPU memory.")
    return Table("efficiency", columns, display, recs, notes)
