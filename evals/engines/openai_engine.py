"""The OpenAI-compatible endpoint engine behind the `Generator` protocol (`tbrm eval --engine openai`).

The suite stays a client: a vLLM or SGLang server (tensor- and data-parallel over a node or several), a shared
inference cluster or a hosted model generates, and this module sends one request per sample with the official
`openai` async client, `concurrency` of them in flight spread over one or more servers (`base_urls`).

- API: `completions` sends the prompt this suite renders (the in-process engines' prompt, byte for byte; it needs
  the model's tokenizer for the chat template); `chat` sends the template's messages and leaves the chat template
  to the server.
- Sampling: temperature, top_p, max_tokens and stop map onto the request; each request carries the per-sequence
  seed of the vLLM engine (`evals.seeding.stable_seed`), so samples repeat where the server honours seeds
  and do not depend on batching, servers or concurrency.
- Batches: the same deterministic plan of batches as the other engines; a batch is handed to the runner (and
  written) as soon as all its requests are back, while requests of later batches stay in flight. A killed run
  resumes at the batches not on disk.
- Throughput: tokens are the servers' reported `usage.completion_tokens`; a batch's seconds are the wall time
  since the previous batch came back, so the seconds add up to the generation wall time.
- Failures: 429, 5xx, connection errors (refused, reset) and timeouts are retried up to `max_retries` times with
  exponential backoff and full jitter (client-side retries of the `openai` client are off, so each one is counted
  here and reported in summary.json); a request still failing stops the run with one `EndpointError` naming the
  server and the status (batches already written stay); any other 4xx fails at once with the server's message.
- Reasoning models: the graded text is the final answer; a server's separate `reasoning_content` (chat API) or
  the block up to `strip_thinking` (e.g. ``</think>``) is kept apart in the sample's `reasoning`.
- The API key is read from the environment variable `api_key_env` names and is never written anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from evals.engines.base import EngineError, GeneratorBase, Sample, SamplingParams, WorkItem
from evals.seeding import stable_seed
from evals.engines.vllm_plan import plan_batches

APIS = ("completions", "chat")
NO_KEY = "EMPTY"  # what a local vLLM/SGLang server without --api-key accepts (the client insists on some key)
BACKOFF_BASE_S = 0.5  # first retry waits up to this long; each further retry doubles it (full jitter)
BACKOFF_CAP_S = 30.0
RETRY_KINDS = ("429", "5xx", "connection", "timeout")


class EndpointError(EngineError):
    """A server refused, failed or could not be reached; the message names the server and its status."""


@dataclass
class OpenAISettings:
    """How to reach the servers. None of these changes what is sampled, except `api` and `strip_thinking`."""

    base_urls: list[str]
    model: str  # the served model name
    api: str = "completions"
    api_key_env: str | None = None
    concurrency: int = 64
    request_timeout: float = 600.0
    max_retries: int = 5
    strip_thinking: str | None = None

    def __post_init__(self):
        if not self.base_urls:
            raise ValueError("--engine openai needs at least one --base-url (e.g. http://localhost:8000/v1)")
        if self.api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, got {self.api!r}")
        for name, value, low in (("concurrency", self.concurrency, 1), ("max_retries", self.max_retries, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be > 0 seconds, got {self.request_timeout!r}")
        for url in self.base_urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ValueError(f"--base-url {url!r} is not an http(s) URL such as http://localhost:8000/v1")


@dataclass
class ServedSample(Sample):
    """A sample from a server: no token ids come back, so its length is the server's `usage.completion_tokens`."""

    completion_tokens: int = 0
    reasoning: str | None = None  # the thinking kept apart from the graded text (None when there was none)

    @property
    def num_tokens(self) -> int:
        return self.completion_tokens


def shown_url(url: str) -> str:
    """A base URL as messages and files show it: without user:password@ (a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def backoff_seconds(attempt: int, rng: random.Random, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)] before retry `attempt` (0 =
    the first retry). The jitter spreads retries of many concurrent requests apart instead of in lock-step."""
    return rng.uniform(0.0, min(cap, base * 2 ** attempt))


def split_thinking(text: str, token: str | None) -> tuple[str, str | None]:
    """(answer, reasoning): the text after the last `token` (left-stripped) and what came before it, as
    lm-evaluation-harness's think_end_token does; text without the token is all answer."""
    if not token or token not in text:
        return text, None
    head, _, tail = text.rpartition(token)
    return tail.lstrip(), head + token


def chat_request_messages(problem_text: str, template: str) -> list[dict[str, str]]:
    """The chat API's messages: the template's system/user turns, or the plain/raw prompt as one user turn."""
    from evals.prompts import CHAT_TEMPLATES, chat_messages, render_prompt

    if template in CHAT_TEMPLATES:
        return chat_messages(problem_text, template)
    return [{"role": "user", "content": render_prompt(problem_text, template, None)}]


