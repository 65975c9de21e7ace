"""The OpenAI-compatible endpoint engine (`--engine openai`) against a real vLLM server.

One `python -m vllm.entrypoints.openai.api_server` with the bundled SmolLM2 (fp32, eager) serves the session; the
server-death test SIGKILLs it and restarts it on the same port (a start is most of a minute, so the session pays one
start and that one restart), and the `server` fixture restarts it for the next test if a test left it dead. A
fault-injecting proxy of our own (tests/fault_proxy.py) sits in front of the real server for the retry tests.
Without vLLM the server tests are skipped with the install command (CI sets TBRM_REQUIRE_VLLM=1, which turns the
skip into a failure); the pure-function tests always run.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import eval_flags, run_cli
from tests.fault_proxy import FaultProxy, _free_port
from tests.vllm_server import SERVED, Server, _needs_vllm

PROBLEMS = ["What is 7 + 5?", "What is 23 + 19?", "Compute 6 * 7.", "What is 100 - 37?"]


@pytest.fixture(scope="session")
def _session_server(smollm2_path, tmp_path_factory):
    _needs_vllm()
    s = Server(smollm2_path, tmp_path_factory.mktemp("vllm-server") / "server.log").start()
    yield s
    s.stop()


@pytest.fixture
def server(_session_server):
    """The session's server, up: restarted on its port if an earlier test killed it and failed before its restart."""
    if not _session_server.alive:
        _session_server.restart()
    return _session_server


@pytest.fixture(scope="session")
def tok(smollm2_path):
    from evals.models import load_tokenizer

    return load_tokenizer(smollm2_path)


def _engine(base_url: str, tok, **kw):
    from evals.engines.openai_engine import OpenAIGenerator, OpenAISettings

    batch_size = kw.pop("batch_size", 3)
    return OpenAIGenerator(OpenAISettings([base_url] if isinstance(base_url, str) else base_url, SERVED, **kw), tok,
                           batch_size=batch_size)


def _texts(groups) -> list[tuple]:
    return [(s.prompt_index, s.sample_index, s.text, s.num_tokens, s.finish_reason) for g in groups for s in g]


# ---------------------------------------------------------------------------------------------- against the server


def test_greedy_texts_equal_the_in_process_vllm_engine(server, tmp_path):
    """`tbrm eval` on a MATH500 slice (fixture data), fp32 greedy: the server's texts are the in-process engine's.
    The API key comes from the environment and appears in no file the run writes. (The in-process engine runs in a
    process of its own: a vLLM engine torn down in the test process would tear down vLLM's process-wide
    parallel state under any other engine alive there.)"""
    common = ["eval", "--model", SERVED, "--benchmarks", "math500", "--limit", "4", "--max-new-tokens", "48",
              "--dtype", "float32", "--no-progress"]
    run_cli(*common, "--engine", "vllm", "--kv-cache-gb", "0.5", "--out", str(tmp_path / "vllm"))
    key = "sk-test-" + "".join(random.choices("abcdefghijklmnop", k=24))
    run_cli(*common, "--engine", "openai", "--base-url", server.base_url, "--concurrency", "4", "--batch-size", "2",
            "--api-key-env", "TBRM_TEST_KEY", "--out", str(tmp_path / "openai"), env={"TBRM_TEST_KEY": key})
    rows = lambda d: [(r["problem_id"], r["response"], r["num_tokens"], r["finish_reason"], r["outcome"])  # noqa: E731
                      for r in map(json.loads, (tmp_path / d / "samples" / "math500.jsonl").read_text().splitlines())]
    ours, theirs = sorted(rows("openai")), sorted(rows("vllm"))
    assert len(ours) == 4 and ours == theirs
    config = json.loads((tmp_path / "openai" / "config.json").read_text())
    engine = config["engine"]
    assert engine["name"] == "openai" and engine["api"] == "completions" and engine["api_key_env"] == "TBRM_TEST_KEY"
    assert engine["servers"][0]["models"] == [SERVED] and engine["servers"][0]["version"].startswith("0.")
    assert config["template"]["chat_template_used"] is True  # the suite rendered the prompt
    summary = json.loads((tmp_path / "openai" / "summary.json").read_text())
    assert summary["engine"]["requests"] == {"requests": 4, "retries": {"429": 0, "5xx": 0, "connection": 0,
                                                                         "timeout": 0}, "retried": 0}
    assert summary["benchmarks"]["math500"]["throughput"]["generated_tokens"] == sum(r[2] for r in ours)
    for f in (tmp_path / "openai").rglob("*"):
        if f.is_file():
            assert key not in f.read_text()


