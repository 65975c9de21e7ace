"""A group-sequential CPU preset (`powered`): seeds added in planned blocks (`blocks`, seeds per method at each
look), the report after each block decides the primaries at that look's O'Brien-Fleming-type boundary
(`reports.primaries.sequential_table`), and the run stops when every primary is decided or the last block is done.

Each look is the plan of `reports.reproduce.plan.cpu_stages` with that block's seed count, run by the same
executors: seeds already trained and evaluated are skipped, so rerunning the command after a crash, or after the
machine's time ran out, resumes at the block it was in, and a run that stopped stays stopped (its report decides
again from the same seeds)."""

from __future__ import annotations

import csv
from pathlib import Path

from reports.reproduce.executors import run_stages
from reports.reproduce.plan import Stage, cpu_stages


def look_stages(s: dict, out: Path) -> list[tuple[int, list[Stage]]]:
    """(seeds per method, the stages up to and including that look's report) for every planned look."""
    return [(n, cpu_stages({**s, "seeds": n}, out)) for n in s["blocks"]]


def decided(report: Path) -> bool:
    """True when the report's primaries all have a verdict (tables/primary.csv: none 'inconclusive')."""
    path = report / "tables" / "primary.csv"
    if not path.is_file():
        return False
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return bool(rows) and all(r["verdict"] != "inconclusive" for r in rows)


def run_looks(s: dict, out: Path, jobs: int) -> int:
    """Run the looks in order until every primary is decided or the last block is done; print where it stopped."""
    report = out / f"report-{s['preset']}"
    blocks = s["blocks"]
    for k, (n, stages) in enumerate(look_stages(s, out)):
        print(f"look {k + 1} of {len(blocks)}: {n} seeds per method ({len(stages)} stages)", flush=True)
        rc = run_stages(stages, out, jobs)
        if rc:
            return rc
        if decided(report):
            print(f"stopped at look {k + 1} ({n} seeds per method): every primary decided; see {report}")
            return 0
    print(f"reached the last look ({blocks[-1]} seeds per method) without deciding every primary; see {report}")
    return 0
