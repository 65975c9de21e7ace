"""`tbrm reproduce`: the paper preset's commands are valid `tbrm` invocations of existing recipes; the cpu preset's
plan is an equal-prompt-budget comparison; and the cpu pipeline runs end to end on the tiny model, survives a
real SIGKILL mid-training and, rerun, skips every finished stage."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import kill_env, run_cli, run_cli_here
from tbrm.cli import build_parser
from tbrm.config import RECIPES_DIR, load_config


def _tbrm_commands(text: str) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in text.splitlines() if line.startswith("tbrm ")]


def test_paper_preset_writes_valid_commands_of_existing_recipes(tmp_path):
    out = tmp_path / "paper"
    proc = run_cli("reproduce", "--preset", "paper", "--out", str(out))
    script = (out / "commands.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    cmds = _tbrm_commands(script)
    assert cmds == _tbrm_commands(proc.stdout)  # printed and written alike
    parser = build_parser()
    parsed = [parser.parse_args(c) for c in cmds]  # every line is a valid tbrm invocation (SystemExit otherwise)
    trains = [p for p in parsed if p.command == "train"]
    evals = [p for p in parsed if p.command == "eval"]
    reports = [p for p in parsed if p.command == "report"]
    assert {t.recipe for t in trains} == {f"paper-{m}-{s}" for m in ("tbrm-n1", "tbrm-n4", "grpo-n4", "ppo-n1")
                                          for s in ("qwen1.5b", "qwen7b")}
    for t in trains:
        assert (RECIPES_DIR / f"{t.recipe}.yaml").is_file()
        cfg = load_config(t.recipe)
        # each trained model is evaluated at its final checkpoint
        assert any(e.model == str(Path(t.out) / f"checkpoint-{cfg.steps}") for e in evals), t.recipe
    assert {e.model for e in evals} >= {"Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-7B"}  # base models
    assert len(evals) == 10
    for e in evals:
        assert e.benchmarks == ["math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench", "gsm8k"]
        # paper defaults come from the registry (AIME/AMC avg@32 at T=1.0, others greedy): not overridden
        assert e.samples is None and e.temperature is None and e.limit is None
        assert e.dtype == "bfloat16" and e.data_parallel_size == 4 and e.batch_size == 128  # a replica per GPU
    (rep,) = reports
    assert set(rep.runs) == {e.out for e in evals} | {t.out for t in trains}
    assert set(rep.average_over) == {"aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench"}
    assert not (out / "train").exists()  # nothing was run


def test_paper_preset_rejects_cpu_knobs(tmp_path):
    proc = run_cli_here("reproduce", "--preset", "paper", "--steps", "3", "--out", str(tmp_path / "p"), check=False)
    assert proc.returncode == 2 and "--steps" in proc.stderr and not (tmp_path / "p").exists()


def test_cpu_plan_is_an_equal_budget_comparison(tmp_path):
    proc = run_cli_here("reproduce", "--out", str(tmp_path / "r"), "--dry-run", "--steps", "7", "--math500-limit", "5")
    cmds = _tbrm_commands("\n".join(line.strip() for line in proc.stdout.splitlines()))
    parser = build_parser()
    parsed = [parser.parse_args(c) for c in cmds]
    trains = [p for p in parsed if p.command == "train"]
    assert [t.recipe for t in trains] == ["cpu-tbrm-n1", "cpu-tbrm-vref-n1", "cpu-tbrm-n4", "cpu-grpo-n4",
                                          "cpu-ppo-n1"]
    cfgs = [load_config(t.recipe, t.overrides) for t in trains]
    assert {(c.steps, c.prompts_per_step) for c in cfgs} == {(7, cfgs[0].prompts_per_step)}
    assert {c.algorithm for c in cfgs} == {"tbrm", "grpo", "ppo"}
    assert [c.subtract_ref_value for c in cfgs] == [False, True, False, False, False]  # ReVal's fix beside TBRM
    evals = [p for p in parsed if p.command == "eval"]
    assert len(evals) == 2 * 6  # base + 5 checkpoints, each on held-out arithmetic and MATH500
    assert sum(e.limit == 5 and e.benchmarks == ["math500"] for e in evals) == 6
    held = [e for e in evals if e.data_file]
    assert len(held) == 6 and len({e.data_file for e in held}) == 1
    # every path is relative to the output folder, where the stages run: nothing of this machine is recorded
    assert all(not Path(x).is_absolute() for p in parsed for x in [getattr(p, "out", "")] + list(
        getattr(p, "runs", None) or []) + [getattr(p, "data_file", None) or ""])
    assert {e.model for e in evals} == {"smollm2"} | {str(Path(t.out) / "checkpoint-7") for t in trains}
    assert [p.command for p in parsed][-1] == "report"
    assert not (tmp_path / "r").exists()  # a dry run writes nothing


def test_cpu_settings_are_validated(tmp_path):
    proc = run_cli_here("reproduce", "--out", str(tmp_path / "r"), "--dry-run", "--set", "nope=1", check=False)
    assert proc.returncode == 2 and "nope" in proc.stderr
    proc = run_cli_here("reproduce", "--out", str(tmp_path / "r"), "--dry-run", "--heldout-problems", "500",
                        check=False)
    assert proc.returncode == 2 and "heldout_size" in proc.stderr


TINY = ["--recipes", "cpu-tbrm-n1", "--steps", "2", "--math500-limit", "2", "--heldout-problems", "4",
        "--set", "heldout_size=20", "--set", "heldout_max_new_tokens=4", "--set", "math500_max_new_tokens=4",
        "--set", "eval_batch_size=8", "--train-set", "prompts_per_step=2", "--train-set", "max_new_tokens=4",
        "--train-set", "eval_problems=4", "--train-set", "micro_batch_size=4", "--train-set", "generation_batch_size=8",
        "--train-set", "save_every=1", "--train-set", "keep_checkpoints=2", "--train-set", "tensorboard=false"]


def _cpu_plan(out: Path, model: str, args: list[str]) -> list:
    """The stages `tbrm reproduce --out OUT --model MODEL ARGS` runs, planned in this process."""
    from reports.reproduce import cpu_stages, resolve_settings

    a = build_parser().parse_args(["reproduce", "--out", str(out), "--model", model, *args])
    return cpu_stages(resolve_settings(a), Path(a.out).resolve())


def test_cpu_plan_of_several_methods_follows_each_training_by_its_evaluations(tiny_model_path, tmp_path):
    # the end-to-end run below trains one method; the plan of two, with the same settings, is validated here
    stages = _cpu_plan(tmp_path / "r", tiny_model_path, [*TINY, "--recipes", "cpu-tbrm-n1", "cpu-grpo-n4"])
    names = [st.name.split(" (")[0] for st in stages]
    assert names == ["write 4 held-out arithmetic problems", "evaluate base on heldout", "evaluate base on math500",
                     "train TBRM n=1", "evaluate tbrm-n1-step2 on heldout", "evaluate tbrm-n1-step2 on math500",
                     "train GRPO n=4", "evaluate grpo-n4-step2 on heldout", "evaluate grpo-n4-step2 on math500",
                     "write the report"]
    report = stages[-1].argv
    assert {"train/tbrm-n1", "train/grpo-n4", "evals/base-heldout-4-of-20-d12", "evals/grpo-n4-step2-math500-2"} <= set(report)
    assert "2 methods" in report[report.index("--title") + 1]


def test_cpu_pipeline_end_to_end_with_kill_and_resume(tiny_model_path, tmp_path):
    out = tmp_path / "repro"
    args = ["reproduce", "--out", str(out), "--model", tiny_model_path, *TINY]
    # a real SIGKILL of the training process after its first step: reproduce (a real `tbrm` process, as a user
    # runs it) stops with exit code 1 and says how to resume
    killed = run_cli(*args, env=kill_env(step=1), check=False)
    assert killed.returncode == 1 and "stage 4/7" in killed.stderr and "Rerun the same command" in killed.stderr
    assert (out / "train" / "tbrm-n1" / "checkpoint-1").is_dir()
    # the base model is evaluated first; each training is followed by its own evaluations
    assert sorted(p.name for p in (out / "evals").iterdir()) == ["base-heldout-4-of-20-d12", "base-math500-2"]

    # rerun (the reruns run `tbrm reproduce` in this process; every stage is still its own process)
    resumed = run_cli_here(*args)
    skipped = [line for line in resumed.stdout.splitlines() if line.startswith("[") and "complete, skipped" in line]
    assert len(skipped) == 3 and skipped[0].startswith("[1/7] write 4 held-out arithmetic problems: complete, skipped")
    assert "[4/7] train TBRM n=1" in resumed.stdout and "all 7 stages complete" in resumed.stdout
    rows = [json.loads(x) for x in (out / "train" / "tbrm-n1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]  # resumed from checkpoint-1, not restarted or duplicated
    held = [json.loads(x) for x in (out / "data" / "arith-heldout-4-of-20-d12.jsonl").read_text().splitlines()]
    from tbrm.data import heldout_sets

    cfg = load_config("cpu-tbrm-n1", ["heldout_size=20", "eval_problems=4"])
    assert [h["id"] for h in held] == [p.id for p in heldout_sets(cfg)["heldout"]]  # the trainer's split
    for key in ("base", "tbrm-n1-step2"):
        for bench in ("heldout-4-of-20-d12", "math500-2"):
            assert (out / "evals" / f"{key}-{bench}" / "summary.json").is_file()
    report = out / "report-cpu"
    assert (report / "report.html").is_file() and (report / "figures" / "curves_vs_rollouts.png").is_file()
    with open(report / "tables" / "table1.csv", newline="") as f:
        t1 = list(csv.DictReader(f))
    assert [r["label"] for r in t1] == [f"{Path(tiny_model_path).name} (base)", "TBRM n=1"]
    assert all(r["arith-heldout-4-of-20-d12_n_problems"] == "4" and r["math500_n_problems"] == "2" for r in t1)
    assert all(r["average"] != "" for r in t1)  # same problems and settings everywhere: averaged
    timings = json.loads((out / "stages.json").read_text())
    assert len(timings) == 7 and all(v >= 0 for v in timings.values())
    # run again, every stage but the report is found complete (the rerun below, without weights, runs it)
    assert [st.done() for st in _cpu_plan(out, tiny_model_path, TINY)] == [True] * 6 + [False]

    # a longer preset on the same folder (as cpu-full after cpu) continues the training instead of restarting,
    # and evaluates its own slices beside the finished ones
    longer = [*args, "--steps", "3", "--heldout-problems", "5", "--math500-limit", "0"]
    assert "[1/5] write 5 held-out arithmetic problems: done" in run_cli_here(*longer).stdout
    rows = [json.loads(x) for x in (out / "train" / "tbrm-n1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for key in ("base", "tbrm-n1-step3"):
        assert (out / "evals" / f"{key}-heldout-5-of-20-d12" / "summary.json").is_file()
    assert (out / "evals" / "tbrm-n1-step2-heldout-4-of-20-d12" / "summary.json").is_file()  # the shorter run's
    with open(report / "tables" / "table1.csv", newline="") as f:
        assert [r["arith-heldout-5-of-20-d12_n_problems"] for r in csv.DictReader(f)] == ["5", "5"]

    # the shorter run's final checkpoint is kept (keep_checkpoints=2 here; the presets keep 3, so that cpu-full's
    # step 40 keeps cpu's checkpoint-20)...
    assert sorted(p.name for p in (out / "train" / "tbrm-n1").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    # ...unless a longer run rotated it away (here checkpoint-1): going back to it is refused before anything runs
    shorter = run_cli_here(*args, "--steps", "1", check=False)
    assert shorter.returncode == 2 and "checkpoint-1 was rotated away" in shorter.stderr and "[1/" not in shorter.stdout
    train_args = ["train", "--recipe", "cpu-tbrm-n1", "--out", str(out / "train" / "tbrm-n1"), "--no-progress",
                  "steps=1", "heldout_size=20", f"model={tiny_model_path}",
                  *[v for k, v in zip(TINY, TINY[1:]) if k == "--train-set"]]
    proc = run_cli_here(*train_args, check=False)
    assert proc.returncode == 2 and "beyond steps=1" in proc.stderr

    # an evaluation of weights the checkpoint no longer holds (the training was redone) is not taken as done
    import shutil

    longer_plan = [*TINY, "--steps", "3", "--heldout-problems", "5", "--math500-limit", "0"]
    weights = out / "train" / "tbrm-n1" / "checkpoint-3" / "model.safetensors"
    saved = weights.read_bytes()
    shutil.copyfile(out / "train" / "tbrm-n1" / "checkpoint-2" / "model.safetensors", weights)  # other real weights
    (held_eval,) = [st for st in _cpu_plan(out, tiny_model_path, longer_plan) if st.name.startswith(
        "evaluate tbrm-n1-step3 on heldout")]
    with pytest.raises(ValueError, match="tbrm-n1-step3-heldout-5-of-20-d12/summary.json scored other weights"):
        held_eval.done()
    weights.write_bytes(saved)
    assert held_eval.done()

    # evaluated trainings are finished without their weights: a run folder kept (or committed) without the
    # checkpoints reports again without retraining anything; only the report is redone

    for ckpt in (out / "train").glob("*/checkpoint-*"):
        shutil.rmtree(ckpt)
    weightless = run_cli_here(*longer)
    skipped = [line for line in weightless.stdout.splitlines() if line.endswith(")") and "complete, skipped" in line]
    assert len(skipped) == 4 and any("] train TBRM n=1" in line for line in skipped)
    assert "[5/5] write the report" in weightless.stdout and "all 5 stages complete" in weightless.stdout
    assert not list((out / "train").glob("*/checkpoint-*"))
    # ...but a training whose run folder was deleted (as a settings error's hint says) is trained again, though
    # its evaluations are still there
    shutil.rmtree(out / "train" / "tbrm-n1")
    train_stage = next(st for st in _cpu_plan(out, tiny_model_path, longer_plan) if st.name.startswith("train "))
    assert not train_stage.done()


def test_changed_settings_on_rerun_are_refused(tiny_model_path, tmp_path):
    out = tmp_path / "repro"
    (out / "evals" / "base-math500-2").mkdir(parents=True)
    (out / "evals" / "base-math500-2" / "summary.json").write_text(json.dumps({"config": {"limit": 3}}))
    proc = run_cli("reproduce", "--out", str(out), "--model", tiny_model_path, *TINY, check=False)
    assert proc.returncode == 2 and "base-math500-2/summary.json was made with other settings" in proc.stderr


@pytest.mark.parametrize("preset,stages", [("cpu", 19), ("cpu-full", 49), ("offpolicy", 36)])
def test_presets_load(preset, stages, tmp_path):
    proc = run_cli_here("reproduce", "--preset", preset, "--out", str(tmp_path / "r"), "--dry-run")
    assert f"[1/{stages}]" in proc.stdout and "write the report" in proc.stdout


def _plan(*args: str) -> list:
    proc = run_cli_here("reproduce", *args, "--dry-run")
    parser = build_parser()
    return [parser.parse_args(c) for c in _tbrm_commands("\n".join(x.strip() for x in proc.stdout.splitlines()))]


def test_seeds_train_every_method_with_each_seed(tmp_path):
    parsed = _plan("--out", str(tmp_path / "r"), "--seeds", "3", "--recipes", "cpu-tbrm-n1", "cpu-grpo-n4",
                   "--math500-limit", "0")
    trains = [p for p in parsed if p.command == "train"]
    seeds = {(t.recipe, load_config(t.recipe, t.overrides).seed, t.out) for t in trains}
    assert seeds == {(r, k, f"train/{r[4:]}" + ("" if k == 0 else f"-seed{k}")) for r in ("cpu-tbrm-n1", "cpu-grpo-n4")
                     for k in range(3)}  # seed 0 keeps the single-seed folder: a seeded run continues it
    evals = [p for p in parsed if p.command == "eval"]
    assert len(evals) == 1 + 6 and {e.model for e in evals} == {"smollm2"} | {f"{t.out}/checkpoint-20" for t in trains}
    (rep,) = [p for p in parsed if p.command == "report"]
    assert set(rep.runs) == {e.out for e in evals} | {t.out for t in trains}
    proc = run_cli_here("reproduce", "--out", str(tmp_path / "r"), "--seeds", "0", "--dry-run", check=False)
    assert proc.returncode == 2 and "seeds must be a positive integer" in proc.stderr


def test_offpolicy_plan_samples_once_and_trains_from_files_at_equal_steps(tmp_path):
    parsed = _plan("--preset", "offpolicy", "--out", str(tmp_path / "r"))
    samples = [p for p in parsed if p.command == "eval" and p.out.startswith("evals/sample-")]
    assert {(e.model, e.temperature, e.seed, e.samples) for e in samples} == {
        ("smollm2", t, k, 1) for t in (0.7, 1.0) for k in range(3)}  # the base model, two policies, per seed
    # the files' rewards are graded as the recipe grades its own rollouts (SmolLM2's recipe: lenient fallback on)
    assert load_config("cpu-tbrm-n1").lenient and all(e.lenient for e in samples)
    trains = [p for p in parsed if p.command == "train"]
    cfgs = {t.out: load_config(t.recipe, [o for o in t.overrides if not o.startswith("offline_")]) for t in trains}
    assert len({(c.steps, c.prompts_per_step, c.rollouts_per_prompt) for c in cfgs.values()}) == 1  # equal steps
    off = {t.out: next(o for o in t.overrides if o.startswith("offline_")) for t in trains
           if any(o.startswith("offline_") for o in t.overrides)}
    assert len(off) == 6 and len(trains) == 9  # 3 seeds x (on-policy, two files)
    assert off["train/tbrm-n1-offpolicy-t1-seed2"] == "offline_trajectories=data/seed2/traj-base-t1.jsonl"
    n_prompts = 20 * cfgs["train/tbrm-n1"].prompts_per_step
    assert all(f"train-prompts-{n_prompts}.jsonl" in e.data_file for e in samples)


TINY_OFF = ["--preset", "offpolicy", "--seeds", "2", "--steps", "2", "--heldout-problems", "4",
            "--set", "heldout_size=20", "--set", "heldout_max_new_tokens=4", "--set", "eval_batch_size=8",
            "--set", "offpolicy_temperatures=[1.5]", "--train-set", "prompts_per_step=2",
            "--train-set", "max_new_tokens=4", "--train-set", "eval_problems=4", "--train-set", "micro_batch_size=4",
            "--train-set", "generation_batch_size=8", "--train-set", "eval_every=1", "--train-set", "tensorboard=false"]


def test_offpolicy_preset_end_to_end_on_a_tiny_model(tiny_model_path, tmp_path):
    # one off-policy temperature here (the preset's two, per seed, are planned in
    # test_offpolicy_plan_samples_once_and_trains_from_files_at_equal_steps); two seeds, for the seeds' tables
    from evals.portable import leaks
    from reports.reproduce import stage_dependencies

    out = tmp_path / "off"
    # side by side (--jobs): each stage starts only once the stages writing its inputs are done
    proc = run_cli_here("reproduce", "--out", str(out), "--model", tiny_model_path, *TINY_OFF, "--jobs", "3")
    assert "all 17 stages complete" in proc.stdout
    lines = proc.stdout.splitlines()
    when = {(m.group(1), m.group(2)): k for k, line in enumerate(lines)
            if (m := re.match(r"\[(\d+)/17\] .*: (started|done)", line))}
    trains = [i for (i, what) in when if what == "started" and "train TBRM" in lines[when[(i, what)]]]
    assert len(trains) == 4 and max(len([i for i in trains if when[(i, "started")] < when[(j, "done")]])
                                    for j in trains) >= 2  # trainings overlapped
    for i, deps in enumerate(stage_dependencies(_cpu_plan(out, tiny_model_path, TINY_OFF))):
        for j in deps:  # in-process stages only print "done"
            assert when[(str(j + 1), "done")] < when.get((str(i + 1), "started"), when[(str(i + 1), "done")])
    # one log per subprocess stage: all but the in-process ones (held-out file; per seed prompts + trajectories)
    assert len(list((out / "logs").glob("*.log"))) == 17 - (1 + 2 * 2)
    for k in (0, 1):
        prompts = [json.loads(x) for x in (out / "data" / f"seed{k}" / "train-prompts-4.jsonl").read_text().splitlines()]
        traj = [json.loads(x) for x in (out / "data" / f"seed{k}" / "traj-base-t1.5.jsonl").read_text().splitlines()]
        assert [r["prompt"] for r in traj] == [p["problem"] for p in prompts]  # one sample per training prompt
        assert all(r["reward"] in (0.0, 1.0) and r["finish_reason"] in ("stop", "length") for r in traj)
        run = out / "train" / ("tbrm-n1-offpolicy-t1.5" + ("" if k == 0 else f"-seed{k}"))
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        steps = [r for r in rows if r["step"] > 0]
        assert [r["step"] for r in rows] == [0, 1, 2] and all(r["time/generation"] < 0.05 for r in steps)
        assert [r["reward/mean"] for r in steps] == [sum(x["reward"] for x in traj[i:i + 2]) / 2 for i in (0, 2)]
        assert all("tbrm/residual_abs_mean" in r and "eval/heldout/accuracy" in r for r in steps)
    report = out / "report-offpolicy"
    with open(report / "tables" / "table1_seeds.csv", newline="") as f:
        t1 = {r["label"]: r for r in csv.DictReader(f)}
    assert set(t1) == {f"{Path(tiny_model_path).name} (base)", "TBRM n=1", "TBRM n=1 off-policy (traj-base-t1.5)"}
    assert all(r["n_seeds"] == ("1" if r["base"] == "True" else "2") for r in t1.values())
    with open(report / "tables" / "paired_seeds.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3  # every pair of the 3 methods on the held-out set, Holm over 3
    assert (report / "figures" / "curves_vs_step.png").is_file()
    for f in out.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".csv", ".md", ".html") and "checkpoint-" not in str(f):
            assert not leaks(f.read_text(errors="replace"), out), f"{f} holds a machine path"


def test_stage_dependencies_follow_the_files_each_stage_reads(tmp_path):
    from reports.reproduce import cpu_stages, resolve_settings, stage_dependencies

    a = build_parser().parse_args(["reproduce", "--preset", "offpolicy", "--out", str(tmp_path / "r"), "--seeds", "2"])
    stages = cpu_stages(resolve_settings(a), tmp_path / "r")
    deps = stage_dependencies(stages)
    name = lambda i: stages[i].name  # noqa: E731
    by = {name(i): {name(j) for j in d} for i, d in enumerate(deps)}
    assert by["write 100 held-out arithmetic problems"] == set()
    assert by["train TBRM n=1 (cpu-tbrm-n1, seed 1, 20 steps x 8 prompts)"] == set()  # on-policy: nothing
    assert by["train TBRM n=1 (cpu-tbrm-n1, off-policy from traj-base-t1.jsonl, seed 1, 20 steps x 8 prompts)"] == {
        "write trajectory file data/seed1/traj-base-t1.jsonl"}
    assert by["write trajectory file data/seed1/traj-base-t1.jsonl"] == {
        "write the 160 training prompts of seed 1", "sample trajectories: base model at T=1, seed 1 (160 prompts)"}
    assert by["evaluate base on heldout (100 problems, 48 new tokens)"] == {"write 100 held-out arithmetic problems"}
    assert by["evaluate tbrm-n1-offpolicy-t0.7-seed1-step20 on heldout (100 problems, 48 new tokens)"] == {
        "write 100 held-out arithmetic problems",
        "train TBRM n=1 (cpu-tbrm-n1, off-policy from traj-base-t0.7.jsonl, seed 1, 20 steps x 8 prompts)"}
    assert by["write the report"] == {name(i) for i, st in enumerate(stages)
                                      if st.argv and st.argv[0] in ("train", "eval") and "sample" not in st.name}
    proc = run_cli_here("reproduce", "--out", str(tmp_path / "r"), "--jobs", "0", "--dry-run", check=False)
    assert proc.returncode == 2 and "--jobs must be a positive integer" in proc.stderr


def test_offpolicy_config_names_its_file_relative_before_and_after_sampling(tmp_path):
    from reports.reproduce import _offline_config

    over = ["steps=3", "offline_trajectories=data/seed1/traj-base-t1.jsonl"]
    before = _offline_config("cpu-tbrm-n1", over, tmp_path)  # not sampled yet: the plan still validates
    traj = tmp_path / "data" / "seed1" / "traj-base-t1.jsonl"
    traj.parent.mkdir(parents=True)
    traj.write_text(json.dumps({"prompt": "What is 1 + 1?", "response": "2", "reward": 1.0}) + "\n")
    after = _offline_config("cpu-tbrm-n1", over, tmp_path)  # sampled: validated against the real file
    assert before == after and after.offline_trajectories == "data/seed1/traj-base-t1.jsonl"


def test_powered_plan_runs_whole_seeds_first_and_scores_500_never_trained_problems(tmp_path):
    from reports.reproduce import PRESETS, cpu_stages, resolve_settings
    from tbrm.tasks import is_reserved

    out = tmp_path / "p"
    a = build_parser().parse_args(["reproduce", "--preset", "powered", "--out", str(out), "--seeds", "2"])
    s = resolve_settings(a)
    stages = cpu_stages(s, out)
    trains = [st for st in stages if st.argv and st.argv[0] == "train"]
    assert len(trains) == 2 * len(PRESETS["powered"]["recipes"])
    # seed-major, and each training is followed by its own evaluation
    assert [t.argv[-1] for t in trains] == ["seed=0"] * 4 + ["seed=1"] * 4
    for st in trains:
        nxt = stages[stages.index(st) + 1]
        run = st.argv[st.argv.index("--out") + 1]
        assert nxt.argv[0] == "eval" and nxt.argv[nxt.argv.index("--model") + 1] == f"{run}/checkpoint-20"
        assert {"final_state=weights", "keep_checkpoints=1", "evaluate=false"} <= set(st.argv)
    # every primary names methods the preset trains
    methods = {"cpu-tbrm-n1": "TBRM n=1", "cpu-ppo-n1": "PPO n=1", "cpu-tbrm-n4": "TBRM n=4", "cpu-grpo-n4": "GRPO n=4"}
    assert {m for pair in PRESETS["powered"]["primaries"] for m in pair} == {methods[r] for r in s["recipes"]}
    assert not any("math500" in st.name for st in stages)
    report = stages[-1].argv
    assert [report[i + 1] for i, x in enumerate(report) if x == "--primary"] == ["TBRM n=1:PPO n=1", "TBRM n=4:GRPO n=4"]
    assert report[report.index("--margin") + 1] == "5"
    # a primary whose methods are not all trained here is dropped, not a failing report
    a2 = build_parser().parse_args(["reproduce", "--preset", "powered", "--out", str(out), "--recipes", "cpu-tbrm-n1",
                                    "cpu-ppo-n1"])
    report = cpu_stages(resolve_settings(a2), out)[-1].argv
    assert [report[i + 1] for i, x in enumerate(report) if x == "--primary"] == ["TBRM n=1:PPO n=1"]
    out.mkdir()
    stages[0].func()  # the held-out file
    rows = [json.loads(x) for x in (out / "data" / "arith-heldout-500-of-500-d123.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["id"] for r in rows}) == 500
    triples = [re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", r["problem"]).groups() for r in rows]
    assert all(is_reserved(int(x), op, int(y)) for x, op, y in triples)  # no training stream draws them
    assert {len(x) for x, _, _ in triples} == {1, 2, 3}
