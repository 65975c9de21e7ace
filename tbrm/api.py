"""The suite from Python: `evaluate`, `grade`, `train` and `report`, each what the `tbrm` subcommand of the same
job does, taking its settings as keyword arguments and returning what it writes. The command line
(`tbrm.cli`, `tbrm.train_cli`) parses flags and calls these functions; `import tbrm` exposes them lazily.

Bad input raises the error the command line turns into its one-line message (`evals.benchmarks.DataError`,
`tbrm.config.ConfigError`, `evals.runner.RunMismatchError`, `ValueError`, ...); an unknown keyword argument is a
`TypeError` naming it and the valid ones, and so is a value of the wrong type (``temperature="0.6"``, ``samples=2.5``),
named with the type its setting takes (`evals.dataclass_args.check_setting_types`; for `train`, a `ConfigError` as
for any bad training setting). Heavy libraries (torch, transformers, vLLM) are imported inside the
functions, so importing this module is cheap.

Also here, in the entry layer above `baselines/`: the registry of algorithms the shared training loop trains.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from tbrm.algorithm import Algorithm

__all__ = ["evaluate", "grade", "train", "report", "TrainResult", "ReportPaths", "algorithms", "make_algorithm"]

PathLike = typing.Union[str, "os.PathLike[str]"]


def algorithms() -> dict[str, type[Algorithm]]:
    """Every algorithm the shared loop trains, by the name `TrainConfig.algorithm` gives it: the one registry,
    `baselines.registry` (imported on use: `tbrm --help` loads no torch). The training core sits below
    `baselines/`, so the loop receives the class of the algorithm to train instead of looking it up."""
    from baselines.registry import algorithms as registered

    return registered()


def make_algorithm(cfg, policy, device) -> Algorithm:
    """The algorithm `cfg.algorithm` names, built for `policy` on `device`."""
    return algorithms()[cfg.algorithm](cfg, policy, device)


def _refuse_unknown(func: str, given: Iterable[str], valid: Iterable[str]) -> None:
    """TypeError naming every keyword of `given` not in `valid` (with the closest valid name) and the valid ones."""
    valid = sorted(valid)
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    parts = []
    for k in unknown:
        close = difflib.get_close_matches(k, valid, n=1)
        parts.append(repr(k) + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(f"{func}() got unknown keyword argument{'s' if len(unknown) > 1 else ''} {', '.join(parts)}; "
                    f"valid: {', '.join(valid)}")


def _named_keywords(func: Callable) -> Callable:
    """Refuse an unknown keyword argument of `func` with the valid names listed (Python's own TypeError names only
    the bad one), and an argument whose value does not fit its annotation, naming the type it takes."""
    signature = inspect.signature(func)
    names = [p.name for p in signature.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from evals.dataclass_args import check_setting_types

        _refuse_unknown(func.__name__, kwargs, names)
        check_setting_types(func.__name__, signature.bind(*args, **kwargs).arguments, typing.get_type_hints(func))
        return func(*args, **kwargs)

    return wrapper


def _plain(value: Any) -> Any:
    """Paths as strings, tuples as lists: the types the configs and their JSON records hold."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _takes_list(annotation: Any) -> bool:
    """Whether a field annotated `annotation` holds a list (`list[str]`, `list[str] | None`)."""
    return any(typing.get_origin(a) is list for a in (annotation, *typing.get_args(annotation)))


def evaluate(*, out: PathLike, progress: bool = True, print_table: bool = True, **settings: Any) -> dict:
    """Score a model on math benchmarks, as `tbrm eval` does; resumes whatever `out` already holds.

    Args:
        out: the run folder (created, or resumed if it exists; a resumed run must match on the settings that
            change what is generated or graded, else `evals.runner.RunMismatchError`).
        progress: show progress bars.
        print_table: print the summary table (and the audit table with ``audit=True``) when done.
        **settings: the fields of `evals.runner.EvalConfig`, one per `tbrm eval` flag (`tbrm eval --help`), e.g.
            ``model="smollm2", benchmarks=["math500"], limit=50, max_new_tokens=512, engine="vllm"``. A field left
            out takes its default (None: the benchmark's paper default). A single string for a list field
            (``benchmarks="math500"``) is a list of one.

    Writes, in `out`: config.json (what was asked and resolved), samples/<benchmark>.jsonl (one row per sample:
    response, extracted answer, outcome, rules), summary.json; with ``audit=True`` also audit.json and
    audit_disagreements.jsonl.

    Returns:
        The summary dict, equal to summary.json: ``summary["benchmarks"][name]`` holds ``avg@n``, ``pass@k``
        and ``maj@n`` with 95% intervals, ``outcomes`` (the verdict counts), ``lengths`` and ``throughput``.
    """
    from evals.dataclass_args import check_setting_types
    from evals.runner import EvalConfig, run_eval

    fields = {f.name: f for f in dataclasses.fields(EvalConfig)}
    _refuse_unknown("evaluate", settings, [*fields, "out", "progress", "print_table"])
    hints = typing.get_type_hints(EvalConfig)
    values = {k: _plain(v) for k, v in settings.items()}
    for name, value in values.items():
        if isinstance(value, str) and _takes_list(hints[name]):
            values[name] = [value]
    # None for a repeatable flag is "not given" (the command line's convention, `evals.dataclass_args`)
    check_setting_types("evaluate", {k: v for k, v in values.items()
                                     if not (v is None and fields[k].metadata.get("repeatable"))}, hints)
    return run_eval(EvalConfig(**values), os.fspath(out), progress=progress,
                    console=None if print_table else False)


