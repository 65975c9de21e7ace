"""`tbrm report`: run directories in, report.md + report.html + figures/*.png + tables/*.csv out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reports import figures as F
from reports import primaries as P
from reports import seed_tables as S
from reports import tables as T
from reports.render import Block, to_csv, to_html, to_markdown
from reports.runs import EvalRun, TrainRun, load_runs
from evals.io import atomic_write_text
from evals.portable import portable_path, scrub


@dataclass
class ReportResult:
    out: Path
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


def _check_out(out: Path, run_dirs: list[str]) -> None:
    for d in run_dirs:
        if out.resolve() == Path(d).resolve():
            raise ValueError(f"--out {out} is one of the run directories; write the report somewhere else")
    for marker in ("summary.json", "train_config.json"):
        if (out / marker).exists():
            raise ValueError(f"--out {out} holds {marker}: it is a run directory; write the report somewhere else")


def _model_shown(r: EvalRun, out: Path) -> str:
    """The model of an eval run as the report names it: bundled name, hub id, or a local directory relative to
    the report (summaries record it relative to their run folder)."""
    p = Path(r.model_path).expanduser()
    if p.is_absolute() or (r.path / p).exists():
        return portable_path(p if p.is_absolute() else r.path / p, out)
    return r.model_path


def _runs_table(evals: list[EvalRun], trains: list[TrainRun], out: Path) -> T.Table:
    """The run inventory: folders relative to the report (or labels), models as names and fingerprint hashes."""
    rows, recs = [], []
    for r in evals:
        what = ", ".join(f"{b} ({x.n_problems}×{x.n_samples})" for b, x in r.benchmarks.items())
        shown = _model_shown(r, out)
        digest = r.fingerprint.get("sha256_sample")
        model = shown + (f" [{r.method}]" if r.method else "") + (f" sha256:{digest}" if digest else "")
        rows.append([r.label, "eval", r.display, model, what])
        recs.append({"label": r.label, "kind": "eval", "path": r.display, "model": shown, "model_sha256": digest,
                     "method": r.method or "base", "contents": what})
    for t in trains:
        what = f"{t.steps_done}/{t.config.get('steps')} steps, {t.config.get('prompts_per_step')} prompts/step"
        shown = portable_path(t.config["model"], out) if Path(str(t.config.get("model"))).is_absolute() \
            else t.config.get("model")
        seed = f", seed {t.config.get('seed')}"
        rows.append([t.label, "train", t.display, f"{shown} [{t.method}{seed}]", what])
        recs.append({"label": t.label, "kind": "train", "path": t.display, "model": shown,
                     "model_sha256": None, "method": t.method, "contents": what})
    return T.Table("runs", ["Label", "Kind", "Run directory (relative to this report)", "Model", "Contents"],
                   rows, recs)


SMOKE = ("Smoke run: every trained method here has ONE training seed. A seed is one draw of the training "
         "randomness (two runs of one command moved held-out accuracy by 14 points on the CPU preset), so every "
         "comparison below is between two checkpoints on these problems, not between two methods, and this report "
         "gives no method verdicts. Method-level claims need several seeds per method (`tbrm reproduce --seeds N`, "
         "or a preset powered for its primary comparisons).")


def _in_words(records: list[dict], main: str | None, declared: bool) -> str:
    fam = "the pre-declared primaries" if declared else f"the comparisons on the main benchmark ({main})"
    return (f"In words (verdicts follow the Holm-adjusted p-value over {fam}; the raw p is shown beside it; "
            f"comparisons outside that family are exploratory, with their raw p and no verdict):")


def build_report(run_dirs: list[str], out: str | Path, *, labels: list[str] | None = None, alpha: float = 0.05,
                 metric: str = "avg", average_over: list[str] | None = None,
                 title: str = "TBRM benchmark report", primaries: list[str] | None = None, margin: float = 5.0,
                 main_benchmark: str | None = None, dropped: list[str] | None = None,
                 sequential: list[int] | None = None) -> ReportResult:
    """Write the report. `primaries`: "A:B" method pairs (or (A, B) tuples), matched case-insensitively to the
    method labels, decided on `main_benchmark` (default `reports.primaries.main_benchmark`) with Holm over them
    only and TOST at ±`margin` points; every other comparison is exploratory. Without primaries, the Holm family
    is every comparison on the main benchmark. `dropped`: "A:B" primaries declared but not run, kept in the Holm
    family at p = 1 and listed. `sequential`: planned seed blocks of a group-sequential design
    (`reports.primaries.sequential_table`) deciding the primaries at its looks."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"--alpha must be in (0, 1), got {alpha}")
    if not margin > 0.0:
        raise ValueError(f"--margin must be > 0 points, got {margin}")
    pairs = [P.parse_primary(x) if isinstance(x, str) else (str(x[0]), str(x[1])) for x in primaries or []]
    not_run = [P.parse_primary(x) if isinstance(x, str) else (str(x[0]), str(x[1])) for x in dropped or []]
    if sequential and not pairs:
        raise ValueError("--sequential needs --primary: a group-sequential design decides declared primaries")
    out = Path(out)
    _check_out(out, run_dirs)
    evals, trains = load_runs(run_dirs, labels)  # everything validated before anything is written
    # no machine paths in anything the report writes: run folders relative to the report, or their names
    where: dict[str, str] = {}
    for r in [*evals, *trains]:
        r.display = portable_path(r.path, out)
        for form in {str(r.path), str(r.path.resolve()), str(r.path.absolute())}:
            where[form] = r.display
    res = ReportResult(out)
    blocks: list[Block] = []
    figs: dict[str, bytes] = {}
    tables: list[T.Table] = []

    rows = T.group_rows(evals)
    mismatches = T.find_mismatches(rows)
    warnings = [f"{m.benchmark}: {m.detail}" for m in mismatches]
    if len(trains) > 1:
        warnings += T.train_mismatches(trains)
    warnings += [n for r in [*evals, *trains] for n in r.notes]
    warnings = [scrub(w, where) for w in warnings]
    res.warnings = warnings
    groups = S.group_seeds(rows)  # checkpoints that differ only in the training seed: one method
    seeded = any(len(g.rows) > 1 for g in groups)
    main = P.main_benchmark(rows, main_benchmark)
    chosen = P.resolve_primaries(pairs, groups)  # a name not among the methods fails before anything is written
    if chosen and main is None:
        raise ValueError("--primary given but no eval run has a benchmark to compare on")
    prim_keys = {(a.label.casefold(), b.label.casefold()) for a, b in chosen}
    trained = [g for g in groups if not g.is_base and g.rows[0].runs[0].trained is not None]
    smoke = bool(trained) and all(len(g.rows) == 1 for g in trained)
    if smoke:
        title = f"Smoke run — {title}"
        blocks += [Block("h2", "Smoke run: no method verdicts"), Block("p", SMOKE)]
    if chosen:
        seq = None
        if sequential:
            seq = P.sequential_table(groups, chosen, main, sequential, alpha=alpha, margin=margin, dropped=not_run)
            prim, said = seq["table"], seq["sentences"]
        else:
            prim, said = P.primary_table(groups, chosen, main, alpha=alpha, margin=margin, dropped=not_run)
        tables.append(prim)
        blocks += [Block("h2", f"Primary comparisons ({main})"),
                   Block("p", f"The comparisons this run was designed to answer, declared before it ran, each decided "
                              f"on {main}: one Holm family over the difference and equivalence claims of these "
                              f"{len(chosen) + len(not_run)} declared primaries only; every other comparison in this "
                              f"report is exploratory."),
                   Block("list", items=said), Block("table", table=prim)]
        if seq is not None:
            looks = P.looks_table(seq)
            tables.append(looks)
            blocks += [Block("h2", "Group-sequential looks"), Block("table", table=looks)]
    train_groups = S.group_trains(trains)
    colors = F.color_map([g.label for g in groups] + [lab for lab, _ in train_groups] + [r.label for r in rows]
                         + [t.label for t in trains])

    # findings first (Table 1, the verdicts in words, the curves), then the details, the run inventory last
    if seeded:  # several seeds per method: the method means over seeds lead, compared at the seed level
        st = S.seed_table(groups, alpha=alpha)
        sp = S.seed_paired_table(groups, alpha=alpha, main=main, primaries=prim_keys)
        t1 = T.table1(rows, mismatches, metric=metric, average_over=average_over)
        used, _ = T.average_benchmarks(rows, mismatches, average_over)
        tables += [st, sp, t1, T.long_results(rows, used)]
        blocks += [Block("h2", "Table 1: mean over seeds"), Block("table", table=st),
                   Block("h2", "Which differences are real")]
        if sp.records:
            blocks.append(Block("p", _in_words(sp.records, main, bool(chosen))))
            blocks.append(Block("list", items=[f"{r['benchmark']}: {r['sentence']}." for r in sp.records]))
        blocks += [Block("table", table=sp), Block("h2", "Every checkpoint (one row per seed)"),
                   Block("table", table=t1)]
        fig = F.table1_figure(rows, metric, colors)
        if fig is not None:
            figs["table1.png"] = F.png_bytes(fig)
            blocks.append(Block("figure", "Every checkpoint as bars, with the CIs over problems as error bars",
                                figure="table1.png"))
    elif rows:
        t1 = T.table1(rows, mismatches, metric=metric, average_over=average_over)
        used, _ = T.average_benchmarks(rows, mismatches, average_over)
        tables += [t1, T.long_results(rows, used)]
        blocks += [Block("h2", "Table 1: benchmark scores"), Block("table", table=t1)]
        fig = F.table1_figure(rows, metric, colors)
        if fig is not None:
            figs["table1.png"] = F.png_bytes(fig)
            blocks.append(Block("figure", "Table 1 as bars, with the CIs as error bars", figure="table1.png"))
        pt = T.paired_table(rows, alpha=alpha, main=main, primaries=prim_keys)
        tables.append(pt)
        blocks.append(Block("h2", "Which differences are real"))
        if pt.records:
            blocks.append(Block("p", _in_words(pt.records, main, bool(chosen))))
            blocks.append(Block("list", items=[
                f"{r['benchmark']}: {r['sentence']}." + (f" Settings differ: {r['settings_differ']}."
                                                         if r["settings_differ"] else "") for r in pt.records]))
        blocks += [Block("p", "Each pair of rows is compared on the problems both were scored on: per-problem "
                              "scores (mean correctness over that problem's samples), the mid-p McNemar test when "
                              "both have one sample per problem, else a paired bootstrap over problems."),
                   Block("table", table=pt)]

    train_blocks: list[Block] = []
    if trains:
        tt = T.training_table(trains)
        et = T.efficiency_table(trains)
        tables += [tt, et]
        blocks.append(Block("h2", "Training curves"))
        for axis, what in (("step", "step"), ("time", "training wall-clock time (sum of time/step)"),
                           ("rollouts", "rollouts consumed (compute-matched comparison)")):
            fig = F.curves_figure(trains, axis, colors,
                                  groups=train_groups if any(len(g) > 1 for _, g in train_groups) else None)
            if fig is not None:
                name = f"curves_vs_{axis}.png"
                figs[name] = F.png_bytes(fig)
                blocks.append(Block("figure", f"Training curves against {what}", figure=name))
        train_blocks += [Block("h2", "Training runs"), Block("table", table=tt)]
        train_blocks += [Block("h2", "Efficiency"), Block("table", table=et)]
        fig = F.efficiency_figure(et.records, colors)
        if fig is not None:
            figs["efficiency.png"] = F.png_bytes(fig)
            train_blocks.append(Block("figure", "Seconds per step by phase and peak memory", figure="efficiency.png"))

    blocks.append(Block("h2", "Mismatches and warnings"))
    if warnings:
        blocks.append(Block("p", "These runs differ in ways that make some numbers not comparable. They are shown, "
                                 "flagged here, and kept out of the Average column and of paired tests where the "
                                 "problems differ."))
        blocks.append(Block("warnings", items=warnings))
    else:
        blocks.append(Block("p", "None: every benchmark was scored on the same problems with the same settings."))
    blocks += train_blocks

    versions = {f"{k} {v}" for r in evals for k, v in r.versions.items()}
    if versions:
        blocks += [Block("h2", "Versions"), Block("p", "Evaluations ran with: " + ", ".join(sorted(versions)) + ".")]
    runs_t = _runs_table(evals, trains, out)
    tables.append(runs_t)
    blocks += [Block("h2", "Runs"), Block("table", table=runs_t)]

    # write: stale outputs of an earlier report in the same folder go first
    for sub, pattern in (("figures", "*.png"), ("tables", "*.csv")):
        for old in (out / sub).glob(pattern):
            old.unlink()
    for name, data in figs.items():
        F.write_bytes(out / "figures" / name, data)
    for t in tables:
        atomic_write_text(out / "tables" / f"{t.name}.csv", to_csv(t))
    atomic_write_text(out / "report.md", to_markdown(title, blocks))
    for b in blocks:
        if b.kind == "figure":
            b.png = figs[b.figure]
    atomic_write_text(out / "report.html", to_html(title, blocks))
    res.figures, res.tables, res.blocks = sorted(figs), [t.name for t in tables], blocks
    return res
