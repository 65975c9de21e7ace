"""Training speed and memory of TBRM n=1, TBRM n=4, GRPO n=4 and PPO n=1 on our shared loop, and of TRL's
GRPOTrainer (n=4) beside our GRPO, all for the same number of prompts per step.

    python benchmarks/train_speed.py                      # defaults: 8 prompts/step, 64 new tokens, 4 steps
    python benchmarks/train_speed.py --steps 1 --prompts 2 --max-new-tokens 8   # a quick check
    python benchmarks/train_speed.py --algorithms tbrm-n1 ppo-n1 --skip-trl --force

The paper (arXiv 2505.15311) reports TBRM n=1 at 1.3x the speed of PPO with 33% less memory, and at 3.1x the
speed of GRPO n=4 (GPUs, 2048-token responses). Each algorithm runs as its own process
(`python -m tbrm.cli train ...`, or `benchmarks/trl_grpo_peer.py` for TRL), so its peak memory (peak RSS of
the process on CPU) is its own. Every run gets the same model, prompts (built-in arithmetic, the same problems
at the same step), prompts per step, response length, temperature, autocast, micro-batch size and seed; held-out
evaluation is off and only the final checkpoint is written (deleted afterwards unless --keep-checkpoints).

From each run's per-step metrics: seconds per step, split into generation (sampling + verifier rewards),
reference (frozen reference log-probs) and training (algorithm preparation, forward/backward, optimizer),
as the mean over the steps after the first (the first one includes warm-up) and over all steps; peak memory;
rollout tokens/s; rollouts per step; and the ratios to TBRM n=1 (speed ratio = TBRM n=1 s/step / the
algorithm's s/step, so < 1 means slower than TBRM n=1; memory ratio = the algorithm's peak / TBRM n=1's peak).
The whole process's wall time (imports and model loading included) is reported separately.

Results: OUT/train_speed.json and OUT/train_speed.md (default OUT = benchmarks/results), rewritten atomically
after every algorithm. A rerun with the same settings skips algorithms already measured (--force redoes them).
Run directories (metrics.jsonl, the process log) are under --runs-dir (default benchmarks/runs/train_speed,
git-ignored); each is emptied before its algorithm starts.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere: `tbrm`, `evals` import from the checkout

from tbrm.config import ConfigError, TrainConfig, load_config  # noqa: E402  (light: dataclass + OmegaConf)
from evals.io import atomic_write_json, atomic_write_text, read_json, read_jsonl  # noqa: E402
from evals.portable import portable_path  # noqa: E402

# name -> what runs. "ours" = `tbrm train` on the shared loop; "trl" = TRL's GRPOTrainer (benchmarks/trl_grpo_peer.py).
ALGORITHMS = {
    "tbrm-n1": {"label": "TBRM n=1", "runner": "ours", "overrides": ["algorithm=tbrm", "rollouts_per_prompt=1"]},
    "tbrm-n4": {"label": "TBRM n=4", "runner": "ours", "overrides": ["algorithm=tbrm", "rollouts_per_prompt=4"]},
    "grpo-n4": {"label": "GRPO n=4", "runner": "ours", "overrides": ["algorithm=grpo", "rollouts_per_prompt=4"]},
    "trl-grpo-n4": {"label": "TRL GRPOTrainer n=4", "runner": "trl",
                    "overrides": ["algorithm=grpo", "rollouts_per_prompt=4"]},
    "ppo-n1": {"label": "PPO n=1", "runner": "ours", "overrides": ["algorithm=ppo", "rollouts_per_prompt=1"]},
}
BASELINE = "tbrm-n1"
PHASES = {"step": "time/step", "generation": "time/generation", "reference": "time/reference",
          "training": "time/training"}
# The paper's claims in this benchmark's ratio convention (relative to TBRM n=1).
PAPER = {"ppo-n1": {"speed_ratio": round(1 / 1.3, 2), "memory_ratio": round(1 / (1 - 0.33), 2)},
         "grpo-n4": {"speed_ratio": round(1 / 3.1, 2)}}


# ----------------------------------------------------------------------------------------------- settings
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Training speed and memory of TBRM n=1/n=4, GRPO n=4, PPO n=1 and "
                                            "TRL's GRPOTrainer n=4 for the same prompts per step "
                                            "(see benchmarks/README.md).")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per algorithm (default 4)")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step, the same for all (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="response length limit (default 64)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--autocast", default="bf16", choices=["bf16", "none", "auto"],
                   help="forward autocast (default bf16; auto = bf16 only where it is native)")
    p.add_argument("--micro-batch-size", type=int, default=None,
                   help="sequences per forward/backward (default: TrainConfig's, 4); TRL's per-device batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="smollm2-135m-instruct", help="model for every run (default SmolLM2-135M-Instruct)")
    p.add_argument("--threads", type=int, help="torch CPU threads for every run (default: torch's choice)")
    p.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                   help="one more TrainConfig override for every run (repeatable), e.g. --set lr=1e-5")
    p.add_argument("--algorithms", nargs="+", choices=list(ALGORITHMS), default=list(ALGORITHMS),
                   help=f"which to run, in this order (default: all: {' '.join(ALGORITHMS)})")
    p.add_argument("--skip-trl", action="store_true", help="leave out TRL's GRPOTrainer")
    p.add_argument("--force", action="store_true", help="rerun algorithms already in the results")
    p.add_argument("--out", default=str(HERE / "results"), help="results folder (default benchmarks/results)")
    p.add_argument("--runs-dir", default=str(REPO / "benchmarks" / "runs" / "train_speed"),
                   help="where the run directories go (default benchmarks/runs/train_speed)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's final checkpoint")
    a = p.parse_args(argv)
    for name in ("steps", "prompts", "max_new_tokens"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.skip_trl:
        a.algorithms = [x for x in a.algorithms if ALGORITHMS[x]["runner"] != "trl"]
    if not a.algorithms:
        p.error("nothing to run")
    return a


def common_overrides(a: argparse.Namespace) -> list[str]:
    """The TrainConfig overrides every run gets (before its algorithm's own)."""
    out = [f"model={a.model}", "data=arithmetic", "arith_digits=[1,2]", f"prompts_per_step={a.prompts}",
           f"max_new_tokens={a.max_new_tokens}", f"temperature={a.temperature}", f"autocast={a.autocast}",
           f"seed={a.seed}", f"steps={a.steps}", "evaluate=false", "save_every=0", "tensorboard=false"]
    if a.micro_batch_size:
        out.append(f"micro_batch_size={a.micro_batch_size}")
    if a.threads:
        out.append(f"threads={a.threads}")
    return out + list(a.extra)


def settings_of(a: argparse.Namespace) -> dict:
    """What makes two measurements comparable; results measured with other settings are never mixed."""
    return {"steps": a.steps, "prompts_per_step": a.prompts, "max_new_tokens": a.max_new_tokens,
            "temperature": a.temperature, "autocast": a.autocast, "seed": a.seed, "model": a.model,
            "micro_batch_size": a.micro_batch_size, "threads": a.threads, "extra_overrides": list(a.extra),
            "common_overrides": common_overrides(a)}


def machine_info() -> dict:
    def version(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        kib = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem_gb = round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu_model": cpu_model,
            "memory_gb": mem_gb, "platform": platform.platform(), "python": platform.python_version(),
            "torch": version("torch"), "transformers": version("transformers"), "trl": version("trl")}


# ----------------------------------------------------------------------------------------------- one run
def read_rows(run_dir: Path, runner: str) -> list[dict]:
    """Per-step rows of a run, read without modifying anything (the run may still be writing)."""
    if runner == "trl":
        path = run_dir / "trl_grpo_peer.json"
        try:
            return json.loads(path.read_text())["steps"]
        except (OSError, ValueError, KeyError):
            return []
    # the run is live: a last line being written right now is skipped, and the file left alone
    rows = read_jsonl(run_dir / "metrics.jsonl", torn_tail="skip")
    return [r for r in rows if r.get("step", 0) >= 1 and "time/step" in r]


def _mean(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def summarize(rows: list[dict]) -> dict:
    """Figures of one run from its per-step rows (our metrics.jsonl keys; the TRL peer writes the same keys)."""
    rows = sorted(rows, key=lambda r: r["step"])
    later = rows[1:]
    seconds = {phase: {"after_first": _mean(later, key) if later else None, "all": _mean(rows, key)}
               for phase, key in PHASES.items()}
    basis = "after_first" if later else "all"
    last = rows[-1]
    return {
        "steps_measured": len(rows),
        "s_per_step": seconds,
        "basis": basis,  # which mean the headline s/step and the ratios use (one step: "all")
        "headline_s_per_step": seconds["step"][basis],
        "peak_memory_gb": max(r["memory/peak_gb"] for r in rows),
        "tokens_per_second": {"after_first": _mean(later, "rollout/tokens_per_second") if later else None,
                              "all": _mean(rows, "rollout/tokens_per_second")},
        "rollouts_per_step": last["rollouts"] / last["step"] if last.get("rollouts") else None,
        "response_length_mean": _mean(rows, "response/length_mean"),
        "reward_mean": _mean(rows, "reward/mean"),
    }


def run_algorithm(name: str, overrides: list[str], run_dir: Path, steps: int) -> dict:
    """Run one algorithm in its own process, show its progress, and return its results entry."""
    spec = ALGORITHMS[name]
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    if spec["runner"] == "trl":
        cmd = [sys.executable, str(HERE / "trl_grpo_peer.py"), "--out", str(run_dir), "--no-progress", *overrides]
    else:
        cmd = [sys.executable, "-m", "tbrm.cli", "train", "--out", str(run_dir), "--no-progress", *overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    log_path = run_dir / "process.log"
    load_before = os.getloadavg()
    print(f"[{name}] starting {spec['label']} ({' '.join(cmd[1:3])} ...); log: {log_path}", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        # A session of its own, so an interrupt can stop it and the verifier workers it started, and only those.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)
        seen = 0
        try:
            while proc.poll() is None:
                time.sleep(2.0)
                rows = read_rows(run_dir, spec["runner"])
                if len(rows) > seen:
                    seen = len(rows)
                    r = rows[-1]
                    print(f"[{name}] step {r['step']}/{steps}: {r['time/step']:.2f} s "
                          f"(generation {r['time/generation']:.2f}, reference {r['time/reference']:.2f}, "
                          f"training {r['time/training']:.2f}), peak {r['memory/peak_gb']:.2f} GB, "
                          f"elapsed {time.perf_counter() - t0:.0f} s", flush=True)
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
    wall = time.perf_counter() - t0
    # no machine paths in a results file: the interpreter as "python", paths relative to the repository
    shown = ["python" if c == sys.executable else portable_path(c, REPO) if os.path.isabs(c) else c for c in cmd]
    entry = {"label": spec["label"], "runner": spec["runner"], "command": shown,
             "run_dir": portable_path(run_dir, REPO),
             "returncode": proc.returncode, "wall_seconds": wall, "load_avg_before": list(load_before),
             "load_avg_after": list(os.getloadavg()),
             "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    rows = read_rows(run_dir, spec["runner"])
    if proc.returncode != 0 or len(rows) < steps:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        entry.update(status="failed", steps_logged=len(rows), log_tail=tail)
        print(f"[{name}] FAILED (exit {proc.returncode}, {len(rows)}/{steps} steps); last lines of {log_path}:\n  "
              + "\n  ".join(tail), flush=True)
        return entry
    entry.update(status="ok", **summarize(rows))
    if spec["runner"] == "trl":
        peer = read_json(run_dir / "trl_grpo_peer.json")
        entry["trl"] = {k: peer.get(k) for k in ("versions", "grpo_config", "checks", "not_matched", "load_seconds",
                                                   "train_seconds")}
    else:
        entry["train_config"] = read_json(run_dir / "train_config.json")
    print(f"[{name}] done: {entry['headline_s_per_step']:.2f} s/step ({entry['basis'].replace('_', ' ')}), "
          f"peak {entry['peak_memory_gb']:.2f} GB, wall {wall:.0f} s", flush=True)
    return entry


# ----------------------------------------------------------------------------------------------- results
def comparison(results: dict) -> dict:
    base = results.get(BASELINE)
    base_ok = base is not None and base.get("status") == "ok"
    out = {}
    for name, e in results.items():
        if e.get("status") != "ok":
            continue
        speed = memory = None
        if base_ok and e["headline_s_per_step"]:
            speed = base["headline_s_per_step"] / e["headline_s_per_step"]
            memory = e["peak_memory_gb"] / base["peak_memory_gb"]
        out[name] = {"speed_ratio_vs_tbrm_n1": speed, "memory_ratio_vs_tbrm_n1": memory}
    return out


def _f(x, fmt=".2f") -> str:
    return "–" if x is None else format(x, fmt)


def markdown(doc: dict) -> str:
    s, m, results, cmp_ = doc["settings"], doc["machine"], doc["results"], doc["comparison"]
    lines = [
        "# Training speed: TBRM vs GRPO vs PPO (and TRL's GRPOTrainer)", "",
        f"{s['model']}, {s['prompts_per_step']} prompts/step, max {s['max_new_tokens']} new tokens, temperature "
        f"{s['temperature']}, autocast {s['autocast']}, micro-batch {s['micro_batch_size'] or TrainConfig().micro_batch_size}, "
        f"{s['steps']} steps, seed {s['seed']}; built-in arithmetic (1-2 digit addition), no held-out evaluation.",
        f"Machine: {m['cpus_usable']} usable CPUs ({m['cpu_model']}), {m['memory_gb']} GB RAM; torch {m['torch']}, "
        f"transformers {m['transformers']}, trl {m['trl']}.", "",
        "s/step is the mean over the steps after the first (the first includes warm-up); with one step, the only "
        "step. Phases: generation = sampling + verifier rewards, reference = frozen reference log-probs, training "
        "= algorithm preparation + forward/backward + optimizer. Peak memory = the process's peak RSS. "
        "Speed ratio = TBRM n=1 s/step ÷ the algorithm's (below 1 = slower than TBRM n=1); memory ratio = the "
        "algorithm's peak ÷ TBRM n=1's. Wall = the whole process, imports and model loading included.", "",
        "| algorithm | rollouts/step | s/step | s/step (all steps) | generation s | reference s | training s "
        "| tokens/s | mean response tokens | peak memory GB | speed vs TBRM n=1 | memory vs TBRM n=1 | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    failed = []
    for name in ALGORITHMS:
        e = results.get(name)
        if e is None:
            continue
        if e.get("status") != "ok":
            failed.append(f"- {e['label']}: failed (exit {e.get('returncode')}), see {e.get('run_dir')}/process.log")
            continue
        b, sec, c = e["basis"], e["s_per_step"], cmp_.get(name, {})
        lines.append(
            f"| {e['label']} | {_f(e['rollouts_per_step'], '.0f')} | {_f(sec['step'][b])} | {_f(sec['step']['all'])} "
            f"| {_f(sec['generation'][b])} | {_f(sec['reference'][b])} | {_f(sec['training'][b])} "
            f"| {_f(e['tokens_per_second'][b], '.1f')} | {_f(e['response_length_mean'], '.1f')} "
            f"| {_f(e['peak_memory_gb'])} | {_f(c.get('speed_ratio_vs_tbrm_n1'))} "
            f"| {_f(c.get('memory_ratio_vs_tbrm_n1'))} | {_f(e['wall_seconds'], '.0f')} |")
    if failed:
        lines += ["", "Not measured:", *failed]
    busy = [f"{results[n]['label']} ({results[n]['load_avg_before'][0]:.1f})" for n in results
            if results[n].get("load_avg_before") and results[n]["load_avg_before"][0] > 0.5 * (m["cpus_usable"] or 1)]
    if busy:
        lines += ["", f"Caution: the 1-minute load average was already high when these started (other processes "
                      f"on the CPUs inflate their timings): {', '.join(busy)}."]
    lines += ["", "Paper (arXiv 2505.15311, GPUs, 2048-token responses), in these ratios: PPO n=1 speed "
                  f"{PAPER['ppo-n1']['speed_ratio']}, memory {PAPER['ppo-n1']['memory_ratio']} (TBRM n=1 is 1.3x "
                  f"faster with 33% less memory); GRPO n=4 speed {PAPER['grpo-n4']['speed_ratio']} (TBRM n=1 is "
                  "3.1x faster).", "",
              f"Produced by `python benchmarks/train_speed.py`; figures in train_speed.json (updated {doc['updated']}).",
              ""]
    return "\n".join(lines)


def write_results(out_dir: Path, doc: dict) -> None:
    doc["comparison"] = comparison(doc["results"])
    doc["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(out_dir / "train_speed.json", doc)
    atomic_write_text(out_dir / "train_speed.md", markdown(doc))


def load_results(path: Path, settings: dict, force: bool) -> dict:
    """Earlier results with the same settings (kept), or a fresh document."""
    if path.exists():
        doc = read_json(path)
        if doc.get("settings") == settings:
            return doc
        if not force:
            old = doc.get("settings", {})
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v and k != "common_overrides"}
            raise SystemExit(f"{path} holds results measured with other settings "
                             f"({'; '.join(f'{k}: {a!r} there, {b!r} now' for k, (a, b) in diff.items())}); "
                             f"rerun with --force to replace them all, or use another --out")
        print(f"--force: discarding {path}'s results, measured with other settings", flush=True)
    return {"benchmark": "train_speed", "settings": settings, "machine": machine_info(), "baseline": BASELINE,
            "paper": PAPER, "results": {}}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if any(ALGORITHMS[x]["runner"] == "trl" for x in a.algorithms) and importlib.util.find_spec("trl") is None:
        raise SystemExit("TRL is not installed: pip install -c constraints.txt -e '.[peer]', or pass --skip-trl")
    if any(ALGORITHMS[x]["runner"] == "trl" for x in a.algorithms):
        micro = a.micro_batch_size or TrainConfig().micro_batch_size
        if (a.prompts * 4) % micro:
            raise SystemExit(f"TRL accumulates micro-batches of {micro} to exactly one step's {a.prompts} x 4 "
                             f"rollouts: choose --prompts / --micro-batch-size so that {micro} divides them")
    out_dir, runs_dir = Path(a.out), Path(a.runs_dir)
    settings = settings_of(a)
    # Every configuration is validated up front: a typo fails now, not after an hour of other algorithms.
    plans = {}
    for name in a.algorithms:
        overrides = common_overrides(a) + ALGORITHMS[name]["overrides"]
        try:
            load_config(None, overrides)
        except ConfigError as e:
            raise SystemExit(f"{name}: {e}") from None
        plans[name] = overrides
    doc = load_results(out_dir / "train_speed.json", settings, a.force)
    doc["machine"] = machine_info()
    todo = [n for n in a.algorithms if a.force or doc["results"].get(n, {}).get("status") != "ok"]
    skipped = [n for n in a.algorithms if n not in todo]
    if skipped:
        print(f"already measured with these settings (use --force to redo): {', '.join(skipped)}", flush=True)
    load1 = os.getloadavg()[0]
    if todo and load1 > 0.5 * len(os.sched_getaffinity(0)):
        print(f"note: the 1-minute load average is {load1:.1f} on {len(os.sched_getaffinity(0))} CPUs; other "
              f"processes will slow these runs down (recorded with each result)", flush=True)
    for i, name in enumerate(todo, start=1):
        print(f"=== {i}/{len(todo)}: {ALGORITHMS[name]['label']} ===", flush=True)
        run_dir = runs_dir / name
        entry = run_algorithm(name, plans[name], run_dir, a.steps)
        if not a.keep_checkpoints:
            for ckpt in run_dir.glob("checkpoint-*"):
                shutil.rmtree(ckpt, ignore_errors=True)
        doc["results"][name] = entry
        write_results(out_dir, doc)
    if not todo:
        write_results(out_dir, doc)
    print()
    print(markdown(doc))
    print(f"results: {out_dir / 'train_speed.json'}, {out_dir / 'train_speed.md'}")
    failed = [n for n in a.algorithms if doc["results"].get(n, {}).get("status") != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
