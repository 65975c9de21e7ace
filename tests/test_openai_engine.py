"""The OpenAI-compatible endpoint engine (`--engine openai`) against a real vLLM server.

One `python -m vllm.entrypoints.openai.api_server` at its defaults serves the session a fixture made from the bundled
SmolLM2 (its weights, linked): its tokenizer adds BOS although the chat template already starts with it (as Llama-3,
Gemma, Mistral and DeepSeek-R1-Distill do) and its generation_config.json sets a repetition penalty, top_k, top_p and
temperature (as Qwen2.5-Instruct does), so a client that sends text or leaves sampling settings to the server gets
other samples than the in-process engine. The
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


BOS_ID = 1  # SmolLM2's <|im_start|>: its BOS token, and the first token of its chat template
QWEN_LIKE_GENERATION = {"repetition_penalty": 1.3, "top_k": 20, "top_p": 0.8, "temperature": 0.7}


def make_served_fixture(out: Path, smollm2_path: str) -> str:
    """The bundled SmolLM2 (weights linked, not copied) with a tokenizer that adds BOS itself and a
    generation_config.json with a Qwen2.5-Instruct-like repetition penalty and top_k."""
    src = Path(smollm2_path)
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            (out / f.name).symlink_to(f.resolve())
        elif f.is_file():
            (out / f.name).write_bytes(f.read_bytes())
    tok = json.loads((out / "tokenizer.json").read_text())
    bos = next(t["content"] for t in tok["added_tokens"] if t["id"] == BOS_ID)
    tok["post_processor"] = {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {bos: {"id": bos, "ids": [BOS_ID], "tokens": [bos]}}}
    (out / "tokenizer.json").write_text(json.dumps(tok))
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    (out / "tokenizer_config.json").write_text(json.dumps({**cfg, "add_bos_token": True}))
    gen = json.loads((out / "generation_config.json").read_text())
    (out / "generation_config.json").write_text(json.dumps({**gen, **QWEN_LIKE_GENERATION}))
    return str(out)


@pytest.fixture(scope="session")
def served_path(smollm2_path, tmp_path_factory) -> str:
    return make_served_fixture(tmp_path_factory.mktemp("served") / "smollm2-bos-penalty", smollm2_path)


@pytest.fixture(scope="session")
def _session_server(served_path, tmp_path_factory):
    _needs_vllm()
    s = Server(served_path, tmp_path_factory.mktemp("vllm-server") / "server.log").start()
    yield s
    s.stop()


@pytest.fixture
def server(_session_server):
    """The session's server, up: restarted on its port if an earlier test killed it and failed before its restart."""
    if not _session_server.alive:
        _session_server.restart()
    return _session_server


@pytest.fixture(scope="session")
def tok(served_path):
    from evals.models import load_tokenizer

    t = load_tokenizer(served_path)
    assert t("x").input_ids[0] == BOS_ID  # the fixture's tokenizer adds BOS
    return t


def _engine(base_url: str, tok, **kw):
    from evals.engines.openai_engine import OpenAIGenerator, OpenAISettings

    batch_size = kw.pop("batch_size", 3)
    return OpenAIGenerator(OpenAISettings([base_url] if isinstance(base_url, str) else base_url, SERVED, **kw), tok,
                           batch_size=batch_size)


def _texts(groups) -> list[tuple]:
    return [(s.prompt_index, s.sample_index, s.text, s.num_tokens, s.finish_reason) for g in groups for s in g]


# ---------------------------------------------------------------------------------------------- against the server


