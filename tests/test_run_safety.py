"""Run folders survive a killed parent: one writer per run folder (`tbrm eval`, `tbrm train`, `tbrm reproduce` each
hold the folder's lock; a second gets one error naming the holder's PID; a dead holder's lock is taken over), and
the stages of a `tbrm reproduce` killed by SIGKILL die with it, so a rerun finishes the run cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evals.runlock import LOCK_NAME, RunLockedError, run_lock
from tests.conftest import REPO, run_cli, run_cli_here


def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another real process holding the writer's lock of `folder` until it is killed."""
    code = ("import sys, time\nfrom evals.runlock import run_lock\nwith run_lock(sys.argv[1], 'holder'):\n"
            "    print('held', flush=True)\n    time.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_pid_and_a_dead_writers_lock_is_taken_over(tmp_path, tiny_model_path):
    run = tmp_path / "run"
    holder = _hold_lock(run)
    try:
        assert (run / LOCK_NAME).read_text().split()[0] == str(holder.pid)
        msg = f"{run} is being written by process {holder.pid} (holder)"
        # every writer of a run folder, as a user runs it (one real process, the others through the CLI's main)
        proc = run_cli("train", "--recipe", "cpu-tbrm-n1", "--out", str(run), f"model={tiny_model_path}",
                       check=False)
        assert proc.returncode == 2 and msg in proc.stderr, proc.stderr
        assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
        proc = run_cli_here("eval", "--model", tiny_model_path, "--benchmarks", "math500", "--limit", "1",
                            "--out", str(run), check=False)
        assert proc.returncode == 2 and msg in proc.stderr, proc.stderr
        proc = run_cli_here("reproduce", "--out", str(run), "--model", tiny_model_path, "--recipes", "cpu-tbrm-n1",
                            check=False)
        assert proc.returncode == 2 and msg in proc.stderr, proc.stderr
        # the Python API's writers hold the same lock as the commands they back
        from tbrm import api

        with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
            api.train("cpu-tbrm-n1", out=run, model=tiny_model_path)
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # none of them wrote anything
        with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
            with run_lock(run):
                pass
    finally:
        holder.kill()
        holder.wait()
    # the killed holder's lock file is still there, naming it; the next writer takes it over
    assert (run / LOCK_NAME).read_text().split()[0] == str(holder.pid)
    with run_lock(run, "next"):
        assert (run / LOCK_NAME).read_text() == f"{os.getpid()} next\n"
    assert not (run / LOCK_NAME).exists()  # a writer that ends normally leaves no lock file


def test_a_writer_that_fails_before_writing_leaves_no_folder(tmp_path):
    """A writer that fails inside the lock before writing anything (bad input) leaves no empty run folder behind."""
    with pytest.raises(ZeroDivisionError):
        with run_lock(tmp_path / "a" / "b"):
            1 / 0
    assert list(tmp_path.iterdir()) == []


def _children() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            out[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _descendants(pid: int) -> set[int]:
    parents = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# Fewer steps and problems than test_reproduce's TINY (no MATH500 slice): this test is about the kill, not the
# comparison. Six steps leave time to kill reproduce while its training stage runs.
KILL = ["--recipes", "cpu-tbrm-n1", "--steps", "6", "--math500-limit", "0", "--heldout-problems", "4",
        "--set", "heldout_size=20", "--set", "heldout_max_new_tokens=4", "--set", "eval_batch_size=8",
        "--train-set", "prompts_per_step=2", "--train-set", "max_new_tokens=4", "--train-set", "eval_problems=4",
        "--train-set", "micro_batch_size=4", "--train-set", "generation_batch_size=8", "--train-set", "save_every=1",
        "--train-set", "keep_checkpoints=2", "--train-set", "tensorboard=false", "--no-progress"]


def test_sigkill_of_reproduce_alone_takes_its_stages_with_it_and_a_rerun_finishes(tiny_model_path, tmp_path):
    """SIGKILL of the `tbrm reproduce` process alone (not its process group), while its training stage runs: within
    a few seconds no process it started is left, and the same command rerun takes over both locks the killed
    processes left (reproduce's, and the training's on its own sub-folder) and finishes: steps strictly increasing
    in metrics.jsonl, the report written. Runs on the tiny model (seconds per stage, not minutes)."""
    out = tmp_path / "repro"
    args = ["reproduce", "--out", str(out), "--model", tiny_model_path, *KILL]
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    log = open(tmp_path / "reproduce.log", "w")
    parent = subprocess.Popen([sys.executable, "-m", "tbrm.cli", *args], cwd=REPO, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    metrics = out / "train" / "tbrm-n1" / "metrics.jsonl"
    kids: set[int] = set()
    try:
        deadline = time.monotonic() + 600
        while True:  # until the training stage has logged a step and is still running
            assert parent.poll() is None, (tmp_path / "reproduce.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the training stage never started"
            kids = _descendants(parent.pid)
            training = [p for p in kids if " train --recipe" in _cmdline(p)]
            rows = metrics.read_text().splitlines() if metrics.is_file() else []
            if training and any(json.loads(r)["step"] >= 1 for r in rows if r.strip()):
                break
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        left: set[int] = set()
        for _ in range(100):  # 5 s
            left = {p for p in kids if _alive(p)}
            if not left:
                break
            time.sleep(0.05)
        assert not left, {p: _cmdline(p) for p in left}
    finally:
        log.close()
        for p in [parent.pid, *kids]:  # whatever is left of a failed check is not left running
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        parent.wait()
    steps = [json.loads(r)["step"] for r in metrics.read_text().splitlines() if r.strip()]
    assert 1 <= max(steps) < 6  # killed mid-training
    assert (out / LOCK_NAME).is_file() and (out / "train" / "tbrm-n1" / LOCK_NAME).is_file()  # left by the dead

    rerun = run_cli_here(*args)
    assert "all 5 stages complete" in rerun.stdout
    steps = [json.loads(r)["step"] for r in metrics.read_text().splitlines()]
    assert steps == list(range(7))  # strictly increasing: resumed from its checkpoint, no step twice
    assert (out / "report-cpu" / "report.html").is_file()
    assert not list(out.rglob(LOCK_NAME))  # every writer of the rerun ended and let its folder go