def resolve_served(model: str, tokenizer: str | None, api: str | None):
    """(tokenizer folder or hub id or None, loaded tokenizer or None, api) for a served `model`.

    The tokenizer is `tokenizer` when given (it must load), else `model` when that names a bundled model, a local
    folder or a hub id whose tokenizer loads. `api` None means completions where a tokenizer is available, else
    chat; completions without a tokenizer is refused (it could not render the prompt)."""
    from evals.models import ModelNotAvailableError, load_tokenizer, resolve_model

    if api is not None and api not in APIS:
        raise ValueError(f"--api must be one of {', '.join(APIS)}, got {api!r}")
    path = tok = None
    if tokenizer:
        path = resolve_model(tokenizer)
        tok = load_tokenizer(path)
    elif api != "chat":
        try:
            path = resolve_model(model)
            tok = load_tokenizer(path)
        except (ModelNotAvailableError, OSError, ValueError) as e:
            if api == "completions":
                raise ValueError(f"--api completions needs the model's tokenizer and --model {model!r} does not "
                                 f"give one ({str(e).splitlines()[0]}); pass --tokenizer NAME_OR_DIR") from None
            path = tok = None
            print(f"engine openai: no tokenizer for {model!r}, so --api chat (the server applies its chat "
                  f"template); pass --tokenizer to send this suite's rendered prompts", flush=True)
    return path, tok, api or ("completions" if tok is not None else "chat")


def served_template_record(template: str) -> dict:
    """`evals.prompts.template_record`'s fields for the chat API: the messages are ours, the chat template the
    server's (not known here)."""
    from evals.prompts import CHAT_TEMPLATES, PLACEHOLDER_PROBLEM, QWEN_MATH_INSTRUCTION

    return {"name": template, "effective": template, "fallback": None,
            "instruction": None if template == "raw" else QWEN_MATH_INSTRUCTION,
            "chat_template_used": "server" if template in CHAT_TEMPLATES else False, "chat_template_sha256": None,
            "tokenizer": None, "example_problem": PLACEHOLDER_PROBLEM,
            "example": chat_request_messages(PLACEHOLDER_PROBLEM, template)}


