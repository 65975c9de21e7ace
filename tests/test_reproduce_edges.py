"""Edge cases of `tbrm reproduce` and of resuming the runs it starts: presets sharing one --out score the problems
they draw, a training that starts over re-scores its step 0 when the sampler changed, and W&B runs of two folders
of one name stay apart. (The stale-evaluation and deleted-training cases run in test_reproduce's end-to-end test,
on the folder it has trained.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import kill_env, run_cli, run_cli_here
from tbrm.cli import build_parser


def _plan(out: Path, *args: str) -> list:
    from reports.reproduce import cpu_stages, resolve_settings

    a = build_parser().parse_args(["reproduce", "--out", str(out), *args])
    return cpu_stages(resolve_settings(a), out)


def _data_file(stages) -> Path:
    return stages[0].outputs[0]


def test_presets_sharing_a_folder_keep_their_own_heldout_problems(tmp_path):
    """Same number of held-out problems from other pools (pool size, digit counts): other files and other eval
    folders, so neither reuses the other's problems; a file under a name that holds other problems is refused."""
    out = tmp_path / "r"
    out.mkdir()
    common = ["--recipes", "cpu-tbrm-n1", "--heldout-problems", "50", "--math500-limit", "0"]
    a = _plan(out, *common)  # the recipes' digit counts (1-2), a pool of 200
    b = _plan(out, "--preset", "powered", *common)  # 1-3 digits, a pool of 500
    assert _data_file(a) != _data_file(b)
    for stages in (a, b):
        stages[0].func()
        assert stages[0].done()
    rows = {p: [json.loads(x)["id"] for x in p.read_text().splitlines()] for p in (_data_file(a), _data_file(b))}
    assert len(set(map(tuple, rows.values()))) == 2 and all(len(r) == 50 for r in rows.values())
    evals_a = {st.outputs[0].name for st in a if st.argv and st.argv[0] == "eval"}
    evals_b = {st.outputs[0].name for st in b if st.argv and st.argv[0] == "eval"}
    assert not evals_a & evals_b  # base-heldout-50-of-200-d12 and base-heldout-50-of-500-d123
    # a run made before the files were named by their pool keeps its file (and so its evaluations) when it holds
    # exactly these problems; one holding others is an error, not a silent reuse
    legacy = out / "data" / "arith-heldout-50.jsonl"
    _data_file(a).rename(legacy)
    a = _plan(out, *common)
    assert _data_file(a) == legacy and a[0].done()
    assert any(st.outputs[0].name == "base-heldout-50" for st in a if st.argv and st.argv[0] == "eval")
    _data_file(b).replace(legacy)
    a = _plan(out, *common)
    assert _data_file(a) != legacy  # not these problems: the pool's own name
    _data_file(a).parent.mkdir(exist_ok=True)
    _data_file(a).write_text(legacy.read_text())
    with pytest.raises(ValueError, match="holds other held-out problems than this preset draws"):
        a[0].done()


def test_a_training_that_starts_over_rescores_step_0_when_the_sampler_changed(tiny_model_path, tmp_path):
    """Killed after its step-0 held-out evaluation (no checkpoint yet), then resumed with another
    generation_batch_size: the evaluation files batched 4+2 problems must not be read as batches of 2 (batch 1 of
    the old plan held problems 4-5, the new batch 1 is problems 2-3). The tiny model (seconds per run) stands in
    for SmolLM2; vLLM does not take it, so the engine stays hf and the batch size is what changes."""
    run = tmp_path / "t"
    base = ["train", "--recipe", "cpu-tbrm-n1", "--out", str(run), "--no-progress", f"model={tiny_model_path}",
            "steps=1", "heldout_size=20", "eval_problems=6", "prompts_per_step=2", "max_new_tokens=4",
            "micro_batch_size=4", "tensorboard=false", "save_every=1"]
    killed = run_cli(*base, "generation_batch_size=4", env=kill_env(batches=2), check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    step0 = run / "evals" / "step-0" / "heldout.jsonl"
    old = [json.loads(x) for x in step0.read_text().splitlines()]
    assert sorted(r["batch_index"] for r in old) == [0, 0, 0, 0, 1, 1] and not list(run.glob("checkpoint-*"))
    run_cli_here(*base, "generation_batch_size=2")
    rows = [json.loads(x) for x in step0.read_text().splitlines()]
    assert sorted(r["problem_id"] for r in rows) == sorted(r["problem_id"] for r in old)  # each problem once
    assert sorted(r["batch_index"] for r in rows) == [0, 0, 1, 1, 2, 2]
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1]


def test_wandb_run_ids_are_kept_per_folder_and_differ_between_folders_of_one_name(tmp_path):
    """The W&B id of a run folder: the same on every resume of that folder, another for a folder of the same name
    under another --out (W&B would otherwise merge the two runs). wandb itself is an optional extra, not installed
    for the tests, so the id the trainer passes to wandb.init is checked."""
    from tbrm.trainer import wandb_run_id

    a, b = tmp_path / "out1" / "tbrm-n1", tmp_path / "out2" / "tbrm-n1"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    first = wandb_run_id(a)
    assert first.startswith("tbrm-n1-") and wandb_run_id(a) == first  # a resume continues the W&B run
    assert wandb_run_id(b) != first
    odd = tmp_path / "tbrm-n1-offpolicy-t0.7"
    odd.mkdir()
    assert wandb_run_id(odd).startswith("tbrm-n1-offpolicy-t0-7-")  # characters W&B takes in an id