def test_seeded_sampling_repeats_and_thinking_is_kept_apart(server, tok):
    from evals.engines.base import SamplingParams, generate
    from evals.engines.openai_engine import split_thinking

    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=16, seed=11)
    engine = _engine(server.base_url, tok, concurrency=4)
    prompts = [engine.render(p) for p in PROBLEMS[:3]]
    first = generate(engine, prompts, params)
    again = generate(_engine(server.base_url, tok, concurrency=1, batch_size=5), prompts, params)
    assert _texts(again) == _texts(first)  # each request's seed is its own: batching and concurrency do not matter
    assert len({s.text for g in first for s in g}) > 3  # really sampled
    other = generate(engine, prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=16, seed=12))
    assert _texts(other) != _texts(first)
    # --strip-thinking: the text up to the token's last occurrence is the reasoning, the rest is graded
    thinking = generate(_engine(server.base_url, tok, concurrency=4, strip_thinking=" "), prompts, params)
    for a, b in zip([s for g in first for s in g], [s for g in thinking for s in g]):
        assert (b.text, b.reasoning) == split_thinking(a.text, " ")
    assert any(s.reasoning for g in thinking for s in g)


def test_retries_are_counted_and_the_samples_unchanged(server, tok):
    """429, 500, a connection reset and a stalled request (past the timeout) are each retried once and counted;
    a slow answer within the timeout is not; the samples equal a run without faults."""
    from evals.engines.base import SamplingParams, generate

    params = SamplingParams(max_new_tokens=8)
    clean = _engine(server.base_url, tok, concurrency=2)
    t0 = time.monotonic()
    want = generate(clean, [clean.render(p) for p in PROBLEMS[:3]], params)
    # The stall costs the test the whole request timeout, so it is short (10 s on an idle machine), yet five times
    # what the clean run of the same requests took here and now: no real answer (1 s slower at most) runs past it
    # while the machine stays about as busy, so the counts stay exact on a busy machine too.
    timeout = max(10.0, 5 * (time.monotonic() - t0))
    with FaultProxy(server.root, ["429", "500", "reset", "stall", "slow"], stall_s=timeout + 60, slow_s=1) as proxy:
        engine = _engine(proxy.base_url, tok, concurrency=2, request_timeout=timeout, max_retries=3)
        got = generate(engine, [engine.render(p) for p in PROBLEMS[:3]], params)
    assert _texts(got) == _texts(want)
    assert engine.request_stats() == {"requests": 3 + 4, "retries": {"429": 1, "5xx": 1, "connection": 1, "timeout": 1},
                                      "retried": 4}
    assert [a for p, a in proxy.log if p == "/v1/completions"] == ["429", "500", "reset", "stall", "slow", "pass",
                                                                  "pass"]


def test_a_request_failing_past_its_retries_or_with_a_4xx_stops_with_one_error(server, tok):
    from evals.engines.base import SamplingParams, generate
    from evals.engines.openai_engine import EndpointError

    params = SamplingParams(max_new_tokens=4)
    with FaultProxy(server.root, always="503") as proxy:
        engine = _engine(proxy.base_url, tok, concurrency=2, max_retries=2)
        with pytest.raises(EndpointError, match=rf"server {proxy.base_url} still failing after 2 retries .*"
                                                r"HTTP 503: injected 503.*rerun the same command to resume"):
            generate(engine, [engine.render(PROBLEMS[0])], params)
    assert engine.request_stats()["retries"]["5xx"] == 2 and engine.requests == 3
    with FaultProxy(server.root, always="400") as proxy:
        engine = _engine(proxy.base_url, tok, concurrency=2, max_retries=2)
        with pytest.raises(EndpointError, match=rf"server {proxy.base_url} refused a request .*HTTP 400: injected 400"):
            generate(engine, [engine.render(PROBLEMS[0])], params)
    assert engine.requests == 1 and engine.request_stats()["retried"] == 0  # not retried
    # the real server's own 4xx message comes through: a chat request past its context length
    chat = _engine(server.base_url, None, api="chat", max_retries=2)
    with pytest.raises(EndpointError, match=r"refused a request .*HTTP 400: .*(context|max_tokens|too long)"):
        generate(chat, [chat.render(PROBLEMS[0])], SamplingParams(max_new_tokens=5000))
    assert chat.requests == 1


