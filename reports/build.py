"""`tbrm report`: run directories in, report.md + report.html + figures/*.png + tables/*.csv out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reports import figures as F
from reports import tables as T
from reports.render import Block, to_csv, to_html, to_markdown
from reports.runs import EvalRun, TrainRun, load_runs
from tbrm.io import atomic_write_text


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


def _runs_table(evals: list[EvalRun], trains: list[TrainRun]) -> T.Table:
    rows, recs = [], []
    for r in evals:
        what = ", ".join(f"{b} ({x.n_problems}×{x.n_samples})" for b, x in r.benchmarks.items())
        model = r.model_path + (f" [{r.method}]" if r.method else "")
        rows.append([r.label, "eval", str(r.path), model, what])
        recs.append({"label": r.label, "kind": "eval", "path": str(r.path), "model": r.model_path,
                     "method": r.method or "base", "contents": what})
    for t in trains:
        what = f"{t.steps_done}/{t.config.get('steps')} steps, {t.config.get('prompts_per_step')} prompts/step"
        rows.append([t.label, "train", str(t.path), f"{t.config.get('model')} [{t.method}]", what])
        recs.append({"label": t.label, "kind": "train", "path": str(t.path), "model": t.config.get("model"),
                     "method": t.method, "contents": what})
    return T.Table("runs", ["Label", "Kind", "Run directory", "Model", "Contents"], rows, recs)


def build_report(run_dirs: list[str], out: str | Path, *, labels: list[str] | None = None, alpha: float = 0.05,
                 metric: str = "avg", average_over: list[str] | None = None,
                 title: str = "TBRM benchmark report") -> ReportResult:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"--alpha must be in (0, 1), got {alpha}")
    out = Path(out)
    _check_out(out, run_dirs)
    evals, trains = load_runs(run_dirs, labels)  # everything validated before anything is written
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
    res.warnings = warnings
    colors = F.color_map([r.label for r in rows] + [t.label for t in trains])

    runs_t = _runs_table(evals, trains)
    tables.append(runs_t)
    blocks += [Block("h2", "Runs"), Block("table", table=runs_t)]
    blocks.append(Block("h2", "Mismatches and warnings"))
    if warnings:
        blocks.append(Block("p", "These runs differ in ways that make some numbers not comparable. They are shown, "
                                 "flagged here, and kept out of the Average column and of paired tests where the "
                                 "problems differ."))
        blocks.append(Block("warnings", items=warnings))
    else:
        blocks.append(Block("p", "None: every benchmark was scored on the same problems with the same settings."))

    if rows:
        t1 = T.table1(rows, mismatches, metric=metric, average_over=average_over)
        used, _ = T.average_benchmarks(rows, mismatches, average_over)
        tables += [t1, T.long_results(rows, used)]
        blocks += [Block("h2", "Table 1: benchmark scores"), Block("table", table=t1)]
        fig = F.table1_figure(rows, metric, colors)
        if fig is not None:
            figs["table1.png"] = F.png_bytes(fig)
            blocks.append(Block("figure", "Table 1 as bars, with the CIs as error bars", figure="table1.png"))
        pt = T.paired_table(rows, alpha=alpha)
        tables.append(pt)
        blocks += [Block("h2", "Paired significance"),
                   Block("p", "Each pair of rows is compared on the problems both were scored on: per-problem "
                              "scores (mean correctness over that problem's samples), McNemar's exact/chi-square "
                              "test when both have one sample per problem, else a paired bootstrap over problems."),
                   Block("table", table=pt)]
        if pt.records:
            blocks.append(Block("p", "In words:"))
            blocks.append(Block("list", items=[
                f"{r['benchmark']}: {r['sentence']}." + (f" Settings differ: {r['settings_differ']}."
                                                         if r["settings_differ"] else "") for r in pt.records]))

    if trains:
        tt = T.training_table(trains)
        et = T.efficiency_table(trains)
        tables += [tt, et]
        blocks += [Block("h2", "Training runs"), Block("table", table=tt)]
        for axis, what in (("step", "step"), ("time", "training wall-clock time (sum of time/step)"),
                           ("rollouts", "rollouts consumed (compute-matched comparison)")):
            fig = F.curves_figure(trains, axis, colors)
            if fig is not None:
                name = f"curves_vs_{axis}.png"
                figs[name] = F.png_bytes(fig)
                blocks.append(Block("figure", f"Training curves against {what}", figure=name))
        blocks += [Block("h2", "Efficiency"), Block("table", table=et)]
        fig = F.efficiency_figure(et.records, colors)
        if fig is not None:
            figs["efficiency.png"] = F.png_bytes(fig)
            blocks.append(Block("figure", "Seconds per step by phase and peak memory", figure="efficiency.png"))

    versions = {f"{k} {v}" for r in evals for k, v in r.versions.items()}
    if versions:
        blocks += [Block("h2", "Versions"), Block("p", "Evaluations ran with: " + ", ".join(sorted(versions)) + ".")]

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