def test_greedy_texts_equal_the_in_process_vllm_engine(server, served_path, tmp_path):
    """`tbrm eval` on a MATH500 slice (fixture data), fp32 greedy, against the server at its defaults on the fixture
    whose tokenizer adds BOS and whose generation config sets penalties: the texts are the in-process engine's, and
    config.json records the neutral settings sent. The base URL carries a password and a query-string key, the API
    key comes from the environment: none of them appears in any file the run writes or in its output. (The
    in-process engine runs in a process of its own: a vLLM engine torn down in the test process would tear down
    vLLM's process-wide parallel state under any other engine alive there.)"""
    common = ["eval", "--benchmarks", "math500", "--limit", "4", "--max-new-tokens", "48", "--dtype", "float32",
              "--no-progress"]
    run_cli(*common, "--model", served_path, "--engine", "vllm", "--kv-cache-gb", "0.5", "--out", str(tmp_path / "vllm"))
    secret = lambda: "".join(random.choices("abcdefghijklmnop", k=24))  # noqa: E731
    key, password, query_key = "sk-test-" + secret(), "pw-" + secret(), "qk-" + secret()
    url = f"http://tbrm:{password}@127.0.0.1:{server.port}/v1?api-key={query_key}"
    proc = run_cli(*common, "--model", SERVED, "--tokenizer", served_path, "--engine", "openai", "--base-url", url,
                   "--concurrency", "4", "--batch-size", "2", "--api-key-env", "TBRM_TEST_KEY",
                   "--out", str(tmp_path / "openai"), env={"TBRM_TEST_KEY": key})
    rows = lambda d: [(r["problem_id"], r["response"], r["num_tokens"], r["finish_reason"], r["outcome"])  # noqa: E731
                      for r in map(json.loads, (tmp_path / d / "samples" / "math500.jsonl").read_text().splitlines())]
    ours, theirs = sorted(rows("openai")), sorted(rows("vllm"))
    assert len(ours) == 4 and ours == theirs
    config = json.loads((tmp_path / "openai" / "config.json").read_text())
    engine = config["engine"]
    assert engine["name"] == "openai" and engine["api"] == "completions" and engine["api_key_env"] == "TBRM_TEST_KEY"
    assert engine["servers"][0]["models"] == [SERVED] and engine["servers"][0]["version"].startswith("0.")
    assert engine["servers"][0]["weights"].startswith(Path(served_path).name + " sha256:")
    assert engine["prompt"] == "token ids"
    sent = engine["request_settings"]
    assert {k: sent[k] for k in ("top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty",
                                 "ignore_eos", "skip_special_tokens")} == {
        "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
        "ignore_eos": False, "skip_special_tokens": True}
    assert sent["stop_token_ids"] == [2] and sent["max_tokens"].startswith("per benchmark")
    assert config["config"]["base_url"] == [server.base_url]
    assert config["template"]["chat_template_used"] is True  # the suite rendered the prompt
    summary = json.loads((tmp_path / "openai" / "summary.json").read_text())
    stats = summary["engine"]["requests"]
    assert stats["requests"] == 4 and stats["retried"] == 0 and stats["errors"] == 0 and stats["adapted"] == []
    assert stats["request_settings"] == {**sent, "temperature": 0.0, "top_p": 1.0, "max_tokens": 48, "stop": None,
                                         "seed": None}
    assert summary["benchmarks"]["math500"]["throughput"]["generated_tokens"] == sum(r[2] for r in ours)
    written = [f.read_text(errors="replace") for f in (tmp_path / "openai").rglob("*") if f.is_file()]
    for s in (key, password, query_key):
        assert not any(s in text for text in written + [proc.stdout, proc.stderr])


