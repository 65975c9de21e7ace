"""How long `tbrm reproduce` takes on this machine, stage by stage, and what it found.

    python benchmarks/reproduce_cpu.py                       # --preset cpu into runs/reproduce (the README job)
    python benchmarks/reproduce_cpu.py --preset cpu-full     # continues that folder's trainings to 40 steps

The issue's target: `--preset cpu` finishes within 45 minutes on a 2-core machine. This runs the real command
(`python -m tbrm.cli reproduce --preset P --out OUT`) as a subprocess. Stages already complete in OUT are
skipped by `reproduce` itself; their time comes from OUT/stages.json, where every stage's duration was recorded
when it ran, so the total below is the time the preset costs from scratch (install excluded) even when the
stages ran in an earlier invocation. A stage `cpu-full` inherited from a finished `cpu` run (the first 20 training
steps) is counted in `cpu`'s total, not again in `cpu-full`'s.

Results: OUT_RESULTS/reproduce_<preset>.json and .md (default benchmarks/results): per-stage seconds, the total
and whether it meets 45 minutes (cpu), the machine and its load average, and the report's headline table.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from evals.io import atomic_write_json, atomic_write_text, read_json  # noqa: E402
from evals.portable import portable_path  # noqa: E402

TARGET_S = {"cpu": 45 * 60}
STAGE_LINE = re.compile(r"^\[(\d+)/(\d+)\] (.+)$")


def planned_stages(preset: str, out: Path) -> list[str]:
    """The preset's stage names, from `reproduce --dry-run` (the same planner the real run uses)."""
    proc = subprocess.run([sys.executable, "-m", "tbrm.cli", "reproduce", "--preset", preset, "--out", str(out),
                           "--dry-run"], capture_output=True, text=True, check=True, cwd=REPO)
    return [m.group(3) for line in proc.stdout.splitlines() if (m := STAGE_LINE.match(line))]


def headline(report: Path) -> list[dict]:
    path = report / "tables" / "table1.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def markdown(res: dict) -> str:
    lines = [f"# `tbrm reproduce --preset {res['preset']}`: time on this machine", "",
             f"Machine: {res['machine']}. Load average before the run: {res['load_before']}.", "",
             (f"**Total (all stages, from scratch, install excluded): {res['total_min']:.1f} min**"
              if res["preset"] != "cpu-full" else
              f"**Total of this preset's stages (install excluded): {res['total_min']:.1f} min**")
             + (f" (target {res['target_min']:.0f} min: {'met' if res['meets_target'] else 'NOT met'})"
                if res.get("target_min") else "") + ".", "",
             *(["Trainings continued from a finished `cpu` run in the same folder count only their added steps "
                "(the first steps are in `cpu`'s total).", ""] if res["preset"] == "cpu-full" else []),
             "| stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {sec:.0f} |" for name, sec in res["stages"].items()]
    if res["headline"]:
        cols = [c for c in res["headline"][0] if c.endswith("_value") or c == "average"]
        pct = lambda v: f"{100 * float(v):.1f}" if v not in ("", None) else "–"  # noqa: E731
        lines += ["", "Headline (the report's tables/table1.csv; accuracy in %):", "",
                  "| method | " + " | ".join(c.removesuffix("_value") for c in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        lines += [f"| {r['label']} | " + " | ".join(pct(r.get(c)) for c in cols) + " |" for r in res["headline"]]
    if res.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    lines += ["", f"Produced by `python benchmarks/reproduce_cpu.py --preset {res['preset']}` "
                  f"({res['updated']}); figures in reproduce_{res['preset']}.json."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("cpu", "cpu-full"), default="cpu")
    p.add_argument("--out", default=str(REPO / "runs" / "reproduce"), help="the reproduce folder")
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--note", action="append", default=[],
                   help="a line for the results (e.g. what else ran on the machine meanwhile); repeatable")
    a = p.parse_args()
    out = Path(a.out).resolve()
    names = planned_stages(a.preset, out)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rc = subprocess.run([sys.executable, "-m", "tbrm.cli", "reproduce", "--preset", a.preset, "--out", str(out)],
                        cwd=REPO).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        print(f"reproduce failed (exit {rc}); rerun to resume", file=sys.stderr)
        return rc
    log = read_json(out / "stages.json")
    stages = {n: float(log.get(n, 0.0)) for n in names}
    total = sum(stages.values())
    res = {"preset": a.preset, "out": portable_path(out, a.results), "stages": stages, "total_s": round(total, 1),
           "total_min": total / 60, "this_invocation_s": round(wall, 1),
           "target_min": TARGET_S[a.preset] / 60 if a.preset in TARGET_S else None,
           "meets_target": total <= TARGET_S[a.preset] if a.preset in TARGET_S else None,
           "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python "
                      f"{platform.python_version()}",
           "load_before": [round(x, 2) for x in load_before],
           "headline": headline(out / f"report-{a.preset}"), "notes": a.note,
           "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    results = Path(a.results)
    atomic_write_json(results / f"reproduce_{a.preset}.json", res)
    atomic_write_text(results / f"reproduce_{a.preset}.md", markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
