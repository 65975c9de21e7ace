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
# Primary comparisons of the CPU presets, declared before any run: the paper's two headline claims (TBRM n=1 matches
# PPO n=1; TBRM n=4 beats GRPO n=4). Holm's correction runs over these alone; every other comparison in a report is
# exploratory. A comparison whose method this run does not train is dropped.
_PRIMARIES = [["TBRM n=1", "PPO n=1"], ["TBRM n=4", "GRPO n=4"]]
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "model": "smollm2",
        # TBRM-Vref: TBRM with ReVal's fix (arXiv 2603.23355, Prop. 1), the one published critique of TBRM
        "recipes": ["cpu-tbrm-n1", "cpu-tbrm-vref-n1", "cpu-tbrm-n4", "cpu-grpo-n4", "cpu-ppo-n1"],
        "primaries": _PRIMARIES,
        "steps": 20,
        "train_overrides": _CPU_TRAIN,  # the trainer's own held-out curve: 50 problems every 10 steps
        "heldout_size": 200,
        "heldout_problems": 100,  # final held-out evaluation (tbrm eval --data-file), <= heldout_size
        "heldout_max_new_tokens": 48,  # = the recipes' max_new_tokens
        "math500_limit": 10,  # 0 skips MATH500 (a sanity check at this scale: ~2 min per model for 20)
        "math500_max_new_tokens": 256,
        "eval_batch_size": 64,
        "seeds": 1,
    },
    "cpu-full": {
        "model": "smollm2",
        "recipes": ["cpu-tbrm-n1", "cpu-tbrm-vref-n1", "cpu-tbrm-n4", "cpu-grpo-n4", "cpu-ppo-n1"],
        "primaries": _PRIMARIES,
        "steps": 40,
        "train_overrides": _CPU_TRAIN,
        "heldout_size": 200,
        "heldout_problems": 200,
        "heldout_max_new_tokens": 48,
        "math500_limit": 50,
        "math500_max_new_tokens": 256,
        "eval_batch_size": 64,
        "seeds": 3,  # one run per method is an anecdote: two runs of one command moved accuracy by 14 points
    },
    # Off-policy TBRM (the paper's Sec. 4 claim, never run there): per seed, sample the training prompts ONCE with
    # the base model at each temperature in `offpolicy_temperatures` (the recipe's own, and another policy), then
    # train TBRM purely from each fixed file (no new rollouts), beside on-policy TBRM with the same gradient steps
    # and batch size; base and every final checkpoint on the same held-out problems; curves of residual and
    # held-out accuracy over training.
    "offpolicy": {
        "model": "smollm2",
        "recipes": ["cpu-tbrm-n1"],
        "steps": 20,
        "train_overrides": _CPU_TRAIN,
        "heldout_size": 200,
        "heldout_problems": 100,
        "heldout_max_new_tokens": 48,
        "math500_limit": 0,
        "math500_max_new_tokens": 256,
        "eval_batch_size": 64,
        "seeds": 3,
        "offpolicy_temperatures": [0.7, 1.0],
    },
    # The comparison sized to decide (issue 19). Primary comparisons, declared before the run: the paper's two
    # headline claims, on the held-out benchmark. Size: the committed 3-seed run had a pooled per-seed SD of about
    # 8 points (TBRM n=1 about 13) on 100 problems, of which ~5 points were evaluation noise; on 500 problems that
    # noise falls to ~2 points. For a 10-point difference at 80% power with Welch's t at alpha 0.05/2 (Holm over 2
    # primaries) that asks for ~10-15 seeds per method; 10 is the floor, --seeds raises it. Seed k of every method
    # draws the same prompts in the same order (PromptSource is seeded by k alone), so seeds pair by index.
    # The trainer's own held-out curve is off (every seed's step-0 score is the base model's, evaluated once), and
    # each run keeps only its final weights (final_state=weights, keep_checkpoints=1): 40 runs x 1.6 GB of
    # optimizer state would fill a small disk. MATH500 is left out (a slice decides nothing at this scale).
    "powered": {
        "model": "smollm2",
        "recipes": ["cpu-tbrm-n1", "cpu-ppo-n1", "cpu-tbrm-n4", "cpu-grpo-n4"],
        "primaries": _PRIMARIES,
        "margin": 5.0,  # points: a primary is "equivalent" when TOST puts the difference inside +-margin
        "steps": 20,
        "train_overrides": ["prompts_per_step=8", "evaluate=false", "save_every=5", "keep_checkpoints=1",
                            "final_state=weights"],
        # The training task (1-2 digit additions) reserves only 401 of its 4,150 problems for evaluation
        # (tbrm/tasks.py: HELDOUT_FRACTION); 500 need 3-digit additions too. They come from the same hash-reserved pool,
        # so no training stream ever draws one, and the round-robin over digit counts makes the 500 about half
        # 2-digit (in distribution) and half 3-digit (harder, a test of generalisation).
        "heldout_digits": [1, 2, 3],
        "heldout_size": 500,
        "heldout_problems": 500,
        "heldout_max_new_tokens": 48,
        "math500_limit": 0,
        "math500_max_new_tokens": 256,
        "eval_batch_size": 128,
        "seeds": 10,
    },
}