def test_the_server_sees_the_in_process_prompt_ids(server, served_path, tok):
    """The request's prompt is the token ids the in-process engines feed vLLM (`encode_prompt`: one BOS, the chat
    template's); the server reports it used exactly those. The same prompt as text, the way the engine sent it
    before, reaches the model with a second BOS, and a request without the neutral sampling settings samples
    otherwise (the fixture bites)."""
    import openai

    from evals.engines.base import SamplingParams, encode_prompt

    engine = _engine(server.base_url, tok)
    prompt = engine.render(PROBLEMS[0])
    want = encode_prompt(tok, prompt)
    assert want[0] == BOS_ID and want[1] != BOS_ID
    engine.plan([prompt], SamplingParams(max_new_tokens=4))
    body, extra = engine._body(SamplingParams(max_new_tokens=4), 0, 0)
    client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY")
    seen = client.completions.create(model=SERVED, prompt=engine.encode(prompt), **body,
                                     extra_body={**extra, "return_token_ids": True})
    assert seen.choices[0].prompt_token_ids == want and seen.usage.prompt_tokens == len(want)
    as_text = client.completions.create(model=SERVED, prompt=prompt, max_tokens=4, temperature=0,
                                        extra_body={"return_token_ids": True})
    assert as_text.choices[0].prompt_token_ids[:2] == [BOS_ID, BOS_ID]
    # and a greedy request that leaves the sampling settings to the server gets the generation config's penalty
    params = SamplingParams(max_new_tokens=64)
    body, extra = engine._body(params, 0, 0)
    ours = client.completions.create(model=SERVED, prompt=engine.encode(prompt), **body, extra_body=extra)
    bare = client.completions.create(model=SERVED, prompt=engine.encode(prompt), max_tokens=64, temperature=0)
    assert ours.choices[0].text != bare.choices[0].text


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
    with FaultProxy(server.root, ["429", "500", "reset", "stall", "slow", "abort"], stall_s=timeout + 60,
                    slow_s=1) as proxy:
        engine = _engine(proxy.base_url, tok, concurrency=2, request_timeout=timeout, max_retries=5,
                         breaker_cooldown=0.2)
        got = generate(engine, [engine.render(p) for p in PROBLEMS[:3]], params)
    assert _texts(got) == _texts(want)
    stats = engine.request_stats()
    assert (stats["requests"], stats["retried"]) == (3 + 5, 5)
    assert stats["retries"] == {"429": 1, "5xx": 1, "connection": 1, "timeout": 1, "abort": 1}
    # 3 failures in a row take it out of rotation; the request that tries it again stalls: out once more, then back
    assert stats["breaker_opened"] == {proxy.base_url: 2}
    assert [a for p, a in proxy.log if p == "/v1/completions"] == ["429", "500", "reset", "stall", "slow", "abort",
                                                                  "pass", "pass"]


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
    # a chat prompt past the server's context (chat planning cannot count its tokens): the real server's 400
    # becomes that sample's recorded error, and the other prompts are answered
    chat = _engine(server.base_url, None, api="chat", max_retries=2)
    long = "Repeat this. " * 3000  # ~9000 tokens, past the fixture's 8192
    got = generate(chat, [chat.render(PROBLEMS[0]), chat.render(long)], SamplingParams(max_new_tokens=64))
    assert got[0][0].finish_reason in ("stop", "length") and got[0][0].error is None and got[0][0].text
    bad = got[1][0]
    assert (bad.finish_reason, bad.text, bad.num_tokens) == ("error", "", 0)
    assert bad.error.startswith(f"server {server.base_url}: HTTP 400: ") and "context" in bad.error
    assert chat.requests == 2 and chat.errors == 1 and chat.request_stats()["retried"] == 0


def test_a_failing_server_is_taken_out_of_rotation_and_the_healthy_one_finishes(server, tok):
    """Two servers, one answering 503 to everything: its breaker opens after 3 failures, each failed request goes
    to the healthy server at once, and the samples equal a run on the healthy server alone."""
    from evals.engines.base import SamplingParams, generate

    params = SamplingParams(max_new_tokens=4)
    clean = _engine(server.base_url, tok, concurrency=2)
    prompts = [clean.render(p) for p in PROBLEMS]
    want = generate(clean, prompts, params)
    with FaultProxy(server.root, always="503") as bad, FaultProxy(server.root) as good:
        engine = _engine([bad.base_url, good.base_url], tok, concurrency=2, max_retries=0, breaker_cooldown=600)
        got = generate(engine, prompts, params)
    assert _texts(got) == _texts(want)
    stats = engine.request_stats()
    assert stats["breaker_opened"] == {bad.base_url: 1} and stats["failovers"] == stats["retries"]["5xx"] == 3
    assert len(bad.log) == 3 + 2 and [a for _, a in good.log if a == "pass"]  # 2 GETs at start-up, 3 POSTs


