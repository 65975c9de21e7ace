"""The plan of a CPU preset: its settings (the preset, then the command line), and the stages that train, evaluate
and report, each with the outputs it writes, the inputs it needs and a check of whether it is already done. Nothing
here runs a stage (reports.reproduce.executors does)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from reports.reproduce.presets import PRESETS


@dataclass
class Stage:
    name: str
    argv: list[str] | None = None  # a `tbrm` subcommand's arguments, run as a subprocess
    func: Callable[[], None] | None = None  # or an in-process step (cheap)
    done: Callable[[], bool] = lambda: False
    outputs: list[Path] = field(default_factory=list)
    needs: list[Path] = field(default_factory=list)  # files/folders other stages write (the order of --jobs N)


# ---------------------------------------------------------------------------------------------------- settings


def resolve_settings(a: argparse.Namespace) -> dict[str, Any]:
    import yaml

    s = json.loads(json.dumps(PRESETS[a.preset]))
    s.pop("about", None)
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
    s.setdefault("blocks", None)
    if s["blocks"] is not None and getattr(a, "seeds", None) is not None and a.seeds != s["blocks"][-1]:
        s["blocks"] = None  # --seeds N other than the last planned block: a fixed N-seed design, no looks
    if s["blocks"] is not None:
        check_blocks(s)
    if s["heldout_problems"] > s["heldout_size"]:
        raise ValueError(f"heldout_problems={s['heldout_problems']} > heldout_size={s['heldout_size']}")
    return s


def check_blocks(s: dict) -> None:
    """Blocks increase from 2 seeds per method, and the last is the preset's seed count. (`--seeds N` other than the
    last block runs a fixed N-seed design instead: `resolve_settings`.)"""
    blocks = s["blocks"]
    if (not isinstance(blocks, list) or not blocks or not all(isinstance(b, int) for b in blocks)
            or blocks[0] < 2 or any(b <= a for a, b in zip(blocks, blocks[1:]))):
        raise ValueError(f"blocks must be increasing seed counts from 2, e.g. [5, 10, 15, 20]; got {blocks!r}")
    if s["seeds"] != blocks[-1]:
        raise ValueError(f"seeds={s['seeds']} is not the last planned block {blocks[-1]} of this group-sequential "
                         f"preset (blocks {blocks}); set both (--set blocks=[...] --set seeds=N) before the run, "
                         f"never after a look")


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
    from baselines.registry import method_label as registry_label
    from baselines.registry import validate as validate_algorithm
    from tbrm.config import ConfigError, load_config, to_dict
    from tbrm.trainer import check_run_config, checkpoints

    rel = lambda p: os.path.relpath(p, out)  # noqa: E731
    overrides = train_overrides(s)
    cfgs = {r: load_config(r, overrides, check_algorithm=validate_algorithm) for r in s["recipes"]}
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
    held, data_file = _heldout_file(s, first, out)
    rows = [{"id": p.id, "problem": p.problem, "answer": p.answer} for p in held]

    def write_heldout() -> None:
        from evals.io import atomic_write_jsonl

        atomic_write_jsonl(data_file, rows)

    def heldout_done() -> bool:
        from evals.io import read_jsonl

        if not data_file.is_file():
            return False
        if read_jsonl(data_file, torn_tail="skip") != rows:
            raise ValueError(f"{data_file} holds other held-out problems than this preset draws (heldout_size="
                             f"{s['heldout_size']}, digits {held_digits(s, first)}); use a new --out")
        return True

    stages.append(Stage(f"write {n_held} held-out arithmetic problems", func=write_heldout,
                        done=heldout_done, outputs=[data_file]))

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
        # the run's evaluations go with it: kept, they would count its training as done (see _trained)
        check_run_config(run, cfg, hint=f"use a new --out, or delete {run} and its evaluations "
                                        f"{out / 'evals' / name}-step*")
        later = [p.name for n, p in checkpoints(run) if n > cfg.steps]
        if later and not final.is_dir():
            raise ConfigError(f"{run} was trained further ({', '.join(later)}) and its {final.name} was rotated "
                              f"away; use --steps with one of those, or a new --out")
        method = registry_label(to_dict(cfg))  # as the report will name the run
        what = f"off-policy from {Path(cfg.offline_trajectories).name}, " if cfg.offline_trajectories else ""
        if not cfg.offline_trajectories:
            methods.add(method)
        train_stages.append(Stage(
            f"train {method} ({recipe}, {what}seed {k}, {cfg.steps} steps x {cfg.prompts_per_step} prompts)",
            argv=["train", "--recipe", recipe, "--out", rel(run), *quiet, *overrides, *extra],
            done=lambda run=run, n=cfg.steps, key=f"{name}-step{cfg.steps}": (
                any(i >= n for i, _ in checkpoints(run)) or (_trained(run, n) and _evaluated(eval_stages.get(key, [])))),
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
            # presets sharing DIR evaluate different slices: named by the problems they score
            tag = data_file.stem.removeprefix("arith-") if bench == "heldout" else f"{bench}-{size}"
            run = out / "evals" / f"{key}-{tag}"
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
    # declared primaries not run stay in the Holm family (at p = 1) and the report lists them
    not_run = [f"{x}:{y}" for x, y in s["primaries"] if not {x, y} <= methods] if primaries else []
    declared += [arg for pr in not_run for arg in ("--dropped-primary", pr)]
    if s.get("blocks") and primaries:  # group-sequential: the report decides at the planned looks
        declared += ["--sequential", ",".join(map(str, s["blocks"]))]
    stages.append(Stage("write the report", argv=["report", *map(rel, evals), *map(rel, trains), "--out",
                                                  rel(report), "--title",
                                                  f"tbrm reproduce --preset {s['preset']}: {len(plan) // len(seeds)} "
                                                  f"methods on {Path(s['model']).name}, {first.steps} steps"
                                                  f"{seeds_txt}", *declared],
                        outputs=[report / "report.md", report / "report.html"], needs=evals + trains))
    return stages


def _trained(run: Path, steps: int) -> bool:
    """The run folder records a training that reached `steps` (its metrics), whether or not its weights remain."""
    from evals.io import read_jsonl

    return any(r.get("step", -1) >= steps for r in read_jsonl(run / "metrics.jsonl", torn_tail="skip"))


def held_digits(s: dict, cfg) -> list[int]:
    return list(s["heldout_digits"] or cfg.arith_digits)


def _heldout_file(s: dict, cfg, out: Path) -> tuple[list, Path]:
    """The held-out problems of the settings `s` (the first `heldout_problems` of a pool of `heldout_size` over
    the digit counts), and their file: named by all three, so presets that share DIR but draw other problems
    write other files. A file of runs made before that named it by its size alone is kept when it holds exactly
    these problems."""
    from dataclasses import replace

    from evals.io import read_jsonl
    from tbrm.data import heldout_sets

    n, size, digits = s["heldout_problems"], s["heldout_size"], held_digits(s, cfg)
    task = replace(cfg, eval_problems=n, heldout_size=size, arith_digits=digits)
    problems = heldout_sets(task)["heldout"]
    legacy = out / "data" / f"arith-heldout-{n}.jsonl"
    if legacy.is_file() and [r.get("id") for r in read_jsonl(legacy, torn_tail="skip")] == [p.id for p in problems]:
        return problems, legacy
    return problems, out / "data" / f"arith-heldout-{n}-of-{size}-d{''.join(map(str, digits))}.jsonl"


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
    """The evaluation in `run` is complete and was made with the settings `expect`, of the weights the model
    folder holds now (summary.json's fingerprint; a folder that is gone, as a weightless finished run, is not
    checked). Settings or weights that differ are an error that names the folder to delete."""
    from evals.models import fingerprint

    summary = run / "summary.json"
    if not summary.is_file():
        return False
    doc = json.loads(summary.read_text())
    cfg = doc.get("config", {})
    out = run.parent.parent  # DIR/evals/<run>
    diff = {k: (cfg.get(k), v) for k, v in expect.items() if not _same_setting(k, cfg.get(k), v, out)}
    if diff:
        raise ValueError(f"{summary} was made with other settings ({diff}); use a new --out or delete {run}")
    model = out / expect["model"] if "model" in expect else None
    recorded = doc.get("fingerprint") or {}
    if model is not None and model.is_dir() and recorded.get("kind") == "local":
        now = fingerprint(str(model))
        if now.get("sha256_sample") != recorded.get("sha256_sample"):
            raise ValueError(f"{summary} scored other weights than {expect['model']} holds now (fingerprint "
                             f"{recorded.get('sha256_sample')}, now {now.get('sha256_sample')}: it was trained "
                             f"again); delete {run} to evaluate these weights")
    return True


def stage_dependencies(stages: list[Stage]) -> list[set[int]]:
    """For each stage, the earlier stages that write something it needs (a need equal to or inside an output)."""
    def inside(need: Path, output: Path) -> bool:
        return need == output or output in need.parents

    return [{j for j, other in enumerate(stages[:i]) if any(inside(nd, o) for nd in st.needs for o in other.outputs)}
            for i, st in enumerate(stages)]