PAPER_SIZES = ("qwen1.5b", "qwen7b")
PAPER_METHODS = ("tbrm-n1", "tbrm-n4", "grpo-n4", "ppo-n1")
PAPER_BENCHMARKS = ("math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench", "gsm8k")
# The paper's node has 4 GPUs: evaluations run one vLLM replica per GPU, in batches of 128 sequences so that even
# MATH500 greedy (500) gives every replica work. Neither changes a sample (per-sequence seeds).
PAPER_EVAL_PARALLEL = "--data-parallel-size 4 --batch-size 128"
PAPER_TABLE1 = ("aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench")  # the paper's Average


@dataclass
class Stage:
    name: str
    argv: list[str] | None = None  # a `tbrm` subcommand's arguments, run as a subprocess
    func: Callable[[], None] | None = None  # or an in-process step (cheap)
    done: Callable[[], bool] = lambda: False
    outputs: list[Path] = field(default_factory=list)
    needs: list[Path] = field(default_factory=list)  # files/folders other stages write (the order of --jobs N)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce", help="reproduce the method comparison: run it on CPU, or print the paper's commands",
        description="--preset cpu (default): train TBRM n=1/n=4, TBRM-Vref n=1 (ReVal's fix), GRPO n=4 and PPO n=1 on the bundled "
                    "SmolLM2-135M-Instruct with an equal prompt budget, evaluate base + final checkpoints on "
                    "held-out arithmetic and a MATH500 slice, and write DIR/report-cpu (30-40 min on 2 cores). "
                    "Kill it and rerun the same command: finished stages are skipped, the others resume. "
                    "--preset cpu-full: the same trained twice as long and evaluated on more problems; on a DIR "
                    "holding a finished cpu run it continues those trainings instead of starting over; 3 seeds per "
                    "method by default (--seeds). --preset offpolicy: TBRM trained purely from fixed trajectory "
                    "files sampled once by the base model at two temperatures, against on-policy TBRM at equal "
                    "gradient steps and the base model, 3 seeds. "
                    "--preset paper: print and write DIR/commands.sh with the exact commands of the paper's "
                    "Table 1 (GPUs; nothing is run).")
    p.add_argument("--preset", choices=("cpu", "cpu-full", "offpolicy", "powered", "paper"), default="cpu")
    p.add_argument("--seeds", type=int, help="training seeds per method (0..N-1; cpu presets; default: cpu 1, "
                                             "cpu-full 3, offpolicy 3). Seed 0 keeps the single-seed folders")
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
                     ("model", a.model), ("recipes", a.recipes), ("seeds", getattr(a, "seeds", None))):
        if val is not None:
            s[key] = val
    s["train_overrides"] = list(s["train_overrides"]) + list(a.train_set)
    jobs = a.jobs
    if jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {jobs!r}")
    # several stages at once share the cores: without --threads each gets its part, not all of them
    s["threads"] = a.threads or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)
    s["jobs"] = jobs
    s["engine"] = a.engine
    s["progress"] = not a.no_progress
    s["preset"] = a.preset
    s.setdefault("offpolicy_temperatures", [])
    s.setdefault("heldout_digits", None)  # None: the recipes' own digit counts
    s.setdefault("primaries", [])
    s.setdefault("margin", 5.0)
    for key in ("steps", "heldout_problems", "heldout_size", "heldout_max_new_tokens", "math500_max_new_tokens",
                "eval_batch_size", "seeds"):
        if not isinstance(s[key], int) or s[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {s[key]!r}")
    if not isinstance(s["math500_limit"], int) or s["math500_limit"] < 0:
        raise ValueError(f"math500_limit must be an integer >= 0, got {s['math500_limit']!r}")
    if s["heldout_problems"] > s["heldout_size"]:
        raise ValueError(f"heldout_problems={s['heldout_problems']} > heldout_size={s['heldout_size']}")
    return s


def train_overrides(s: dict) -> list[str]:
    # the trainer's own held-out curve uses the recipes' task; a split over other digit counts is scored by the
    # evaluation stages only
    held = [] if s["heldout_digits"] else [f"heldout_size={s['heldout_size']}"]
    out = [f"steps={s['steps']}", *held, *s["train_overrides"]]
    if s["model"] not in ("smollm2", "smollm2-135m-instruct"):  # the recipes' model
        out.append(f"model={s['model']}")
    if s["threads"]:
        out.append(f"threads={s['threads']}")
    out.append(f"engine={s['engine']}")
    return out


def _short(recipe: str) -> str:
    return recipe.removeprefix("cpu-").removeprefix("paper-")


# ---------------------------------------------------------------------------------------------------- cpu stages


def _seeded(name: str, seed: int) -> str:
    """Folder/key of a seed: seed 0 keeps the single-seed name, so a seeded run continues a single-seed one."""
    return name if seed == 0 else f"{name}-seed{seed}"


def cpu_stages(s: dict, out: Path) -> list[Stage]:
    """The plan, validated before anything runs: configs load, the prompt budget is equal, and outputs already
    on disk were made with these settings. Every stage runs with `out` as its working directory and names its
    files relative to it, so configs, summaries and the report hold no machine paths (evals.portable)."""
    from tbrm.config import ConfigError, load_config
    from tbrm.data import heldout_sets
    from tbrm.trainer import check_run_config, checkpoints

    rel = lambda p: os.path.relpath(p, out)  # noqa: E731
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
    seeds = list(range(s["seeds"]))

    stages: list[Stage] = []
    n_held = s["heldout_problems"]
    data_file = out / "data" / f"arith-heldout-{n_held}.jsonl"

    def write_heldout() -> None:
        from dataclasses import replace

        from evals.io import atomic_write_jsonl

        task = replace(first, eval_problems=n_held, heldout_size=s["heldout_size"],
                       arith_digits=s["heldout_digits"] or first.arith_digits)
        problems = heldout_sets(task)["heldout"]
        atomic_write_jsonl(data_file, ({"id": p.id, "problem": p.problem, "answer": p.answer} for p in problems))

    stages.append(Stage(f"write {n_held} held-out arithmetic problems", func=write_heldout,
                        done=data_file.is_file, outputs=[data_file]))

    thr = ["--threads", str(s["threads"])] if s["threads"] else []
    # stages show their own bars (step, reward, ETA, seq/s); side by side (--jobs) they log lines instead
    quiet = [] if s["progress"] and s["jobs"] == 1 else ["--no-progress"]
    # (recipe, run folder name, extra overrides, seed) of every training run
    # seed-major: an interrupted run has whole seeds of every method, not all seeds of the first methods
    plan: list[tuple[str, str, list[str], int]] = [(r, _seeded(_short(r), k), [f"seed={k}"], k)
                                                   for k in seeds for r in cfgs]
    if s["offpolicy_temperatures"]:
        stages += offpolicy_sampling_stages(s, out, first, seeds, quiet, thr)
        for temp in s["offpolicy_temperatures"]:
            for r in cfgs:
                for k in seeds:
                    traj = rel(_traj_file(out, k, temp))
                    plan.append((r, _seeded(f"{_short(r)}-offpolicy-t{temp:g}", k),
                                 [f"seed={k}", f"offline_trajectories={traj}"], k))
    eval_stages: dict[str, list[Stage]] = {}  # by model key, filled below
    methods: set[str] = set()  # the report's labels of the on-policy methods trained here
    trained: list[tuple[str, Path]] = []
    trains: list[Path] = []
    train_stages: list[Stage] = []
    for recipe, name, extra, k in plan:
        cfg = load_config(recipe, overrides + extra) if not any(e.startswith("offline_") for e in extra) else \
            _offline_config(recipe, overrides + extra, out)
        run = out / "train" / name
        final = run / f"checkpoint-{cfg.steps}"
        check_run_config(run, cfg, hint=f"use a new --out or delete {run}")
        later = [p.name for n, p in checkpoints(run) if n > cfg.steps]
        if later and not final.is_dir():
            raise ConfigError(f"{run} was trained further ({', '.join(later)}) and its {final.name} was rotated "
                              f"away; use --steps with one of those, or a new --out")
        method = f"{cfg.algorithm.upper()}{'-Vref' if cfg.subtract_ref_value else ''} n={cfg.rollouts_per_prompt}"
        what = f"off-policy from {Path(cfg.offline_trajectories).name}, " if cfg.offline_trajectories else ""
        if not cfg.offline_trajectories:
            methods.add(method)
        train_stages.append(Stage(
            f"train {method} ({recipe}, {what}seed {k}, {cfg.steps} steps x {cfg.prompts_per_step} prompts)",
            argv=["train", "--recipe", recipe, "--out", rel(run), *quiet, *overrides, *extra],
            done=lambda run=run, n=cfg.steps, key=f"{name}-step{cfg.steps}": (
                any(i >= n for i, _ in checkpoints(run)) or _evaluated(eval_stages.get(key, []))),
            outputs=[run],
            needs=[out / cfg.offline_trajectories] if cfg.offline_trajectories else []))
        trained.append((f"{name}-step{cfg.steps}", final))
        trains.append(run)

    evals: list[Path] = []
    models = [("base", s["model"], [])] + [(key, rel(p), [p]) for key, p in trained]
    for key, model, model_needs in models:
        jobs = [("heldout", ["--data-file", rel(data_file), "--id-field", "id"], s["heldout_max_new_tokens"],
                 {"data_file": rel(data_file), "limit": None})]
        if s["math500_limit"]:
            jobs.append(("math500", ["--benchmarks", "math500", "--limit", str(s["math500_limit"])],
                         s["math500_max_new_tokens"], {"benchmarks": ["math500"], "limit": s["math500_limit"]}))
        for bench, args, max_new, expect in jobs:
            size = n_held if bench == "heldout" else s["math500_limit"]
            run = out / "evals" / f"{key}-{bench}-{size}"  # presets sharing DIR evaluate different slices
            expect = {**expect, "model": model, "max_new_tokens": max_new}
            evals.append(run)
            eval_stages.setdefault(key, []).append(Stage(f"evaluate {key} on {bench} ({size} problems, {max_new} new tokens)",
                                argv=["eval", "--model", model, *args, "--max-new-tokens", str(max_new),
                                      "--batch-size", str(s["eval_batch_size"]), "--engine", s["engine"],
                                      "--out", rel(run),
                                      *quiet, *thr],
                                done=lambda run=run, expect=expect: _eval_done(run, expect), outputs=[run],
                                needs=model_needs + ([data_file] if bench == "heldout" else [])))
    # each training is followed by its evaluations, so the finished part of an interrupted run can be reported
    stages += eval_stages["base"]
    for train_stage, (key, _) in zip(train_stages, trained):
        stages += [train_stage, *eval_stages[key]]
    report = out / f"report-{s['preset']}"  # cpu and cpu-full may share DIR: one report each
    seeds_txt = f", {len(seeds)} seeds each" if len(seeds) > 1 else ""
    # the preset's primary comparisons, declared before the run; those of methods not trained here (--recipes)
    # are left out rather than failing the report
    primaries = [f"{x}:{y}" for x, y in s["primaries"] if {x, y} <= methods]
    declared = [x for pr in primaries for x in ("--primary", pr)] + (["--margin", f"{s['margin']:g}"] if primaries
                                                                     else [])
    stages.append(Stage("write the report", argv=["report", *map(rel, evals), *map(rel, trains), "--out",
                                                  rel(report), "--title",
                                                  f"tbrm reproduce --preset {s['preset']}: {len(plan) // len(seeds)} "
                                                  f"methods on {Path(s['model']).name}, {first.steps} steps"
                                                  f"{seeds_txt}", *declared],
                        outputs=[report / "report.md", report / "report.html"], needs=evals + trains))
    return stages


def _evaluated(evals: list[Stage]) -> bool:
    """A training whose final weights are all evaluated is finished even when the weights are gone: a comparison
    of many seeds needs only their scores, and its run folder can be kept (and committed) without the weights."""
    return bool(evals) and all(st.done() for st in evals)


def _traj_file(out: Path, seed: int, temperature: float) -> Path:
    """A fixed trajectory file: its name says which policy sampled it (the same for every seed, so the report
    groups the seeds of one off-policy method); its folder, which seed."""
    return out / "data" / f"seed{seed}" / f"traj-base-t{temperature:g}.jsonl"


def _offline_config(recipe: str, overrides: list[str], out: Path):
    """The config of an off-policy run whose trajectory file (relative to `out`, where the stage runs) may not
    exist yet: validated against the file when it is there, and recorded with the relative name either way."""
    from tbrm.config import load_config

    traj = next(o.split("=", 1)[1] for o in overrides if o.startswith("offline_trajectories="))
    rest = [o for o in overrides if not o.startswith("offline_trajectories=")]
    cfg = load_config(recipe, rest + ([f"offline_trajectories={out / traj}"] if (out / traj).is_file() else []))
    cfg.offline_trajectories = traj
    return cfg


def offpolicy_sampling_stages(s: dict, out: Path, cfg, seeds: list[int], quiet: list[str],
                              thr: list[str]) -> list[Stage]:
    """Per seed: the prompts the on-policy run of that seed trains on (steps x prompts_per_step, in its order),
    sampled ONCE by the base model at each off-policy temperature through `tbrm eval` (one sample per prompt,
    graded by the shared verifier), then written as a trajectory file (prompt, response, reward, finish_reason)
    that TBRM trains from without any new rollout."""
    from tbrm.data import PromptSource, arithmetic_task
    from evals.io import atomic_write_jsonl, read_jsonl

    stages: list[Stage] = []
    rel = lambda p: os.path.relpath(p, out)  # noqa: E731
    n_prompts = s["steps"] * cfg.prompts_per_step
    for k in seeds:
        prompts = out / "data" / f"seed{k}" / f"train-prompts-{n_prompts}.jsonl"

        def write_prompts(prompts=prompts, k=k) -> None:
            source = PromptSource(arithmetic_task(cfg), cfg.prompts_per_step, k)  # the on-policy run's stream
            problems = [p for step in range(1, s["steps"] + 1) for p in source.batch(step)]
            atomic_write_jsonl(prompts, ({"id": f"p{i:05d}", "problem": p.problem, "answer": p.answer}
                                         for i, p in enumerate(problems)))

        stages.append(Stage(f"write the {n_prompts} training prompts of seed {k}", func=write_prompts,
                            done=prompts.is_file, outputs=[prompts]))
        for temp in s["offpolicy_temperatures"]:
            sample_run = out / "evals" / f"sample-base-t{temp:g}-seed{k}"
            traj = _traj_file(out, k, temp)
            # graded as the recipe grades its own rollouts (its lenient fallback included): the file's rewards
            # are what on-policy training would have paid for the same responses
            expect = {"data_file": rel(prompts), "model": s["model"], "temperature": temp, "seed": k,
                      "max_new_tokens": cfg.max_new_tokens, "lenient": cfg.lenient}
            stages.append(Stage(f"sample trajectories: base model at T={temp:g}, seed {k} ({n_prompts} prompts)",
                                argv=["eval", "--model", s["model"], "--data-file", rel(prompts), "--id-field", "id",
                                      "--samples", "1", "--temperature", str(temp), "--seed", str(k),
                                      "--max-new-tokens", str(cfg.max_new_tokens), "--batch-size",
                                      str(s["eval_batch_size"]), *(["--lenient"] if cfg.lenient else []),
                                      "--out", rel(sample_run), *quiet, *thr],
                                done=lambda run=sample_run, expect=expect: _eval_done(run, expect),
                                outputs=[sample_run], needs=[prompts]))

            def write_traj(prompts=prompts, sample_run=sample_run, traj=traj) -> None:
                records = read_jsonl(prompts)
                text = {r["id"]: r["problem"] for r in records}
                order = {r["id"]: i for i, r in enumerate(records)}
                pid = lambda r: r["problem_id"].rsplit("/", 1)[-1]  # noqa: E731
                # in the prompts' order (the samples file is in generation-batch order): step t of off-policy
                # training reads the prompts step t of the on-policy run of this seed draws
                rows = sorted(read_jsonl(sample_run / "samples" / f"{prompts.stem}.jsonl"),
                              key=lambda r: (order[pid(r)], r["sample_index"]))
                atomic_write_jsonl(traj, ({"prompt": text[pid(r)],
                                           "response": r["response"],
                                           "reward": cfg.reward_correct if r["outcome"] == "correct"
                                           else cfg.reward_wrong,
                                           "finish_reason": r["finish_reason"]} for r in rows))

            stages.append(Stage(f"write trajectory file {rel(traj)}", func=write_traj, done=traj.is_file,
                                outputs=[traj], needs=[prompts, sample_run]))
    return stages


def _same_setting(key: str, recorded: Any, expected: Any, out: Path) -> bool:
    """Equal settings; paths (model, data_file) compare by where they point from `out`, where stages run, so
    runs made when stages were given absolute paths still count as done."""
    if recorded == expected:
        return True
    if key in ("model", "data_file") and isinstance(recorded, str) and isinstance(expected, str):
        where = lambda x: os.path.normpath(x if os.path.isabs(x) else os.path.join(out, x))  # noqa: E731
        return where(recorded) == where(expected)
    return False


def _eval_done(run: Path, expect: dict) -> bool:
    summary = run / "summary.json"
    if not summary.is_file():
        return False
    cfg = json.loads(summary.read_text()).get("config", {})
    out = run.parent.parent  # DIR/evals/<run>
    diff = {k: (cfg.get(k), v) for k, v in expect.items() if not _same_setting(k, cfg.get(k), v, out)}
    if diff:
        raise ValueError(f"{summary} was made with other settings ({diff}); use a new --out or delete {run}")
    return True


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _stage_env() -> dict[str, str]:
    # stages run inside `out` (relative paths in every file they write); keep this checkout importable there
    code = str(Path(__file__).resolve().parents[1])
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


def stage_dependencies(stages: list[Stage]) -> list[set[int]]:
    """For each stage, the earlier stages that write something it needs (a need equal to or inside an output)."""
    def inside(need: Path, output: Path) -> bool:
        return need == output or output in need.parents

    return [{j for j, other in enumerate(stages[:i]) if any(inside(nd, o) for nd in st.needs for o in other.outputs)}
            for i, st in enumerate(stages)]


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


# ---------------------------------------------------------------------------------------------------- paper


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
    return run_stages(stages, out, s["jobs"])