@_named_keywords
def grade(file: PathLike, *, out: PathLike | None = None, response_field: str = "response",
          answer_field: str = "answer", id_field: str | None = None, lenient: bool = False, audit: bool = False,
          verifier_timeout: float = 5.0, verifier_workers: int | None = None, progress: bool = True,
          print_table: bool = True) -> list[dict]:
    """Grade responses generated elsewhere against gold answers with the shared verifier, as `tbrm grade` does.

    Args:
        file: a JSONL or Parquet file, one response per row.
        out: the output folder (default: FILE's folder / FILE-stem.graded).
        response_field, answer_field, id_field: field paths of the response, the gold answer (e.g.
            ``final_answer[0]``) and the problem id; rows sharing an id are samples of one problem (default:
            each row is its own problem).
        lenient: where Math-Verify finds no answer, take the last "answer is X" phrase or the last number
            (such verdicts are flagged and counted).
        audit: also grade with plain Math-Verify and report where the two disagree.
        verifier_timeout: seconds per answer before the verdict is "timeout".
        verifier_workers: grader processes (default: min(2, CPU cores)).
        progress: show a progress bar; print_table: print the one-line result (and the audit table).

    Writes, in `out`: graded.jsonl (one row per input row) and summary.json (metrics: avg@k, pass@k, maj@k over
    the samples of each problem, and the outcome counts); with ``audit=True`` also audit.json and
    audit_disagreements.jsonl.

    Returns:
        The graded rows, equal to graded.jsonl: for each input row its ``line``, ``problem_id``,
        ``sample_index``, ``gold``, ``extracted`` answer, ``extraction``, ``outcome`` (correct, wrong, unparsed,
        timeout), ``answer_key`` and the ``rules`` that decided it, in the file's order.
    """
    from evals.grading.grade import grade_file
    from evals.io import read_jsonl

    file = Path(file)
    out_dir = Path(out) if out is not None else file.with_name(file.stem + ".graded")
    grade_file(file, response_field=response_field, answer_field=answer_field, id_field=id_field,
               out_dir=out_dir, lenient=lenient, audit=audit, timeout_s=verifier_timeout, workers=verifier_workers,
               progress=progress, print_table=print_table)
    return read_jsonl(out_dir / "graded.jsonl")


@dataclass
class TrainResult:
    """A training run folder and what it holds. Usable as a path (`os.fspath(result)`, `Path(result)`)."""

    path: Path  # the run folder
    config: dict  # train_config.json: the resolved TrainConfig (and the rollout engine used)
    metrics: list[dict] = field(repr=False)  # metrics.jsonl: one row per step (loss, reward, held-out accuracy)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    @property
    def checkpoints(self) -> list[Path]:
        """The checkpoint-N folders the run kept, by step (the last one holds the final weights)."""
        from tbrm.trainer import checkpoints

        return [folder for _, folder in checkpoints(self.path)]


def train_config(recipe: str | None = None, overrides: Sequence[str] | Mapping[str, Any] | None = None,
                 **settings: Any):
    """The validated `tbrm.config.TrainConfig` that `train` with these arguments trains (nothing is loaded or
    written): the recipe, then `overrides`, then `settings`. Raises `tbrm.config.ConfigError` for a bad value."""
    from evals.dataclass_args import check_setting_types
    from tbrm.config import ConfigError, TrainConfig, load_config

    names = [f.name for f in dataclasses.fields(TrainConfig)]
    _refuse_unknown("train", settings, [*names, "recipe", "out", "overrides", "progress"])
    lines: list[str] = []
    if isinstance(overrides, Mapping):
        _refuse_unknown("train", overrides, names)
        settings = {**overrides, **settings}
    elif isinstance(overrides, str):
        raise TypeError("train(overrides=...) takes a list of 'key=value' strings or a dict, not one string")
    elif overrides is not None:
        lines = list(overrides)  # "key=value" strings, read as the command line reads them
    from baselines.registry import validate

    settings = {k: _plain(v) for k, v in settings.items()}
    check_setting_types("train", settings, typing.get_type_hints(TrainConfig), error=ConfigError)
    # the algorithm's own checks (its class declares them), then the shared ones
    return load_config(recipe, lines, settings, check_algorithm=validate)