def test_the_run_stops_only_when_no_server_is_left_and_a_server_comes_back(server, tok):
    """Both servers failing: one error naming both. A server failing for a while then healthy again gets requests
    once its cool-down is over (the other server serves meanwhile)."""
    from evals.engines.base import SamplingParams, generate
    from evals.engines.openai_engine import EndpointError

    params = SamplingParams(max_new_tokens=4)
    with FaultProxy(server.root, always="503") as a, FaultProxy(server.root, always="500") as b:
        engine = _engine([a.base_url, b.base_url], tok, concurrency=1, max_retries=1)
        with pytest.raises(EndpointError) as stop:
            generate(engine, [engine.render(PROBLEMS[0])], params)
    message = str(stop.value)
    assert "still failing after 1 retries" in message and "rerun the same command to resume" in message
    assert "no other server left" in message and a.base_url in message and b.base_url in message
    assert "HTTP 503" in message and "HTTP 500" in message
    prompts = [engine.render(p) for p in PROBLEMS] * 3
    with FaultProxy(server.root, ["503"] * 3) as back, FaultProxy(server.root, slow_s=0.3,
                                                                  always="slow") as steady:
        engine = _engine([back.base_url, steady.base_url], tok, concurrency=1, breaker_cooldown=1.0)
        got = generate(engine, prompts, params)
    assert all(s.finish_reason in ("stop", "length") for g in got for s in g)
    posts = [a for p, a in back.log if p == "/v1/completions"]
    assert posts[:3] == ["503"] * 3 and "pass" in posts[3:]  # out of rotation, then back in it
    assert engine.request_stats()["breaker_opened"] == {back.base_url: 1}


def test_retry_after_is_honoured_capped_counted_and_bounded_by_the_time_budget(server, tok):
    from evals.engines.base import SamplingParams, generate
    from evals.engines.openai_engine import EndpointError

    params = SamplingParams(max_new_tokens=4)
    with FaultProxy(server.root, ["429:1", "503:1000"]) as proxy:
        engine = _engine(proxy.base_url, tok, concurrency=1, retry_after_cap=1.5, max_retries=2)
        t0 = time.monotonic()
        got = generate(engine, [engine.render(PROBLEMS[0])], params)
        waited = time.monotonic() - t0
    assert got[0][0].text and waited >= 1 + 1.5
    assert engine.request_stats()["retry_after"] == {"waits": 2, "seconds": 2.5}  # 1 s, then 1000 s capped at 1.5
    with FaultProxy(server.root, always="429:1") as proxy:
        engine = _engine(proxy.base_url, tok, concurrency=1, max_retries=100, retry_time_budget=3.5)
        t0 = time.monotonic()
        with pytest.raises(EndpointError, match=r"within 3.5 s of retries .*HTTP 429: injected 429"):
            generate(engine, [engine.render(PROBLEMS[0])], params)
    assert 2.5 <= time.monotonic() - t0 < 30 and engine.request_stats()["retry_after"]["waits"] >= 3


def test_hosted_reasoning_parameters_are_detected_from_the_400(server, tok):
    """A server that refuses max_tokens (use max_completion_tokens), a temperature and vLLM's extra settings, as
    OpenAI's reasoning models do: the run goes on without them and records what it changed; `reasoning_api`
    sends a reasoning model's parameters from the start."""
    from evals.engines.base import SamplingParams, generate

    params = SamplingParams(max_new_tokens=8)
    with FaultProxy(server.root, always="reasoning") as proxy:
        engine = _engine(proxy.base_url, None, api="chat", concurrency=1)
        got = generate(engine, [engine.render(p) for p in PROBLEMS[:2]], params)
        sent = engine.request_stats()["request_settings"]
        upfront = _engine(proxy.base_url, None, api="chat", concurrency=1, reasoning_api=True)
        generate(upfront, [upfront.render(PROBLEMS[0])], params)
    assert all(s.text for g in got for s in g)
    notes = engine.request_stats()["adapted"]
    assert notes[0].startswith("max_tokens sent as max_completion_tokens") and len(notes) >= 3
    assert sent["max_completion_tokens"] == 8 and "max_tokens" not in sent
    assert not {"temperature", "top_p", "top_k", "min_p", "repetition_penalty"} & set(sent)
    assert engine.request_stats()["retried"] == 0
    assert upfront.request_stats()["adapted"] == [] and upfront.requests == 1


