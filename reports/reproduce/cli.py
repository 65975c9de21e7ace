"""The `tbrm reproduce` subcommand: its arguments, and the run (plan, then execute; or write the paper's script)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from evals.runlock import run_lock
from reports.reproduce.executors import run_stages
from reports.reproduce.paper import write_paper
from reports.reproduce.plan import cpu_stages, resolve_settings
from reports.reproduce.presets import PRESETS


def add_parser(sub) -> None:
    presets = "; ".join(f"--preset {name}{' (default)' if name == 'cpu' else ''}: {s['about']}"
                        for name, s in PRESETS.items())
    p = sub.add_parser(
        "reproduce", help="reproduce the method comparison: run it on CPU, or print the paper's commands",
        description=f"{presets}. Kill it and rerun the same command: finished stages are skipped, the others "
                    "resume. --preset paper: print and write DIR/commands.sh with the exact commands of the paper's "
                    "Table 1 (GPUs; nothing is run).")
    p.add_argument("--preset", choices=(*PRESETS, "paper"), default="cpu")
    seeds = ", ".join(f"{name} {s['seeds']}" for name, s in PRESETS.items())
    p.add_argument("--seeds", type=int, help=f"training seeds per method (0..N-1; cpu presets; default: {seeds}). "
                                             "Seed 0 keeps the single-seed folders")
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
    p.add_argument("--jobs", type=int, default=1,
                   help="stages run at once, each as soon as its inputs exist (default 1). On a GPU node or a "
                        "many-core machine the trainings of all methods and seeds run side by side, then their "
                        "evaluations; each stage logs to DIR/logs/. Without --threads every stage gets "
                        "cores/jobs CPU threads. On 2 cores 1 is fastest. The checkpoints of all runs coexist "
                        "(keep_checkpoints per run, ~1.6 GB each for SmolLM2 with its optimizer state: 15 runs "
                        "of cpu-full need ~72 GB). With --engine vllm on one GPU every engine takes its share of "
                        "memory: lower engine_gpu_memory_utilization in the recipes")
    p.add_argument("--dry-run", action="store_true", help="print the stages' commands and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars inside the stages")
    # test / tuning hooks (hidden): another model, a subset of recipes, preset entries, extra train overrides
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--recipes", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS)
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS)
    p.set_defaults(func=run)



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
    if s["blocks"] and not a.dry_run:  # group-sequential: one plan per look, stopping once the primaries are decided
        from reports.reproduce.sequential import run_looks

        with run_lock(out):
            print(f"tbrm reproduce --preset {a.preset}: group-sequential, looks at {s['blocks']} seeds per method, "
                  f"into {out}; methods: {', '.join(s['recipes'])}", flush=True)
            return run_looks(s, out, s["jobs"])
    if a.dry_run:
        stages = cpu_stages(s, out)
        for i, st in enumerate(stages, start=1):
            cmd = f"tbrm {shlex.join(st.argv)}" if st.argv else "(in-process)"
            print(f"[{i}/{len(stages)}] {st.name}\n    {cmd}")
        return 0
    # one writer per folder (each stage also locks its own sub-folder); planned under the lock, so the outputs
    # on disk it validates are not another writer's half-done ones
    with run_lock(out):
        stages = cpu_stages(s, out)
        print(f"tbrm reproduce --preset {a.preset}: {len(stages)} stages into {out}; settings: "
              + json.dumps({k: v for k, v in s.items() if k != 'recipes'}) + f"; methods: {', '.join(s['recipes'])}",
              flush=True)
        return run_stages(stages, out, s["jobs"])
