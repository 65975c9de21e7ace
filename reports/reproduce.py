"""`tbrm reproduce`: the paper's Table 1 runs as commands (`--preset paper`), or a CPU-scale version of the
comparison that actually runs (`--preset cpu`, `cpu-full`).

CPU presets: train TBRM n=1, TBRM n=4, GRPO n=4 and PPO n=1 from `tbrm/recipes/cpu-*.yaml` with an equal prompt
budget (same prompts per step and steps), evaluate the base model and every final checkpoint on the held-out
arithmetic split and a MATH500 slice, then write the report. Every stage is a subprocess
(`python -m tbrm.cli ...`); train and eval resume in place, and a stage whose outputs are complete (final
checkpoint / summary.json with the same settings) is skipped, so rerunning the same command after a crash or a
kill picks up where it stopped. Stage timings are written to DIR/stages.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# Every per-stage setting of the CPU presets, in one place. `steps` and `prompts_per_step` set the prompt budget
# (equal for every method); `train_overrides` apply to every method (key=value, as for `tbrm train`). The held-out
# problems come from the recipes' arithmetic task with `heldout_size`; the final evaluation uses the first
# `heldout_problems` of them. Sizes of `cpu` are chosen to finish within 45 minutes on 2 cores (measured in
# benchmarks/results/reproduce_cpu.json). `cpu-full` trains the same runs twice as long: every training setting
# but `steps` is shared, so `--preset cpu-full --out DIR` on a DIR that holds a finished `cpu` run continues its
# trainings from their last checkpoint (20 -> 40 steps, same data order and optimizer state) instead of starting
# over, and evaluates on more held-out problems and a larger MATH500 slice (in their own eval folders).
# keep_checkpoints=3: after cpu-full's step 40 the cpu run's checkpoint-20 (evaluated by `cpu`) is still there.
_CPU_TRAIN = ["prompts_per_step=8", "eval_problems=50", "eval_every=10", "save_every=10", "keep_checkpoints=3"]
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "model": "smollm2",
        "recipes": ["cpu-tbrm-n1", "cpu-tbrm-n4", "cpu-grpo-n4", "cpu-ppo-n1"],
        "steps": 20,
        "train_overrides": _CPU_TRAIN,  # the trainer's own held-out curve: 50 problems every 10 steps
        "heldout_size": 200,
        "heldout_problems": 100,  # final held-out evaluation (tbrm eval --data-file), <= heldout_size
        "heldout_max_new_tokens": 48,  # = the recipes' max_new_tokens
        "math500_limit": 10,  # 0 skips MATH500 (a sanity check at this scale: ~2 min per model for 20)
        "math500_max_new_tokens": 256,
        "eval_batch_size": 64,
    },
    "cpu-full": {
        "model": "smollm2",
        "recipes": ["cpu-tbrm-n1", "cpu-tbrm-n4", "cpu-grpo-n4", "cpu-ppo-n1"],
        "steps": 40,
        "train_overrides": _CPU_TRAIN,
        "heldout_size": 200,
        "heldout_problems": 200,
        "heldout_max_new_tokens": 48,
        "math500_limit": 50,
        "math500_max_new_tokens": 256,
        "eval_batch_size": 64,
    },
}

PAPER_SIZES = ("qwen1.5b", "qwen7b")
PAPER_METHODS = ("tbrm-n1", "tbrm-n4", "grpo-n4", "ppo-n1")
PAPER_BENCHMARKS = ("math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench", "gsm8k")
PAPER_TABLE1 = ("aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench")  # the paper's Average


@dataclass
class Stage:
    name: str
    argv: list[str] | None = None  # a `tbrm` subcommand's arguments, run as a subprocess
    func: Callable[[], None] | None = None  # or an in-process step (cheap)
    done: Callable[[], bool] = lambda: False
    outputs: list[Path] = field(default_factory=list)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce", help="reproduce the method comparison: run it on CPU, or print the paper's commands",
        description="--preset cpu (default): train TBRM n=1/n=4, GRPO n=4 and PPO n=1 on the bundled "
                    "SmolLM2-135M-Instruct with an equal prompt budget, evaluate base + final checkpoints on "
                    "held-out arithmetic and a MATH500 slice, and write DIR/report-cpu (~40 min on 2 cores). "
                    "Kill it and rerun the same command: finished stages are skipped, the others resume. "
                    "--preset cpu-full: the same trained twice as long and evaluated on more problems; on a DIR "
                    "holding a finished cpu run it continues those trainings instead of starting over. "
                    "--preset paper: print and write DIR/commands.sh with the exact commands of the paper's "
                    "Table 1 (GPUs; nothing is run).")
    p.add_argument("--preset", choices=("cpu", "cpu-full", "paper"), default="cpu")
    p.add_argument("--out", default="runs/reproduce",
                   help="output folder, resumed if it exists (default runs/reproduce: shared by cpu and cpu-full, "
                        "so cpu-full continues a finished cpu run)")
    p.add_argument("--steps", type=int, help="training steps of every method (cpu presets)")
    p.add_argument("--math500-limit", type=int, help="MATH500 problems evaluated, 0 = none (cpu presets)")
    p.add_argument("--heldout-problems", type=int, help="held-out arithmetic problems evaluated (cpu presets)")
    p.add_argument("--threads", type=int, help="torch CPU threads of every stage")
    p.add_argument("--engine", choices=("hf", "vllm", "auto"), default="auto",
                   help="generation engine of every training and evaluation stage (default auto: vllm when "
                        "installed and it supports the model)")
    p.add_argument("--dry-run", action="store_true", help="print the stages' commands and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars inside the stages")
    # test / tuning hooks (hidden): another model, a subset of recipes, preset entries, extra train overrides
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--recipes", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS)
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------------- settings


def resolve_settings(a: argparse.Namespace) -> dict[str, Any]:
    import yaml

    s = json.loads(json.dumps(PRESETS[a.preset]))
    for spec in a.set:
        key, sep, val = spec.partition("=")
        if not sep or key not in s:
            raise ValueError(f"--set {spec!r}: expected KEY=VALUE with KEY one of {', '.join(s)}")
        s[key] = yaml.safe_load(val)
    for key, val in (("steps", a.steps), ("math500_limit", a.math500_limit), ("heldout_problems", a.heldout_problems),
                     ("model", a.model), ("recipes", a.recipes)):
        if val is not None:
            s[key] = val
    s["train_overrides"] = list(s["train_overrides"]) + list(a.train_set)
    s["threads"] = a.threads
    s["engine"] = a.engine
    s["progress"] = not a.no_progress
    s["preset"] = a.preset
    for key in ("steps", "heldout_problems", "heldout_size", "heldout_max_new_tokens", "math500_max_new_tokens",
                "eval_batch_size"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {s[key]!r}")
    if not isinstance(s["math500_limit"], int) or s["math500_limit"] < 0:
        raise ValueError(f"math500_limit must be an integer >= 0, got {s['math500_limit']!r}")
    if s["heldout_problems"] > s["heldout_size"]:
        raise ValueError(f"heldout_problems={s['heldout_problems']} > heldout_size={s['heldout_size']}")
    return s


def train_overrides(s: dict) -> list[str]:
    out = [f"steps={s['steps']}", f"heldout_size={s['heldout_size']}", *s["train_overrides"]]
    if s["model"] not in ("smollm2", "smollm2-135m-instruct"):  # the recipes' model
        out.append(f"model={s['model']}")
    if s["threads"]:
        out.append(f"threads={s['threads']}")
    out.append(f"engine={s['engine']}")
    return out


def _short(recipe: str) -> str:
    return recipe.removeprefix("cpu-").removeprefix("paper-")


# ---------------------------------------------------------------------------------------------------- cpu stages


def cpu_stages(s: dict, out: Path) -> list[Stage]:
    """The plan, validated before anything runs: configs load, the prompt budget is equal, and outputs already
    on disk were made with these settings."""
    from tbrm.config import ConfigError, load_config
    from tbrm.data import heldout_sets
    from tbrm.trainer import check_run_config, checkpoints

    overrides = train_overrides(s)
    cfgs = {r: load_config(r, overrides) for r in s["recipes"]}
    budgets = {r: (c.prompts_per_step, c.steps) for r, c in cfgs.items()}
    if len(set(budgets.values())) > 1:
        raise ConfigError(f"unequal prompt budgets (prompts_per_step, steps): {budgets}")
    tasks = {r: (c.arith_digits, c.arith_ops, c.heldout_size, c.data) for r, c in cfgs.items()}
    if len(set(map(repr, tasks.values()))) > 1:
        raise ConfigError(f"the recipes train on different tasks, so no common held-out split: {tasks}")
    first = next(iter(cfgs.values()))
    if first.data != "arithmetic":
        raise ConfigError("the cpu presets need arithmetic recipes (data: arithmetic)")

    stages: list[Stage] = []
    n_held = s["heldout_problems"]
    data_file = out / "data" / f"arith-heldout-{n_held}.jsonl"

    def write_heldout() -> None:
        from dataclasses import replace

        from tbrm.io import atomic_write_jsonl

        problems = heldout_sets(replace(first, eval_problems=n_held))["heldout"]
        atomic_write_jsonl(data_file, ({"id": p.id, "problem": p.problem, "answer": p.answer} for p in problems))

    stages.append(Stage(f"write {n_held} held-out arithmetic problems", func=write_heldout,
                        done=data_file.is_file, outputs=[data_file]))

    thr = ["--threads", str(s["threads"])] if s["threads"] else []
    quiet = [] if s["progress"] else ["--no-progress"]  # stages show their own bars: step, reward, ETA, seq/s
    trained: list[tuple[str, Path]] = []
    for recipe, cfg in cfgs.items():
        run = out / "train" / _short(recipe)
        final = run / f"checkpoint-{cfg.steps}"
        check_run_config(run, cfg, hint=f"use a new --out or delete {run}")
        later = [p.name for k, p in checkpoints(run) if k > cfg.steps]
        if later and not final.is_dir():
            raise ConfigError(f"{run} was trained further ({', '.join(later)}) and its {final.name} was rotated "
                              f"away; use --steps with one of those, or a new --out")
        method = f"{cfg.algorithm.upper()} n={cfg.rollouts_per_prompt}"
        stages.append(Stage(f"train {method} ({recipe}, {cfg.steps} steps x {cfg.prompts_per_step} prompts)",
                            argv=["train", "--recipe", recipe, "--out", str(run), *quiet, *overrides],
                            done=lambda run=run, n=cfg.steps: any(k >= n for k, _ in checkpoints(run)),
                            outputs=[run]))
        trained.append((f"{_short(recipe)}-step{cfg.steps}", final))

    evals: list[Path] = []
    models = [("base", s["model"])] + [(k, str(p)) for k, p in trained]
    for key, model in models:
        jobs = [("heldout", ["--data-file", str(data_file), "--id-field", "id"], s["heldout_max_new_tokens"],
                 {"data_file": str(data_file), "limit": None})]
        if s["math500_limit"]:
            jobs.append(("math500", ["--benchmarks", "math500", "--limit", str(s["math500_limit"])],
                         s["math500_max_new_tokens"], {"benchmarks": ["math500"], "limit": s["math500_limit"]}))
        for bench, args, max_new, expect in jobs:
            size = n_held if bench == "heldout" else s["math500_limit"]
            run = out / "evals" / f"{key}-{bench}-{size}"  # presets sharing DIR evaluate different slices
            expect = {**expect, "model": model, "max_new_tokens": max_new}
            evals.append(run)
            stages.append(Stage(f"evaluate {key} on {bench} ({size} problems, {max_new} new tokens)",
                                argv=["eval", "--model", model, *args, "--max-new-tokens", str(max_new),
                                      "--batch-size", str(s["eval_batch_size"]), "--engine", s["engine"],
                                      "--out", str(run),
                                      *quiet, *thr],
                                done=lambda run=run, expect=expect: _eval_done(run, expect), outputs=[run]))
    trains = [out / "train" / _short(r) for r in cfgs]
    report = out / f"report-{s['preset']}"  # cpu and cpu-full may share DIR: one report each
    stages.append(Stage("write the report", argv=["report", *map(str, evals), *map(str, trains), "--out",
                                                  str(report), "--title",
                                                  f"tbrm reproduce --preset {s['preset']}: {len(cfgs)} methods on "
                                                  f"{Path(s['model']).name}, {first.steps} steps"],
                        outputs=[report / "report.md", report / "report.html"]))
    return stages


def _eval_done(run: Path, expect: dict) -> bool:
    summary = run / "summary.json"
    if not summary.is_file():
        return False
    cfg = json.loads(summary.read_text()).get("config", {})
    diff = {k: (cfg.get(k), v) for k, v in expect.items() if cfg.get(k) != v}
    if diff:
        raise ValueError(f"{summary} was made with other settings ({diff}); use a new --out or delete {run}")
    return True


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def run_stages(stages: list[Stage], out: Path) -> int:
    from tbrm.io import atomic_write_json

    t0 = time.perf_counter()
    log_path = out / "stages.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    n = len(stages)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for st in stages:  # outputs on disk made with other settings fail now, not after an hour of training
        st.done()
    for i, st in enumerate(stages, start=1):
        head = f"[{i}/{n}] {st.name}"
        if st.done():
            print(f"{head}: complete, skipped  (elapsed {_fmt(time.perf_counter() - t0)})", flush=True)
            continue
        print(f"{head}  (elapsed {_fmt(time.perf_counter() - t0)})", flush=True)
        if st.argv:
            print("    $ tbrm " + shlex.join(st.argv), flush=True)
        t = time.perf_counter()
        if st.func is not None:
            st.func()
        else:
            rc = subprocess.run([sys.executable, "-m", "tbrm.cli", *st.argv], env=env).returncode
            if rc != 0:
                print(f"tbrm reproduce: stage {i}/{n} ({st.name}) failed with exit code {rc}. Rerun the same "
                      f"command to resume: finished stages are skipped, training and evaluation continue where "
                      f"they stopped.", file=sys.stderr, flush=True)
                return rc if rc > 0 else 1
        dt = time.perf_counter() - t
        log[st.name] = round(dt, 1)
        atomic_write_json(log_path, log)
        print(f"{head}: done in {_fmt(dt)}  (elapsed {_fmt(time.perf_counter() - t0)})", flush=True)
    print(f"reproduce: all {n} stages complete in {_fmt(time.perf_counter() - t0)}; report: "
          f"{stages[-1].outputs[0]} and report.html; stage timings: {log_path}", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------- paper


def paper_commands(out: Path) -> list[str]:
    """The paper's Table 1 runs (both model sizes): 8 trainings, their final checkpoints' and the base models'
    evaluations on the 7 benchmarks with the paper defaults (AIME/AMC avg@32 at T=1.0, others greedy, 2048 new
    tokens: the registry defaults), and the report."""
    from tbrm.config import load_config

    q = lambda p: shlex.quote(str(p))  # noqa: E731
    cmds, evals, trains = [], [], []
    bench = " ".join(PAPER_BENCHMARKS)
    for size in PAPER_SIZES:
        base = load_config(f"paper-tbrm-n1-{size}").model
        ev = out / "evals" / f"{size}-base"
        evals.append(ev)
        cmds.append(f"tbrm eval --model {q(base)} --benchmarks {bench} --dtype bfloat16 --out {q(ev)}")
        for m in PAPER_METHODS:
            recipe = f"paper-{m}-{size}"
            cfg = load_config(recipe)
            run = out / "train" / recipe
            trains.append(run)
            cmds.append(f"tbrm train --recipe {recipe} --out {q(run)}")
            ev = out / "evals" / f"{size}-{m}-step{cfg.steps}"
            evals.append(ev)
            cmds.append(f"tbrm eval --model {q(run / f'checkpoint-{cfg.steps}')} --benchmarks {bench} "
                        f"--dtype bfloat16 --out {q(ev)}")
    runs = " ".join(q(p) for p in [*evals, *trains])
    cmds.append(f"tbrm report {runs} --out {q(out / 'report')} --average-over {' '.join(PAPER_TABLE1)} "
                f"--title {q('TBRM paper Table 1 reproduction')}")
    return cmds


def write_paper(out: Path) -> int:
    from tbrm.io import atomic_write_text

    cmds = paper_commands(out.resolve())
    header = ["#!/usr/bin/env bash",
              "# TBRM (arXiv 2505.15311) Table 1: Qwen2.5-Math-1.5B and -7B trained with TBRM n=1, TBRM n=4, GRPO n=4",
              "# and PPO n=1 (recipes tbrm/recipes/paper-*.yaml: DAPO-Math-17k, 128 prompts/step, 760 steps), then",
              "# scored with the paper's evaluation defaults: AIME24/25 and AMC23 avg@32 at temperature 1.0, MATH500,",
              "# Minerva, OlympiadBench (and GSM8K, not in the paper's Table 1) greedy; 2048 new tokens; qwen-math",
              "# template; Math-Verify; bfloat16 inference. Needs CUDA GPUs (hours per training run). Every command",
              "# resumes in place when rerun. Generated by `tbrm reproduce --preset paper`; nothing was run.",
              "set -euo pipefail", ""]
    text = "\n".join(header + cmds) + "\n"
    path = out / "commands.sh"
    atomic_write_text(path, text)
    path.chmod(0o755)
    print("\n".join(cmds))
    print(f"\nwritten to {path} (nothing was run)")
    return 0


def run(a: argparse.Namespace) -> int:
    out = Path(a.out).resolve()
    if a.preset == "paper":
        extra = [n for n in ("steps", "math500_limit", "heldout_problems", "model", "recipes")
                 if getattr(a, n) is not None] + (["set"] if a.set else []) + (["train_set"] if a.train_set else [])
        if extra:
            raise ValueError(f"--preset paper takes no {', '.join('--' + e.replace('_', '-') for e in extra)}: "
                             f"it writes the paper's exact commands (edit the recipes to change them)")
        return write_paper(out)
    s = resolve_settings(a)
    stages = cpu_stages(s, out)
    if a.dry_run:
        for i, st in enumerate(stages, start=1):
            cmd = f"tbrm {shlex.join(st.argv)}" if st.argv else "(in-process)"
            print(f"[{i}/{len(stages)}] {st.name}\n    {cmd}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    print(f"tbrm reproduce --preset {a.preset}: {len(stages)} stages into {out}; settings: "
          + json.dumps({k: v for k, v in s.items() if k != 'recipes'}) + f"; methods: {', '.join(s['recipes'])}",
          flush=True)
    return run_stages(stages, out)