def train(recipe: str | None = None, *, out: PathLike, overrides: Sequence[str] | Mapping[str, Any] | None = None,
          progress: bool = True, **settings: Any) -> TrainResult:
    """Train with TBRM, GRPO or PPO on the shared RL loop, as `tbrm train --recipe RECIPE key=value ...` does;
    resumes from the last checkpoint `out` holds.

    Args:
        recipe: a bundled recipe name (`tbrm recipes` lists them) or a YAML path; None: the TrainConfig defaults.
        out: the run folder (created, or resumed if it holds checkpoints; a resumed run may change only the
            settings that do not change what a step computes).
        overrides: config overrides as ``["steps=40", "lr=1e-6"]`` (as on the command line) or a dict.
        progress: show progress bars.
        **settings: config overrides as keyword arguments, the fields of `tbrm.config.TrainConfig`, e.g.
            ``algorithm="grpo", rollouts_per_prompt=4, steps=40``; applied after the recipe and `overrides`.

    Writes, in `out`: train_config.json, metrics.jsonl (one row per step), checkpoint-N/ folders (HF format,
    resumable), curves.png and, unless ``tensorboard=False``, TensorBoard logs.

    Returns:
        A `TrainResult`: ``.path`` (the run folder; the result is also usable as a path), ``.config`` (equal to
        train_config.json), ``.metrics`` (equal to metrics.jsonl's rows) and ``.checkpoints``.
    """
    from evals.io import read_json
    from evals.runlock import run_lock
    from tbrm.trainer import train as run_training

    cfg = train_config(recipe, overrides, **settings)  # validated before any model is loaded
    run_dir = Path(out)
    with run_lock(run_dir):  # one writer per run folder: another gets RunLockedError naming this process
        rows = run_training(cfg, run_dir, progress=progress, algorithm=algorithms()[cfg.algorithm])  # metrics.jsonl
    return TrainResult(path=run_dir, config=read_json(run_dir / "train_config.json"), metrics=rows)


@dataclass
class ReportPaths:
    """The files `report` wrote, and the warnings it raised (also in the report)."""

    out: Path  # the report folder
    markdown: Path  # report.md
    html: Path  # report.html, self-contained (figures inlined)
    figures: list[Path]  # figures/*.png
    tables: list[Path]  # tables/*.csv, one per table of the report (table1, paired tests, runs, ...)
    warnings: list[str]


@_named_keywords
def report(runs: PathLike | Sequence[PathLike], *, out: PathLike,
           labels: Mapping[PathLike, str] | Sequence[str] | None = None, alpha: float = 0.05, metric: str = "avg",
           average_over: Sequence[str] | None = None, title: str = "TBRM benchmark report",
           primaries: Sequence[str | tuple[str, str]] | None = None, margin: float = 5.0,
           main_benchmark: str | None = None) -> ReportPaths:
    """Compare eval and train runs, as `tbrm report` does: Table 1, paired significance, curves, efficiency.

    Args:
        runs: run folders of `evaluate` (summary.json) and `train` (train_config.json), or one folder.
        out: the report folder (created; figures and tables of an earlier report there are replaced).
        labels: display names, ``{run_folder: name}`` or ``["RUN_DIR=NAME", ...]``; default the method
            (TBRM n=1, ...) or the base model.
        alpha: significance level of the paired tests.
        metric: Table 1's metric per benchmark: "avg", "pass" or "maj" (@n, n as evaluated).
        average_over: the benchmarks the Average column may use (default: every comparable one).
        title: the report's title.
        primaries: pre-declared primary comparisons, "A:B" strings or (A, B) pairs of method labels, e.g.
            ``["TBRM n=1:PPO n=1"]``; Holm runs over them only, each gets a verdict (different / equivalent
            within ±margin / inconclusive). Without them every comparison on the main benchmark is in the family.
        margin: the primaries' equivalence margin in percentage points (TOST).
        main_benchmark: the benchmark the primaries use (default: the single held-out benchmark, else the one
            with the most problems).

    Writes, in `out`: report.md, a self-contained report.html, figures/*.png and tables/*.csv.

    Returns:
        A `ReportPaths` with the paths of everything written and the warnings (runs that are not comparable).
    """
    from reports.build import build_report

    run_dirs = [os.fspath(runs)] if isinstance(runs, (str, os.PathLike)) else [os.fspath(r) for r in runs]
    if isinstance(labels, Mapping):
        labels = [f"{os.fspath(k)}={v}" for k, v in labels.items()]
    res = build_report(run_dirs, os.fspath(out), labels=list(labels or []), alpha=alpha, metric=metric,
                       average_over=list(average_over) if average_over else None, title=title,
                       primaries=list(primaries or []), margin=margin, main_benchmark=main_benchmark)
    return ReportPaths(out=res.out, markdown=res.out / "report.md", html=res.out / "report.html",
                       figures=[res.out / "figures" / f for f in res.figures],
                       tables=[res.out / "tables" / f"{t}.csv" for t in res.tables], warnings=list(res.warnings))