def test_evaluate_inside_a_running_event_loop(server, tmp_path):
    """tbrm.evaluate(engine="openai") called from a coroutine, as in Jupyter or an async app."""
    import asyncio

    import tbrm

    async def main():
        return tbrm.evaluate(out=tmp_path / "loop", progress=False, print_table=False, engine="openai", model=SERVED,
                             benchmarks=["math500"], limit=2, max_new_tokens=8, base_url=[server.base_url])

    summary = asyncio.run(main())
    assert summary["benchmarks"]["math500"]["n_problems"] == 2


def test_resume_refuses_other_weights_or_another_tokenizer(server, served_path, tmp_path):
    """A run resumed against a server that now reports other weights under the same name, or with another
    tokenizer, is refused with the difference named."""
    import tbrm.api
    from evals.runner import RunMismatchError

    settings = dict(engine="openai", model=SERVED, benchmarks=["math500"], limit=2, max_new_tokens=4,
                    progress=False, print_table=False, out=tmp_path / "run", tokenizer=served_path)
    tbrm.api.evaluate(base_url=[server.base_url], **settings)
    with FaultProxy(server.root, root="/elsewhere/other-checkpoint") as proxy:
        with pytest.raises(RunMismatchError, match=r"model\.weights: on disk \['smollm2-bos-penalty sha256:\w+'\], "
                                                   r"now \['other-checkpoint sha256:\w+'\]"):
            tbrm.api.evaluate(base_url=[proxy.base_url], **settings)
    with pytest.raises(RunMismatchError, match=r"model\.tokenizer: on disk '\w+', now '\w+'") as other:
        tbrm.api.evaluate(base_url=[server.base_url], **{**settings, "tokenizer": "smollm2"})
    assert "model.weights" not in str(other.value) and "model.chat_template" not in str(other.value)
    again = tbrm.api.evaluate(base_url=[server.base_url], **settings)  # unchanged: resumes
    assert again["benchmarks"]["math500"]["n_problems"] == 2


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
    assert shown_url("https://h.example/v1?api-key=s3cret&x=1") == "https://h.example/v1"
    with pytest.raises(ValueError) as bad:
        OpenAISettings(["ftp://u:s3cret@h/v1?api-key=k3y"], SERVED)
    assert "s3cret" not in str(bad.value) and "k3y" not in str(bad.value)


def test_retry_after_headers_and_refused_settings():
    from evals.engines.openai_engine import refused_setting, retry_after_seconds

    assert retry_after_seconds({"retry-after": "20"}) == 20.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None
    body = {"max_tokens": 8, "temperature": 0.0}
    assert refused_setting("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                           "'max_completion_tokens' instead.", body, {}) == "max_tokens"
    assert refused_setting("Unsupported value: 'temperature' does not support 0 with this model.", body,
                           {}) == "temperature"
    assert refused_setting("Unrecognized request argument supplied: top_k", body, {"top_k": 0}) == "top_k"
    assert refused_setting("Unrecognized request argument supplied: top_k", body, {}) is None  # not sent
    assert refused_setting("This model's maximum context length is 8192 tokens", body, {}) is None


def test_connect_and_read_timeouts_are_separate():
    """A request waiting for its answer (in a busy server's queue) has no time limit by default; reaching a server
    has one."""
    from evals.engines.openai_engine import OpenAIGenerator, OpenAISettings

    engine = OpenAIGenerator.__new__(OpenAIGenerator)
    engine.settings = OpenAISettings(["http://h:1/v1"], SERVED)
    t = engine._timeout()
    assert (t.connect, t.read, t.pool) == (10.0, None, None)
    engine.settings = OpenAISettings(["http://h:1/v1"], SERVED, request_timeout=30, connect_timeout=2)
    t = engine._timeout()
    assert (t.connect, t.read) == (2, 30)
