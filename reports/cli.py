"""`tbrm report` and `tbrm reproduce` (plugged into `tbrm.cli` through `add_parsers`)."""

from __future__ import annotations

import argparse


def _number_in(low: float, high: float, unit: str = ""):
    """An argparse type: a float strictly between `low` and `high`."""
    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low < x < high:
            raise argparse.ArgumentTypeError(f"must be in ({low:g}, {high:g}){unit}, got {x}")
        return x

    return parse


_alpha = _number_in(0.0, 1.0)
_margin = _number_in(0.0, 100.0, " points")


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "report", help="compare eval and train runs: Table 1, paired significance, curves, efficiency",
        description="Compare any mix of `tbrm eval` and `tbrm train` run directories. Writes DIR/report.md, a "
                    "self-contained DIR/report.html, DIR/figures/*.png and DIR/tables/*.csv. Runs scored on "
                    "different problems or with different settings are flagged, not silently averaged.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="eval run (summary.json) or train run "
                                                              "(train_config.json) directories")
    p.add_argument("--out", required=True, help="report folder (created; earlier figures/tables replaced)")
    p.add_argument("--label", action="append", metavar="RUN_DIR=NAME", default=[],
                   help="display name of a run (repeatable); default: the method (TBRM n=1, ...) or base model")
    p.add_argument("--alpha", type=_alpha, default=0.05, help="significance level of the paired tests (0.05)")
    p.add_argument("--metric", choices=("avg", "pass", "maj"), default="avg",
                   help="Table 1 metric per benchmark: avg@n (default), pass@n or maj@n, n as evaluated")
    p.add_argument("--average-over", nargs="+", metavar="BENCH",
                   help="benchmarks the Average column may use (e.g. the paper's six); default all comparable")
    p.add_argument("--title", default="TBRM benchmark report")
    p.add_argument("--primary", action="append", default=[], metavar="A:B",
                   help="a pre-declared primary comparison, method A against method B (repeatable), e.g. "
                        "--primary 'TBRM n=1:PPO n=1' --primary 'TBRM n=4:GRPO n=4'. Names are the report's method "
                        "labels (TBRM n=1, TBRM-Vref n=1, GRPO n=4, PPO n=1, '<model> (base)', or a --label), "
                        "matched case-insensitively; a name not in the runs is an error that lists the methods. "
                        "Holm runs over the primaries only, on the main benchmark; each gets the verdict "
                        "different / equivalent within ±MARGIN points / inconclusive, and its minimum detectable "
                        "difference; every other comparison is exploratory")
    p.add_argument("--margin", type=_margin, default=5.0, metavar="POINTS",
                   help="equivalence margin of the primaries in percentage points (TOST; default 5)")
    p.add_argument("--dropped-primary", action="append", default=[], metavar="A:B",
                   help="a primary declared before the run but not run (its methods were not trained): it stays in "
                        "the Holm family at p = 1 and the report lists it (repeatable)")
    p.add_argument("--sequential", type=_blocks, metavar="N1,N2,...",
                   help="planned seed blocks of a group-sequential design (seeds per method at each look, e.g. "
                        "5,10,15,20): the primaries are decided at the looks with O'Brien-Fleming-type alpha "
                        "spending, and the report states the looks, boundaries and where the design stopped")
    p.add_argument("--main-benchmark", metavar="NAME",
                   help="the benchmark the primaries (or, without them, the Holm family) use; default: the single "
                        "held-out benchmark, else the one with the most problems (a MATH500 slice only when it is "
                        "the only one)")
    p.set_defaults(func=_run_report)

    from reports.reproduce.cli import add_parser as add_reproduce

    add_reproduce(sub)


def _blocks(text: str) -> list[int]:
    """'5,10,15,20' -> [5, 10, 15, 20]: increasing seed counts from 2."""
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected increasing seed counts like 5,10,15,20, got {text!r}") from None
    if not out or out[0] < 2 or any(b <= a for a, b in zip(out, out[1:])):
        raise argparse.ArgumentTypeError(f"expected increasing seed counts from 2 like 5,10,15,20, got {text!r}")
    return out


def _run_report(a: argparse.Namespace) -> int:
    from reports.build import build_report

    res = build_report(a.runs, a.out, labels=a.label, alpha=a.alpha, metric=a.metric,
                       average_over=a.average_over, title=a.title, primaries=a.primary, margin=a.margin,
                       main_benchmark=a.main_benchmark, dropped=a.dropped_primary, sequential=a.sequential)
    print(f"report: {res.out / 'report.md'} and {res.out / 'report.html'} "
          f"({len(res.figures)} figures, {len(res.tables)} tables in {res.out})")
    if res.warnings:
        print(f"{len(res.warnings)} warning(s), also in the report:")
        for w in res.warnings:
            print(f"  ! {w}")
    return 0
