"""verl's own trainer on CPU, end to end, as a user runs it: ``tbrm verl RECIPE --out RUN --launch`` (Ray, FSDP2
actor, reference and critic workers, a vLLM rollout server, the reward loop with this suite's verifier, the weight
sync), then ``tbrm verl export RUN`` and ``tbrm eval`` of the exported checkpoint with the in-process vLLM engine.

Each paper recipe is shrunk to a tiny fixture by recipe overrides (``SHRINK``, the only settings that differ from
the paper's; why each: docs/verl-plugin.md, "verl's trainer on CPU"). The CPU platform comes from the test-only
harness ``tests_verl/verl_cpu.py``, added at launch by ``--launch-override`` and the environment, not written into
the run's ``verl_config.yaml``. The harness also records every actor-loss call, from which the TBRM test
recomputes the loss with ``tbrm.loss.tbrm_loss``.

Cost on 2 busy CPU cores: about 2 to 3 minutes per recipe (Ray and vLLM start-up dominate).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests_verl import verl_cpu
from tests_verl.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

TRAIN = REPO / "tests" / "fixtures" / "data" / "math_train" / "train.jsonl"
DATA_DIR = REPO / "tests" / "fixtures" / "data"
STEPS = 2
LR = 1e-3  # the paper's 1e-6..2.5e-6 would move a random model's log-probs less than bf16 rounding


def shrink(model_dir: str) -> list[str]:
    """Recipe overrides that shrink a paper recipe to the CPU fixture (everything else is the recipe's)."""
    return [f"model={model_dir}", "data=file", f"data_path={TRAIN}", "problem_field=problem",
            "answer_field=answer", "prompts_per_step=4", "max_new_tokens=16", f"steps={STEPS}",
            "micro_batch_size=2", f"lr={LR}", "critic_lr=1e-3", f"save_every={STEPS}", "keep_checkpoints=1",
            "evaluate=false", "eval_problems=4"]


def launch(recipe: str, run: Path, model_dir: str, record: Path, timeout: float = 900) -> str:
    """``tbrm verl RECIPE ... --launch`` on CPU; returns its console output (verl logs metrics to the console)."""
    args = [sys.executable, "-m", "tbrm.cli", "verl", recipe, *shrink(model_dir), "--out", str(run), "--gpus", "1",
            "--gpu-memory-utilization", "0.3", "--data-dir", str(DATA_DIR), "--launch"]
    for o in verl_cpu.CPU_OVERRIDES:
        args += ["--launch-override", o]
    env = {**os.environ, **verl_cpu.cpu_env(str(REPO)), "TBRM_VERL_CPU_RECORD": str(record),
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    out = proc.stdout + proc.stderr
    (run.parent / f"{run.name}.log").write_text(out)
    assert proc.returncode == 0, f"tbrm verl {recipe} --launch exited {proc.returncode}:\n{out[-8000:]}"
    return out


def step_metrics(log: str) -> dict[int, dict[str, float]]:
    """verl's console logger: one ``step:N - key:value - ...`` line per training step."""
    steps = {}
    for line in log.splitlines():
        m = re.search(r"step:(\d+) - (.*)", line)
        if not m:
            continue
        metrics = {}
        for item in m.group(2).split(" - "):
            key, _, value = item.partition(":")
            try:
                metrics[key.strip()] = float(value)
            except ValueError:
                pass
        steps[int(m.group(1))] = metrics
    return steps


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_chat_model_dir) -> str:
    return tiny_chat_model_dir


def _load_records(record: Path) -> list[dict]:
    return [torch.load(p, weights_only=False) for p in sorted(record.glob("loss-*.pt"))]


def _export_and_eval(run: Path, tmp_path: Path) -> dict:
    run_cli("verl", "export", str(run))
    ckpt = run / f"checkpoint-{STEPS}"
    assert (ckpt / "config.json").is_file() and (ckpt / "train_config.json").is_file()
    out = tmp_path / "eval"
    run_cli("eval", "--model", str(ckpt), "--benchmarks", "math500", "--limit", "4", "--engine", "vllm",
            "--data-dir", str(DATA_DIR), "--max-new-tokens", "16", "--out", str(out), timeout=900)
    return {"checkpoint": ckpt, "eval": out}


def _weights_moved(initial: str, ckpt: Path) -> float:
    from safetensors.torch import load_file

    a = load_file(str(Path(initial) / "model.safetensors"))
    b = {}
    for f in ckpt.glob("*.safetensors"):
        b.update(load_file(str(f)))
    common = [k for k in a if k in b]
    assert common, f"{ckpt}: no tensor names in common with the initial model"
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in common)


def _check_trained(log: str, run: Path) -> dict[int, dict[str, float]]:
    steps = step_metrics(log)
    assert sorted(steps) == list(range(1, STEPS + 1)), f"steps logged: {sorted(steps)}"
    for n, m in steps.items():
        assert math.isfinite(m["actor/pg_loss"]), (n, m)
    assert (run / "checkpoints" / f"global_step_{STEPS}" / "actor" / "fsdp_config.json").is_file()
    return steps


def _check_sync(steps: dict[int, dict[str, float]], moved: float) -> None:
    """After step 1 verl pushes the actor's weights into the vLLM server; step 2's responses were sampled by it.
    verl compares the rollout's log-probs with the actor's (old_log_prob) on the same tokens: they must agree to
    bf16 rounding, far closer than the log-prob change the update made (checked separately from the weights)."""
    assert moved > 1e-4, f"the update moved no weight by more than {moved}"
    diff = steps[STEPS]["training/rollout_probs_diff_max"]
    assert diff < 0.1, f"step {STEPS}: the rollout's probabilities differ from the actor's by up to {diff}"


def _check_eval(result: dict) -> None:
    summary = json.loads((result["eval"] / "summary.json").read_text())
    assert summary, result["eval"]