def classify_failure(exc: BaseException) -> tuple[str | None, str]:
    """(retry kind or None when the failure is final, the status as a message shows it)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout", "timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        return "connection", f"connection failed ({type(cause).__name__ if cause else 'no response'}: {cause or exc})"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        shown = f"HTTP {status}: {_server_message(exc)}"
        if status == 429:
            return "429", shown
        if status >= 500:
            return "5xx", shown
        return None, shown
    return None, f"{type(exc).__name__}: {exc}"


def _server_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:500]
    try:
        return exc.response.text[:500] or exc.message
    except Exception:
        return str(getattr(exc, "message", exc))[:500]


class OpenAIGenerator(GeneratorBase):
    """Samples from OpenAI-compatible servers. `tokenizer` (optional) renders completions prompts and checks their
    length against the server's context; it is not needed for the chat API."""

    def __init__(self, settings: OpenAISettings, tokenizer=None, batch_size: int = 256, template: str = "qwen-math"):
        self.settings = s = settings
        self.tokenizer = tokenizer
        self.template = template
        self.batch_size = int(batch_size)
        if s.api == "completions" and tokenizer is None:
            raise ValueError("--api completions renders the prompt with the model's chat template and needs its "
                             "tokenizer: pass --tokenizer NAME_OR_DIR, or use --api chat")
        if s.api_key_env:
            key = os.environ.get(s.api_key_env)
            if not key:
                raise ValueError(f"--api-key-env {s.api_key_env}: that environment variable is not set or empty")
        self._key = os.environ.get(s.api_key_env) if s.api_key_env else NO_KEY
        self.retries = {k: 0 for k in RETRY_KINDS}
        self.requests = 0
        self.servers = asyncio.run(self._probe_servers())  # fails fast: unreachable URL, wrong model name
        lens = [x["max_model_len"] for x in self.servers if isinstance(x.get("max_model_len"), int)]
        self.max_model_len = min(lens) if lens else None

    # ------------------------------------------------------------------ start-up: what the servers serve
    def _client(self, url: str, http_client=None):
        import openai

        return openai.AsyncOpenAI(base_url=url, api_key=self._key, max_retries=0, timeout=self.settings.request_timeout,
                                  http_client=http_client)

    async def _probe_servers(self) -> list[dict]:
        return list(await asyncio.gather(*(self._probe(url) for url in self.settings.base_urls)))

    async def _probe(self, url: str) -> dict:
        """GET /v1/models (and vLLM's /version): the served names, the server's version, its context length."""
        httpx = _httpx()
        shown = shown_url(url)
        async with self._client(url) as client:
            try:
                raw = await client.models.with_raw_response.list()
            except Exception as e:
                kind, status = classify_failure(e)
                raise EndpointError(f"server {shown}: GET /models failed: {status}") from None
            models = raw.parse().data
            root = urlunsplit((*urlsplit(url)[:2], "", "", ""))
            version = None
            try:
                r = await client.get(f"{root}/version", cast_to=httpx.Response)
                version = r.json().get("version") if r.status_code == 200 else None
            except Exception:  # not every server has vLLM's /version; the response header names it otherwise
                pass
        ids = [m.id for m in models]
        if self.settings.model not in ids:
            raise EndpointError(f"server {shown} does not serve model {self.settings.model!r}; it serves "
                                f"{', '.join(map(repr, ids)) or 'nothing'} (pass one of them as --model)")
        card = next(m for m in models if m.id == self.settings.model)
        extra = card.model_extra or {}
        return {"base_url": shown, "models": ids, "owned_by": card.owned_by, "max_model_len": extra.get("max_model_len"),
                "version": version, "server_header": raw.headers.get("server")}

    def engine_record(self) -> dict:
        """What config.json and summary.json record: servers, their model names and versions (never the key)."""
        s = self.settings
        return {"name": "openai", "api": s.api, "model": s.model, "servers": self.servers,
                "client": f"openai=={_openai_version()}", "concurrency": s.concurrency, "max_retries": s.max_retries,
                "request_timeout": s.request_timeout, "strip_thinking": s.strip_thinking,
                "api_key_env": s.api_key_env}

    def request_stats(self) -> dict:
        return {"requests": self.requests, "retries": dict(self.retries), "retried": sum(self.retries.values())}

    # ------------------------------------------------------------------ the Generator protocol
    def render(self, problem_text: str, template: str | None = None):
        """The prompt of one problem as the request carries it: rendered text (completions) or messages (chat).
        `template` is the engine's own (`template=` at construction); the argument is the protocol's."""
        if self.settings.api == "chat":
            return chat_request_messages(problem_text, self.template)
        from evals.prompts import render_prompt

        return render_prompt(problem_text, self.template, self.tokenizer)

    def plan(self, prompts: Sequence, params: SamplingParams) -> list[list[WorkItem]]:
        if self.tokenizer is not None and self.settings.api == "completions" and self.max_model_len:
            from evals.engines.base import encode_prompt

            lengths = [len(encode_prompt(self.tokenizer, p)) for p in prompts]
            return plan_batches(lengths, params, self.max_model_len, self.batch_size)
        return plan_batches([0] * len(prompts), params, 1 << 62, self.batch_size)

    def run_batch(self, prompts: Sequence, batch: list[WorkItem], batch_index: int,
                  params: SamplingParams) -> list[Sample]:
        for _, samples in self.run_batches(prompts, [(batch_index, batch)], params):
            return samples
        return []

    def run_batches(self, prompts: Sequence, batches: Sequence[tuple[int, list[WorkItem]]],
                    params: SamplingParams) -> Iterator[tuple[int, list[Sample]]]:
        """(batch index, samples) as each batch's requests are all back, with `concurrency` requests in flight
        across batches. The requests run on an event loop in a thread of their own, so they keep going while the
        caller grades and writes a batch; closing this iterator (or an error) cancels what is in flight."""
        out: queue.Queue = queue.Queue()
        box: dict[str, Any] = {}

        def work():
            loop = asyncio.new_event_loop()
            box["loop"] = loop
            try:
                box["task"] = loop.create_task(self._run_all(prompts, batches, params, out))
                loop.run_until_complete(box["task"])
                out.put(("done", None))
            except asyncio.CancelledError:
                out.put(("done", None))
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                out.put(("error", e))
            finally:
                loop.close()

        thread = threading.Thread(target=work, name="openai-requests", daemon=True)
        thread.start()
        try:
            while True:
                kind, value = out.get()
                if kind == "batch":
                    bi, samples, _ = value
                    yield bi, samples
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            loop, task = box.get("loop"), box.get("task")
            if loop is not None and task is not None and not task.done():
                with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing left to cancel
                    loop.call_soon_threadsafe(task.cancel)
            thread.join(timeout=30)

    # ------------------------------------------------------------------ requests
    async def _run_all(self, prompts, batches, params: SamplingParams, out: queue.Queue) -> None:
        import openai

        s = self.settings
        limits = _httpx().Limits(max_connections=s.concurrency, max_keepalive_connections=s.concurrency)
        https = [openai.DefaultAsyncHttpxClient(limits=limits, timeout=s.request_timeout) for _ in s.base_urls]
        clients = [self._client(url, h) for url, h in zip(s.base_urls, https)]
        in_flight = [0] * len(clients)
        gate = asyncio.Semaphore(s.concurrency)
        rng = random.Random()  # backoff jitter only: never touches what is sampled
        remaining = {bi: len(batch) for bi, batch in batches}
        got: dict[int, list[ServedSample]] = {bi: [] for bi, _ in batches}
        order = {bi: [tuple(it) for it in batch] for bi, batch in batches}
        last = [time.perf_counter()]

        async def one(bi: int, pi: int, si: int) -> None:
            async with gate:
                sample = await self._request(clients, in_flight, prompts[pi], pi, si, params, rng)
            got[bi].append(sample)
            remaining[bi] -= 1
            if remaining[bi] == 0:
                now = time.perf_counter()
                seconds, last[0] = now - last[0], now
                rank = {it: k for k, it in enumerate(order[bi])}
                samples = sorted(got.pop(bi), key=lambda x: rank[(x.prompt_index, x.sample_index)])
                for x in samples:
                    x.seconds = seconds
                out.put(("batch", (bi, samples, seconds)))

        tasks = [asyncio.ensure_future(one(bi, pi, si)) for bi, batch in batches for pi, si in batch]
        try:
            if tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
                if failed:
                    raise failed[0].exception()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in clients:  # closes the HTTP client it was given; a failing close must not hide the run's error
                with contextlib.suppress(Exception):
                    await c.close()

    async def _request(self, clients, in_flight: list[int], prompt, pi: int, si: int, params: SamplingParams,
                       rng: random.Random) -> ServedSample:
        s = self.settings
        body = dict(model=s.model, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
                    n=1, stop=list(params.stop) or None,
                    seed=None if params.greedy else stable_seed(params.seed, pi, si))
        for attempt in range(s.max_retries + 1):
            k = min(range(len(clients)), key=lambda j: in_flight[j])  # the least busy server
            in_flight[k] += 1
            self.requests += 1
            try:
                if s.api == "chat":
                    resp = await clients[k].chat.completions.create(messages=prompt, **body)
                else:
                    resp = await clients[k].completions.create(prompt=prompt, **body)
            except Exception as e:
                kind, status = classify_failure(e)
                if kind is None:
                    raise EndpointError(f"server {shown_url(s.base_urls[k])} refused a request (prompt {pi}, sample "
                                        f"{si}): {status}") from None
                if attempt == s.max_retries:
                    raise EndpointError(
                        f"server {shown_url(s.base_urls[k])} still failing after {s.max_retries} retries (prompt {pi}, "
                        f"sample {si}): {status}; finished batches are saved, rerun the same command to resume"
                    ) from None
                self.retries[kind] += 1
                await asyncio.sleep(backoff_seconds(attempt, rng))
                continue
            finally:
                in_flight[k] -= 1
            return self._sample(resp, pi, si, shown_url(s.base_urls[k]))
        raise AssertionError("unreachable")

    def _sample(self, resp, pi: int, si: int, server: str) -> ServedSample:
        choice = resp.choices[0]
        if choice.finish_reason not in ("stop", "length"):
            raise EndpointError(f"server {server} returned finish_reason={choice.finish_reason!r} for prompt {pi} "
                                f"sample {si}; only 'stop' and 'length' are complete answers")
        if self.settings.api == "chat":
            msg = choice.message
            extra = msg.model_extra or {}
            reasoning = extra.get("reasoning_content") or extra.get("reasoning")
            text = msg.content or ""
        else:
            reasoning, text = None, choice.text
        text, thought = split_thinking(text, self.settings.strip_thinking)
        if thought is not None:
            reasoning = thought if reasoning is None else reasoning + thought
        if resp.usage is None:
            raise EndpointError(f"server {server} reported no token usage for prompt {pi} sample {si}; the engine "
                                f"counts tokens from it")
        return ServedSample(pi, si, text, [], [], choice.finish_reason, 0.0,
                            completion_tokens=int(resp.usage.completion_tokens), reasoning=reasoning)


def _httpx():
    """The HTTP library the installed `openai` client is built on (httpx, or its successor in newer releases)."""
    import importlib

    import openai

    base = next(c for c in openai.DefaultAsyncHttpxClient.__mro__[1:] if c.__name__ == "AsyncClient")
    return importlib.import_module(base.__module__.split(".")[0])


def _openai_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("openai")
    except metadata.PackageNotFoundError:
        return None
