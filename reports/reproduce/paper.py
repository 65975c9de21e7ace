"""`tbrm reproduce --preset paper`: the paper's Table 1 runs as a shell script of `tbrm` commands (GPUs; nothing is
run here)."""

from __future__ import annotations

import shlex
from pathlib import Path

PAPER_SIZES = ("qwen1.5b", "qwen7b")
PAPER_METHODS = ("tbrm-n1", "tbrm-n4", "grpo-n4", "ppo-n1")
PAPER_BENCHMARKS = ("math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench", "gsm8k")
# The paper's node has 4 GPUs: evaluations run one vLLM replica per GPU, in batches of 128 sequences so that even
# MATH500 greedy (500) gives every replica work. Neither changes a sample (per-sequence seeds).
PAPER_EVAL_PARALLEL = "--data-parallel-size 4 --batch-size 128"
PAPER_TABLE1 = ("aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench")  # the paper's Average


def paper_commands(out: Path) -> list[str]:
    """The paper's Table 1 runs (both model sizes): 8 trainings, their final checkpoints' and the base models'
    evaluations on the 7 benchmarks with the paper defaults (AIME/AMC avg@32 at T=1.0, others greedy, 2048 new
    tokens: the registry defaults), and the report."""
    from tbrm.config import load_config

    q = lambda p: shlex.quote(str(p))  # noqa: E731
    cmds, evals, trains = [], [], []
    bench = f"{' '.join(PAPER_BENCHMARKS)} --dtype bfloat16 {PAPER_EVAL_PARALLEL}"
    for size in PAPER_SIZES:
        base = load_config(f"paper-tbrm-n1-{size}").model
        ev = out / "evals" / f"{size}-base"
        evals.append(ev)
        cmds.append(f"tbrm eval --model {q(base)} --benchmarks {bench} --out {q(ev)}")
        for m in PAPER_METHODS:
            recipe = f"paper-{m}-{size}"
            cfg = load_config(recipe)
            run = out / "train" / recipe
            trains.append(run)
            cmds.append(f"tbrm train --recipe {recipe} --out {q(run)}")
            ev = out / "evals" / f"{size}-{m}-step{cfg.steps}"
            evals.append(ev)
            cmds.append(f"tbrm eval --model {q(run / f'checkpoint-{cfg.steps}')} --benchmarks {bench} --out {q(ev)}")
    runs = " ".join(q(p) for p in [*evals, *trains])
    cmds.append(f"tbrm report {runs} --out {q(out / 'report')} --average-over {' '.join(PAPER_TABLE1)} "
                f"--title {q('TBRM paper Table 1 reproduction')}")
    return cmds


def paper_verl_commands() -> list[str]:
    """The same eight trainings at the paper's scale on verl (`tbrm verl`: 4 GPUs per run, exact TBRM plugin,
    verl's own PPO/GRPO), each exported to HF and scored like the single-process runs; then a report next to the
    base models. Paths are relative to the folder of the script (it starts with `cd` there)."""
    from tbrm.config import load_config

    bench = f"{' '.join(PAPER_BENCHMARKS)} --dtype bfloat16 {PAPER_EVAL_PARALLEL}"
    cmds, evals = [], [f"evals/{size}-base" for size in PAPER_SIZES]
    for size in PAPER_SIZES:
        for m in PAPER_METHODS:
            recipe = f"paper-{m}-{size}"
            steps = load_config(recipe).steps
            run, ev = f"verl/{recipe}", f"evals/{size}-{m}-verl-step{steps}"
            evals.append(ev)
            cmds += [f"tbrm verl {recipe} --out {run} --gpus 4 --launch",
                     f"tbrm verl export {run} --step {steps}",
                     f"tbrm eval --model {run}/checkpoint-{steps} --benchmarks {bench} --out {ev}"]
    cmds.append(f"tbrm report {' '.join(evals)} --out report-verl --average-over {' '.join(PAPER_TABLE1)} "
                f"--title {shlex.quote('TBRM paper Table 1 reproduction on verl')}")
    return cmds


def write_paper(out: Path) -> int:
    from evals.io import atomic_write_text

    verl_header = ["#!/usr/bin/env bash",
                   "# The paper's Table 1 trainings at full scale on verl 0.9.1 (Ray + FSDP + vLLM, 4 GPUs per run), as",
                   "# the paper ran them: `tbrm verl` turns each recipe into a verl launch (TBRM through the exact plugin,",
                   "# verl's own GRPO/PPO, this suite's verifier as reward), exports checkpoint-760 to HF and scores it",
                   "# like commands.sh does. Run in the environment with tbrm-bench[verl] and verl's GPU stack; the base",
                   "# model evaluations (evals/*-base) come from commands.sh. Nothing was run.",
                   "set -euo pipefail", 'cd "$(dirname "$0")"', ""]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "commands_verl.sh", "\n".join(verl_header + paper_verl_commands()) + "\n")
    (out / "commands_verl.sh").chmod(0o755)

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
    print(f"\nwritten to {path} and, for the same runs on verl, {out / 'commands_verl.sh'} (nothing was run)")
    return 0
