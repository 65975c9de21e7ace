"""Running a plan: the stages one after another in this process's order, or side by side (`--jobs N`) as soon as
their inputs exist. Subprocess stages are `python -m tbrm.cli ...` run inside the output folder."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from reports.reproduce.plan import Stage, stage_dependencies


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _stage_env() -> dict[str, str]:
    # stages run inside `out` (relative paths in every file they write); keep this checkout importable there
    code = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(x for x in (code, os.environ.get("PYTHONPATH")) if x)}


def _tbrm(st: Stage) -> list[str]:
    """The command line of a subprocess stage: this interpreter running `tbrm` with the stage's arguments."""
    return [sys.executable, "-m", "tbrm.cli", *st.argv]


def _failed(i: int, n: int, st: Stage, rc: int) -> int:
    print(f"tbrm reproduce: stage {i}/{n} ({st.name}) failed with exit code {rc}. Rerun the same "
          f"command to resume: finished stages are skipped, training and evaluation continue where "
          f"they stopped.", file=sys.stderr, flush=True)
    return rc if rc > 0 else 1



def run_stages(stages: list[Stage], out: Path, jobs: int = 1) -> int:
    from evals.io import atomic_write_json

    t0 = time.perf_counter()
    log_path = out / "stages.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    n = len(stages)
    env = _stage_env()
    for st in stages:  # outputs on disk made with other settings fail now, not after an hour of training
        st.done()
    if jobs > 1:
        rc = _run_parallel(stages, out, jobs, env, log, t0)
        if rc:
            return rc
    for i, st in enumerate(stages, start=1):
        head = f"[{i}/{n}] {st.name}"
        if st.done():
            if jobs == 1:
                print(f"{head}: complete, skipped  (elapsed {_fmt(time.perf_counter() - t0)})", flush=True)
            continue
        print(f"{head}  (elapsed {_fmt(time.perf_counter() - t0)})", flush=True)
        if st.argv:
            print("    $ tbrm " + shlex.join(st.argv), flush=True)
        t = time.perf_counter()
        if st.func is not None:
            st.func()
        else:
            rc = subprocess.run(_tbrm(st), env=env, cwd=out).returncode
            if rc != 0:
                return _failed(i, n, st, rc)
        dt = time.perf_counter() - t
        log[st.name] = round(dt, 1)
        atomic_write_json(log_path, log)
        print(f"{head}: done in {_fmt(dt)}  (elapsed {_fmt(time.perf_counter() - t0)})", flush=True)
    print(f"reproduce: all {n} stages complete in {_fmt(time.perf_counter() - t0)}; report: "
          f"{stages[-1].outputs[0]} and report.html; stage timings: {log_path}", flush=True)
    return 0



def _run_parallel(stages: list[Stage], out: Path, jobs: int, env: dict, log: dict, t0: float) -> int:
    """Run up to `jobs` stages at once, each as soon as the stages writing its inputs are done (trainings of
    different methods and seeds side by side on a GPU node; then their evaluations). A stage's output goes to
    DIR/logs/<stage>.log; a failure stops new starts, lets the running stages finish (all resume on a rerun)
    and prints the end of the failed stage's log. Leaves nothing to do for the sequential pass but what failed."""
    import re

    from evals.io import atomic_write_json

    n, deps = len(stages), stage_dependencies(stages)
    elapsed = lambda: _fmt(time.perf_counter() - t0)  # noqa: E731
    finished = {i for i, st in enumerate(stages) if st.done()}
    pending = [i for i in range(n) if i not in finished]
    print(f"{len(finished)} of {n} stages complete; running the other {len(pending)}, up to {jobs} at once "
          f"(logs in {os.path.relpath(out / 'logs', Path.cwd())})", flush=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    running: dict[int, tuple[subprocess.Popen, float, Path]] = {}
    failure, last_beat = 0, time.perf_counter()
    while pending or running:
        for i in [i for i in pending if deps[i] <= finished and not failure]:
            st = stages[i]
            if st.func is not None:  # cheap in-process steps (files of problems, prompts, trajectories)
                pending.remove(i)
                st.func()
                finished.add(i)
                print(f"[{i + 1}/{n}] {st.name}: done  (elapsed {elapsed()})", flush=True)
            elif len(running) < jobs:
                pending.remove(i)
                slug = re.sub(r"[^A-Za-z0-9.=-]+", "-", st.name).strip("-")[:90]
                path = out / "logs" / f"{i + 1:02d}-{slug}.log"
                with open(path, "w") as fh:  # the child keeps its own descriptor
                    proc = subprocess.Popen(_tbrm(st), env=env, cwd=out, stdout=fh, stderr=subprocess.STDOUT)
                running[i] = (proc, time.perf_counter(), path)
                print(f"[{i + 1}/{n}] {st.name}: started  (elapsed {elapsed()}; log {path.relative_to(out)})",
                      flush=True)
        if not running:
            break  # nothing can start: a stage failed, or what is left waits on it
        time.sleep(0.5)
        for i, (proc, t, path) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del running[i]
            st, dt = stages[i], time.perf_counter() - t
            if rc != 0:
                tail = path.read_text(errors="replace").splitlines()[-15:]
                print("\n".join(f"    | {line}" for line in tail), file=sys.stderr, flush=True)
                failure = failure or _failed(i + 1, n, st, rc)
                continue
            finished.add(i)
            log[st.name] = round(dt, 1)
            atomic_write_json(out / "stages.json", log)
            print(f"[{i + 1}/{n}] {st.name}: done in {_fmt(dt)}  (elapsed {elapsed()})", flush=True)
        if running and time.perf_counter() - last_beat > 60:
            last_beat = time.perf_counter()
            print(f"    running ({elapsed()}): " + "; ".join(stages[i].name for i in sorted(running)), flush=True)
    return failure