def test_wrong_model_and_unreachable_url_give_one_clear_error(server, tmp_path):
    """The wrong model through the command line (its exit code and the one line it prints); the unreachable URL
    through the Python API, whose error is the line the command line prints after "tbrm eval: error: "."""
    import tbrm.api
    from evals.engines.openai_engine import EndpointError

    wrong = run_cli("eval", "--engine", "openai", "--benchmarks", "math500", "--limit", "2", "--max-new-tokens", "8",
                    "--no-progress", "--base-url", server.base_url, "--model", "not-served", "--tokenizer", SERVED,
                    "--out", str(tmp_path / "wrong"), check=False)
    assert wrong.returncode != 0
    assert wrong.stderr.strip() == (f"tbrm eval: error: server {server.base_url} does not serve model 'not-served'; "
                                    f"it serves '{SERVED}' (pass one of them as --model)")
    port = _free_port()
    with pytest.raises(EndpointError) as gone:
        tbrm.api.evaluate(out=tmp_path / "gone", progress=False, print_table=False, engine="openai",
                          benchmarks="math500", limit=2, max_new_tokens=8, model=SERVED,
                          base_url=[f"http://127.0.0.1:{port}/v1"])
    message = str(gone.value)
    assert "\n" not in message and message.startswith(f"server http://127.0.0.1:{port}/v1: GET /models failed: "
                                                      f"connection failed")
    assert not (tmp_path / "wrong" / "summary.json").exists() and not (tmp_path / "gone" / "summary.json").exists()


def test_killed_server_stops_the_run_and_a_rerun_resumes_to_the_same_summary(server, tmp_path):
    """The server is SIGKILLed mid-run: one clear error naming it, the finished batches kept. Restarted on the same
    port, the same command resumes and reaches the summary of an uninterrupted run (in-process, before the kill)."""
    import tbrm.api

    settings = dict(engine="openai", model=SERVED, benchmarks=["math500"], limit=6, samples=2, temperature=1.0,
                    max_new_tokens=24, batch_size=2, concurrency=1, max_retries=2)
    fresh = tmp_path / "fresh"
    tbrm.api.evaluate(out=fresh, progress=False, print_table=False, base_url=[server.base_url], **settings)
    args = ["eval", *eval_flags(settings), "--no-progress"]
    out = tmp_path / "killed"
    rows_file = out / "samples" / "math500.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tbrm.cli", *args, "--base-url", server.base_url, "--out",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 600
        while not (rows_file.exists() and rows_file.read_text().count("\n") >= 2) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        server.stop()
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tbrm eval: error: server {server.base_url} still failing "
                                                   f"after 2 retries"), stderr
    assert "connection failed" in lines[0] and "rerun the same command to resume" in lines[0]
    partial = rows_file.read_text().splitlines()
    assert 2 <= len(partial) < 12 and len(partial) % 2 == 0 and not (out / "summary.json").exists()
    server.restart()
    resumed = run_cli(*args, "--base-url", server.base_url, "--out", str(out))
    assert f"resuming, {len(partial) // 2}/6 batches already on disk" in resumed.stdout, resumed.stdout
    assert rows_file.read_text().splitlines()[: len(partial)] == partial  # finished batches kept, not redone
    a = json.loads((out / "summary.json").read_text())["benchmarks"]["math500"]
    b = json.loads((fresh / "summary.json").read_text())["benchmarks"]["math500"]
    for key in ("avg@2", "pass@1", "pass@2", "maj@2", "outcomes", "lengths"):
        assert a[key] == b[key]
    responses = lambda d: sorted((r["problem_id"], r["sample_index"], r["response"])  # noqa: E731
                                 for r in map(json.loads, (d / "samples" / "math500.jsonl").read_text().splitlines()))
    assert responses(out) == responses(fresh)


# ---------------------------------------------------------------------------------------------- pure functions


def test_backoff_is_exponential_with_full_jitter():
    from evals.engines.openai_engine import BACKOFF_BASE_S, BACKOFF_CAP_S, backoff_seconds

    rng = random.Random(0)
    for attempt in range(12):
        waits = [backoff_seconds(attempt, rng) for _ in range(200)]
        bound = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt)
        assert all(0 <= w <= bound for w in waits)
        assert max(waits) > 0.8 * bound and min(waits) < 0.2 * bound  # spread over the whole range


def test_split_thinking_and_shown_urls():
    from evals.engines.openai_engine import OpenAISettings, shown_url, split_thinking

    assert split_thinking("a</think>b</think>  \\boxed{2}", "</think>") == ("\\boxed{2}", "a</think>b</think>")
    assert split_thinking("no block \\boxed{2}", "</think>") == ("no block \\boxed{2}", None)
    assert split_thinking("x</think>y", None) == ("x</think>y", None)
    assert shown_url("https://user:secret@host.example:8443/v1/") == "https://host.example:8443/v1"
    with pytest.raises(ValueError, match="at least one --base-url"):
        OpenAISettings([], SERVED)
    with pytest.raises(ValueError, match="not an http"):
        OpenAISettings(["localhost:8000"], SERVED)
    with pytest.raises(ValueError, match="concurrency must be an integer >= 1"):
        OpenAISettings(["http://h:1/v1"], SERVED, concurrency=0)
