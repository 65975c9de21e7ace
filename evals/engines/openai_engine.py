"""The OpenAI-compatible endpoint engine behind the `Generator` protocol (`tbrm eval --engine openai`).

The suite stays a client: a vLLM or SGLang server (tensor- and data-parallel over a node or several), a shared
inference cluster or a hosted model generates, and this module sends one request per sample with the official
`openai` async client, `concurrency` of them in flight spread over one or more servers (`base_urls`).

- Prompts: `completions` sends the token ids of the prompt this suite renders and encodes (`encode_prompt`, the
  in-process engines' ids exactly: a server given text would add its tokenizer's BOS a second time where the chat
  template already starts with it); `chat` sends the template's messages and leaves the chat template to the server.
- Sampling: every setting that decides a sample is sent, with neutral values for those the suite does not use
  (`request_settings`: top_k off, min_p 0, no repetition/presence/frequency penalty, the model's EOS ids as stop
  ids), so a server's own defaults (vLLM's `--generation-config auto` reads the checkpoint's
  generation_config.json) cannot change what is sampled. Each request carries the per-sequence seed of the vLLM
  engine (`evals.seeding.stable_seed`): samples do not depend on batching, servers or concurrency. A server that
  refuses a setting with a 400 naming it (a hosted API: no `top_k`; reasoning models: `max_completion_tokens`
  instead of `max_tokens`, no temperature) gets requests without it from then on, and summary.json records
  what was sent (`reasoning_api` starts with a reasoning model's parameters).
- Batches: the same deterministic plan of batches as the other engines; a batch is handed to the runner (and
  written) as soon as all its requests are back, while requests of later batches stay in flight. A killed run
  resumes at the batches not on disk.
- Throughput: tokens are the servers' reported `usage.completion_tokens`; a batch's seconds are the wall time
  since the previous batch came back, so the seconds add up to the generation wall time.
- Failures: 429, 5xx, connection errors, read timeouts and vLLM's `finish_reason="abort"` are retried. A request
  that fails on one server goes to another healthy one at once; a server failing `breaker_failures` times in a
  row is taken out of rotation (circuit breaker) and tried again with one request after a cool-down that doubles
  each time. With no other server, retries back off exponentially with full jitter, or as long as a 429/503's
  `Retry-After` says (capped at `retry_after_cap`), until `max_retries` retries or `retry_time_budget` seconds
  are spent; then the run stops with one `EndpointError` naming the server and the status (batches already
  written stay). Client-side retries of the `openai` client are off, so each retry is counted here and reported
  in summary.json. A prompt longer than the server's context is that sample's recorded `error` (an empty answer,
  finish reason "error", counted in the summary); any other 4xx stops the run with the server's message.
- Timeouts: `connect_timeout` bounds reaching a server; `request_timeout` (default: none) bounds the wait for an
  answer. Without it a request waiting in a busy server's queue is never cut off and restarted from scratch; a
  server that dies resets its connections, which are retried elsewhere.
- Reasoning models: the graded text is the final answer; a server's separate `reasoning_content` (chat API) or
  the block up to `strip_thinking` (e.g. ``</think>``) is kept apart in the sample's `reasoning`.
- Identity: what the servers report about their weights (vLLM's `/v1/models` `root`, kept as its last path part
  and a hash: no machine path in a file) and the tokenizer and chat template the prompts were rendered with are
  part of the run's identity, so a resumed run refuses a server that now serves other weights.
- Secrets: the API key is read from the environment variable `api_key_env` names; user:password@ and the query
  string of a base URL (e.g. `?api-key=...`) are sent but never written or shown (files and messages carry
  `shown_url`).
- Works from inside a running event loop (Jupyter, async apps): its own event loop runs in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import json
import os
import queue
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from evals.engines.base import EngineError, GeneratorBase, Sample, SamplingParams, WorkItem
from evals.seeding import stable_seed
from evals.engines.vllm_plan import plan_batches

APIS = ("completions", "chat")
NO_KEY = "EMPTY"  # what a local vLLM/SGLang server without --api-key accepts (the client insists on some key)
BACKOFF_BASE_S = 0.5  # first retry waits up to this long; each further retry doubles it (full jitter)
BACKOFF_CAP_S = 30.0
RETRY_KINDS = ("429", "5xx", "connection", "timeout", "abort")
# Settings a server may refuse by name with a 400 (a hosted API knows no top_k; reasoning models take no
# temperature): requests go on without them. Their values are neutral, so leaving them out changes nothing where
# the server's own defaults are neutral too; summary.json records what was sent.
DROPPABLE = ("top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "stop_token_ids",
             "ignore_eos", "skip_special_tokens", "seed", "temperature", "top_p")
VLLM_EXTRAS = ("top_k", "min_p", "repetition_penalty", "stop_token_ids", "ignore_eos", "skip_special_tokens")
# A 400 that says the prompt does not fit the context: that sample's error, not the run's end.
TOO_LONG = re.compile(r"context length|context window|max_model_len|maximum model length|prompt is too long|"
                      r"too many tokens|input is too long|maximum context", re.IGNORECASE)


class EndpointError(EngineError):
    """A server refused, failed or could not be reached; the message names the server and its status."""


@dataclass
class OpenAISettings:
    """How to reach the servers. None of these changes what is sampled, except `api`, `strip_thinking` and
    `reasoning_api` (which sends no temperature: a reasoning model samples at its own)."""

    base_urls: list[str]
    model: str  # the served model name
    api: str = "completions"
    api_key_env: str | None = None
    concurrency: int = 64
    request_timeout: float | None = None  # seconds to wait for an answer (None: as long as the server holds it)
    connect_timeout: float = 10.0
    max_retries: int = 5
    retry_time_budget: float = 1800.0  # seconds one request may spend waiting to be retried, in all
    retry_after_cap: float = 300.0  # longest wait a server's Retry-After header is honoured for
    breaker_failures: int = 3  # failures in a row that take a server out of rotation
    breaker_cooldown: float = 5.0  # seconds out of rotation the first time (doubling, at most 64x)
    strip_thinking: str | None = None
    reasoning_api: bool = False  # send max_completion_tokens and no temperature/top_p (hosted reasoning models)

    def __post_init__(self):
        if not self.base_urls:
            raise ValueError("--engine openai needs at least one --base-url (e.g. http://localhost:8000/v1)")
        if self.api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, got {self.api!r}")
        for name, low in (("concurrency", 1), ("max_retries", 0), ("breaker_failures", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("request_timeout", "connect_timeout", "retry_time_budget", "retry_after_cap", "breaker_cooldown"):
            value = getattr(self, name)
            if value is None and name == "request_timeout":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
        for url in self.base_urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ValueError(f"--base-url {shown_url(url)!r} is not an http(s) URL such as "
                                 f"http://localhost:8000/v1")


@dataclass
class ServedSample(Sample):
    """A sample from a server: no token ids come back, so its length is the server's `usage.completion_tokens`.
    `error`: why there is no answer (a prompt the server's context cannot hold); the text is then empty."""

    completion_tokens: int = 0
    reasoning: str | None = None  # the thinking kept apart from the graded text (None when there was none)
    error: str | None = None

    @property
    def num_tokens(self) -> int:
        return self.completion_tokens


def shown_url(url: str) -> str:
    """A base URL as messages and files show it: without user:password@ and without the query (secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def url_secrets(url: str) -> list[str]:
    """The parts of a base URL that must never reach a file or a message: its password, user and query values."""
    parts = urlsplit(url)
    found = [parts.password, parts.username] + [v for _, v in parse_qsl(parts.query)]
    return [x for x in found if x and len(x) >= 3]


def backoff_seconds(attempt: int, rng: random.Random, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)] before retry `attempt` (0 =
    the first retry). The jitter spreads retries of many concurrent requests apart instead of in lock-step."""
    return rng.uniform(0.0, min(cap, base * 2 ** attempt))


def retry_after_seconds(headers, now: float | None = None) -> float | None:
    """The wait a response's `Retry-After` (seconds or an HTTP date) or `retry-after-ms` header asks for."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    with contextlib.suppress(TypeError, ValueError):
        if ms is not None:
            return max(0.0, float(ms) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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


def served_eos_ids(model_path: str | None, tokenizer) -> list[int] | None:
    """The ids that end an answer in the in-process engines (the tokenizer's EOS and the model folder's
    generation-config EOS ids), sent as stop ids; None without a tokenizer (the server's own then)."""
    if tokenizer is None:
        return None
    from evals.engines.base import eos_token_ids
    from evals.engines.vllm_engine import _generation_eos

    return sorted(eos_token_ids(tokenizer, _generation_eos(model_path) if model_path else None))


def served_template_record(template: str) -> dict:
    """`evals.prompts.template_record`'s fields for the chat API: the messages are ours, the chat template the
    server's (not known here)."""
    from evals.prompts import CHAT_TEMPLATES, PLACEHOLDER_PROBLEM, QWEN_MATH_INSTRUCTION

    return {"name": template, "effective": template, "fallback": None,
            "instruction": None if template == "raw" else QWEN_MATH_INSTRUCTION,
            "chat_template_used": "server" if template in CHAT_TEMPLATES else False, "chat_template_sha256": None,
            "tokenizer": None, "example_problem": PLACEHOLDER_PROBLEM,
            "example": chat_request_messages(PLACEHOLDER_PROBLEM, template)}


def tokenizer_digest(tokenizer) -> str:
    """sha256 of what decides a tokenizer's ids: its vocabulary, special tokens and whether it adds any itself."""
    vocab = sorted(tokenizer.get_vocab().items())
    probe = tokenizer("x y").input_ids
    blob = json.dumps([vocab, sorted(map(str, tokenizer.all_special_tokens)), probe], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def weights_label(root: str | None) -> str | None:
    """A server's `root` (vLLM: the weights' folder or hub id) as a file may hold it: the last path part and a
    hash of the whole, so other weights under the same name differ without a machine path being written."""
    if not root:
        return None
    return f"{PurePosixPath(root).name or root} sha256:{hashlib.sha256(root.encode()).hexdigest()[:16]}"


def classify_failure(exc: BaseException) -> tuple[str | None, str]:
    """(retry kind or None when the failure is final, the status as a message shows it)."""
    import openai

    if isinstance(exc, _Aborted):
        return "abort", str(exc)
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", "timed out waiting for the answer"
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


class _Aborted(Exception):
    """A server answered with finish_reason "abort" (vLLM: the request was cancelled or preempted away)."""


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


def refused_setting(message: str, body: dict, extra: dict) -> str | None:
    """The setting a 400 refuses by name, when it is one the engine may leave out or rename; else None."""
    low = message.lower()
    if "max_tokens" in low and "max_completion_tokens" in low and "max_tokens" in body:
        return "max_tokens"
    if not re.search(r"unsupported|unrecognized|unknown|not support|not allowed|extra|invalid|only the default", low):
        return None
    for name in DROPPABLE:
        if (name in body or name in extra) and re.search(rf"(?<![a-z_]){name}(?![a-z_])", low):
            return name
    return None


class _Server:
    """One base URL: its client, requests in flight, and its circuit breaker."""

    def __init__(self, url: str, client):
        self.url, self.shown, self.client = url, shown_url(url), client
        self.in_flight = 0
        self.failures = 0  # in a row
        self.opened = 0  # times taken out of rotation
        self.open_until = 0.0  # out of rotation until then (monotonic seconds)
        self.not_before = 0.0  # a Retry-After asked for no request before then
        self.probing = False  # back from a cool-down: one request at a time until one succeeds
        self.status = ""  # the latest failure, as messages show it

    def usable(self, now: float, threshold: int) -> bool:
        if now < self.not_before:
            return False
        if self.failures >= threshold:
            return now >= self.open_until and not self.probing
        return True

    def ready_at(self, threshold: int) -> float:
        return max(self.not_before, self.open_until if self.failures >= threshold else 0.0)


def _run_sync(make_coro):
    """Run a coroutine to completion from synchronous code, also where an event loop already runs in this thread
    (Jupyter, an async app): on a fresh loop in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    box: dict[str, Any] = {}

    def work():
        try:
            box["value"] = asyncio.run(make_coro())
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=work, name="openai-probe", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class OpenAIGenerator(GeneratorBase):
    """Samples from OpenAI-compatible servers. `tokenizer` (optional) renders and encodes completions prompts and
    checks their length against the server's context; it is not needed for the chat API. `eos_ids`: the token ids
    that end an answer (default: the tokenizer's EOS), sent as stop ids so the server stops where the in-process
    engines do."""

    def __init__(self, settings: OpenAISettings, tokenizer=None, batch_size: int = 256, template: str = "qwen-math",
                 eos_ids: Sequence[int] | None = None):
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
        self._secrets = sorted({x for u in s.base_urls for x in url_secrets(u)}, key=len, reverse=True)
        if eos_ids is None and tokenizer is not None and tokenizer.eos_token_id is not None:
            eos_ids = [tokenizer.eos_token_id]
        self.eos_ids = sorted({int(x) for x in eos_ids or []})
        self.retries = {k: 0 for k in RETRY_KINDS}
        self.requests = 0
        self.failovers = 0
        self.retry_after = {"waits": 0, "seconds": 0.0}
        self.errors = 0  # samples recorded as errors (prompts longer than the context)
        self.adapted: list[str] = []  # settings left out or renamed after a server refused them
        self._dropped: set[str] = set()
        self._max_tokens_name = "max_tokens"
        if s.reasoning_api:
            self._max_tokens_name = "max_completion_tokens"
            self._dropped |= {"temperature", "top_p", *VLLM_EXTRAS}
        self._planned: dict[str, list[int]] = {}
        self._last_params: SamplingParams | None = None
        self._too_long: dict[int, str] = {}
        self.breakers: dict[str, int] = {}  # server -> times taken out of rotation
        self.servers = _run_sync(self._probe_servers)  # fails fast: unreachable URL, wrong model name
        lens = [x["max_model_len"] for x in self.servers if isinstance(x.get("max_model_len"), int)]
        self.max_model_len = min(lens) if lens else None

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # ------------------------------------------------------------------ start-up: what the servers serve
    def _client(self, url: str, http_client=None):
        import openai

        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))  # e.g. ?api-key=...: sent with every request, never shown
        base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return openai.AsyncOpenAI(base_url=base, api_key=self._key, max_retries=0, timeout=self._timeout(),
                                  default_query=query or None, http_client=http_client)

    def _timeout(self):
        s = self.settings
        return _httpx().Timeout(s.request_timeout, connect=s.connect_timeout, write=max(60.0, s.connect_timeout),
                                pool=None)

    async def _probe_servers(self) -> list[dict]:
        return list(await asyncio.gather(*(self._probe(url) for url in self.settings.base_urls)))

    async def _probe(self, url: str) -> dict:
        """GET /v1/models (and vLLM's /version): the served names, the weights' root, the server's version, its
        context length."""
        httpx = _httpx()
        shown = shown_url(url)
        async with self._client(url) as client:
            try:
                raw = await client.models.with_raw_response.list()
            except Exception as e:
                kind, status = classify_failure(e)
                raise EndpointError(self._scrub(f"server {shown}: GET /models failed: {status}")) from None
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
                "weights": weights_label(extra.get("root")), "version": version,
                "server_header": raw.headers.get("server")}

    def identity(self) -> dict:
        """What a resumed run must find unchanged: the weights the servers report, the tokenizer and chat template
        the prompts are rendered and encoded with (None where the server's own are used: --api chat)."""
        tok = self.tokenizer if self.settings.api == "completions" else None
        template = getattr(tok, "chat_template", None) if tok is not None else None
        return {"weights": sorted({str(x["weights"]) for x in self.servers}),
                "tokenizer": tokenizer_digest(tok) if tok is not None else None,
                "chat_template": hashlib.sha256(template.encode()).hexdigest() if template else None}

    def request_settings(self, params: SamplingParams | None = None) -> dict:
        """The sampling fields every request carries besides the prompt (seed: per sample), as sent now: with
        `params`, or the latest run's; before any run the benchmark's own fields say "per benchmark"."""
        params = params or self._last_params
        if params is None:
            per = "per benchmark (config.json benchmarks.*.sampling)"
            mine = {"temperature": per, "top_p": per, self._max_tokens_name: per, "stop": per, "seed": per}
        else:
            mine = {"temperature": params.temperature, "top_p": params.top_p,
                    self._max_tokens_name: params.max_new_tokens, "stop": list(params.stop) or None,
                    "seed": None if params.greedy else "stable_seed(seed, prompt, sample)"}
        body: dict[str, Any] = {**mine, "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0}
        extra: dict[str, Any] = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0, "ignore_eos": False,
                                 "skip_special_tokens": True}
        if self.eos_ids:
            extra["stop_token_ids"] = list(self.eos_ids)
        body = {k: v for k, v in body.items() if k not in self._dropped}
        extra = {k: v for k, v in extra.items() if k not in self._dropped}
        return {**body, **extra}

    def engine_record(self) -> dict:
        """What config.json and summary.json record: servers, their model names, weights and versions, the request
        settings (never the key or a URL's secrets)."""
        s = self.settings
        return {"name": "openai", "api": s.api, "model": s.model, "servers": self.servers,
                "client": f"openai=={_openai_version()}", "prompt": "token ids" if s.api == "completions" else "messages",
                "request_settings": self.request_settings(), "concurrency": s.concurrency,
                "max_retries": s.max_retries, "retry_time_budget": s.retry_time_budget,
                "request_timeout": s.request_timeout, "connect_timeout": s.connect_timeout,
                "strip_thinking": s.strip_thinking, "reasoning_api": s.reasoning_api, "api_key_env": s.api_key_env}

    def request_stats(self) -> dict:
        return {"requests": self.requests, "retries": dict(self.retries), "retried": sum(self.retries.values()),
                "failovers": self.failovers, "breaker_opened": dict(self.breakers),
                "retry_after": {"waits": self.retry_after["waits"],
                                "seconds": round(self.retry_after["seconds"], 3)},
                "errors": self.errors, "adapted": list(self.adapted), "request_settings": self.request_settings()}

    # ------------------------------------------------------------------ the Generator protocol
    def render(self, problem_text: str, template: str | None = None):
        """The prompt of one problem as the runner hands it back: rendered text (completions; sent as its token
        ids) or messages (chat). `template` is the engine's own (`template=` at construction); the argument is
        the protocol's."""
        if self.settings.api == "chat":
            return chat_request_messages(problem_text, self.template)
        from evals.prompts import render_prompt

        return render_prompt(problem_text, self.template, self.tokenizer)

    def encode(self, prompt: str) -> list[int]:
        from evals.engines.base import encode_prompt

        ids = self._planned.get(prompt)
        return list(ids) if ids is not None else encode_prompt(self.tokenizer, prompt)

    def plan(self, prompts: Sequence, params: SamplingParams) -> list[list[WorkItem]]:
        """The plan of batches. A completions prompt that cannot fit max_new_tokens more tokens in the server's
        context is planned like any other; its samples become recorded errors without a request."""
        self._too_long = {}
        if self.tokenizer is not None and self.settings.api == "completions":
            from evals.engines.base import encode_prompt

            self._planned = {p: encode_prompt(self.tokenizer, p) for p in dict.fromkeys(prompts)}
            if self.max_model_len:
                for i, p in enumerate(prompts):
                    n = len(self._planned[p])
                    if n + params.max_new_tokens > self.max_model_len:
                        self._too_long[i] = (f"prompt has {n} tokens; with max_new_tokens={params.max_new_tokens} it "
                                             f"exceeds the server's max_model_len={self.max_model_len}")
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
        self._last_params = params
        limits = _httpx().Limits(max_connections=s.concurrency, max_keepalive_connections=s.concurrency)
        servers = [_Server(url, self._client(url, openai.DefaultAsyncHttpxClient(limits=limits, timeout=self._timeout())))
                   for url in s.base_urls]
        gate = asyncio.Semaphore(s.concurrency)
        rng = random.Random()  # backoff jitter only: never touches what is sampled
        remaining = {bi: len(batch) for bi, batch in batches}
        got: dict[int, list[ServedSample]] = {bi: [] for bi, _ in batches}
        order = {bi: [tuple(it) for it in batch] for bi, batch in batches}
        last = [time.perf_counter()]

        async def one(bi: int, pi: int, si: int) -> None:
            if pi in self._too_long:
                sample = self._error_sample(pi, si, self._too_long[pi])
            else:
                async with gate:
                    sample = await self._request(servers, prompts[pi], pi, si, params, rng)
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
            for x in servers:  # closes the HTTP client it was given; a failing close must not hide the run's error
                with contextlib.suppress(Exception):
                    await x.client.close()

    def _pick(self, servers: list[_Server], avoid: _Server | None) -> _Server | None:
        """The least busy server in rotation, another than `avoid` where one is; None when none is usable now."""
        now = time.monotonic()
        usable = [x for x in servers if x.usable(now, self.settings.breaker_failures)]
        if len(usable) > 1 and avoid in usable:
            usable.remove(avoid)
        if not usable:
            return None
        best = min(usable, key=lambda x: x.in_flight)
        if best.failures >= self.settings.breaker_failures:
            best.probing = True  # back from its cool-down: this request tells whether it works again
        return best

    def _failed(self, server: _Server, status: str) -> None:
        s = self.settings
        server.failures += 1
        server.status = status
        server.probing = False
        if server.failures >= s.breaker_failures:
            server.open_until = time.monotonic() + s.breaker_cooldown * 2 ** min(server.opened, 6)
            server.opened += 1
            self.breakers[server.shown] = server.opened

    def _body(self, params: SamplingParams, pi: int, si: int) -> tuple[dict, dict]:
        sent = self.request_settings(params)
        if "seed" in sent:
            sent["seed"] = None if params.greedy else stable_seed(params.seed, pi, si)
        body = {k: v for k, v in sent.items() if k not in VLLM_EXTRAS}
        extra = {k: v for k, v in sent.items() if k in VLLM_EXTRAS}
        return body, extra

    async def _request(self, servers: list[_Server], prompt, pi: int, si: int, params: SamplingParams,
                       rng: random.Random) -> ServedSample:
        s = self.settings
        started = time.monotonic()
        counted = 0  # retries that count against max_retries: those with no other healthy server to go to
        avoid: _Server | None = None
        while True:
            server = self._pick(servers, avoid)
            if server is None:  # every server is out of rotation or asked to wait: wait for the first back
                ready = min(x.ready_at(s.breaker_failures) for x in servers)
                wait = max(0.05, ready - time.monotonic())
                if time.monotonic() - started + wait > s.retry_time_budget:
                    raise EndpointError(self._no_server_left(servers, pi, si))
                await asyncio.sleep(wait)
                continue
            body, extra = self._body(params, pi, si)
            server.in_flight += 1
            self.requests += 1
            try:
                if s.api == "chat":
                    resp = await server.client.chat.completions.create(model=s.model, messages=prompt, **body,
                                                                       extra_body=extra or None)
                else:
                    resp = await server.client.completions.create(model=s.model, prompt=self.encode(prompt), **body,
                                                                  extra_body=extra or None)
                return self._sample(resp, pi, si, server)
            except Exception as e:
                kind, status = classify_failure(e)
                status = self._scrub(status)
                if kind is None:
                    server.probing = False  # it answered: not a failure of the server
                    if self._adapt(status, body, extra, server):
                        continue  # the same request without the setting the server refused: not a retry
                    if getattr(e, "status_code", None) == 400 and TOO_LONG.search(status):
                        return self._error_sample(pi, si, f"server {server.shown}: {status}")
                    raise EndpointError(f"server {server.shown} refused a request (prompt {pi}, sample {si}): "
                                        f"{status}") from None
                self._failed(server, status)
                wait = None
                headers = getattr(getattr(e, "response", None), "headers", None)
                asked = retry_after_seconds(headers) if kind in ("429", "5xx") else None
                if asked is not None:
                    wait = min(asked, s.retry_after_cap)
                    server.not_before = time.monotonic() + wait
                    self.retry_after["waits"] += 1
                    self.retry_after["seconds"] += wait
                now = time.monotonic()
                others = [x for x in servers if x is not server and x.usable(now, s.breaker_failures)]
                if others:  # another healthy server takes it at once
                    self.retries[kind] += 1
                    self.failovers += 1
                    avoid = server
                    continue
                if counted >= s.max_retries:
                    raise EndpointError(
                        f"server {server.shown} still failing after {s.max_retries} retries (prompt {pi}, sample "
                        f"{si}): {status}{self._others(servers, server)}; finished batches are saved, rerun the same "
                        f"command to resume") from None
                wait = backoff_seconds(counted, rng) if wait is None else wait
                if now - started + wait > s.retry_time_budget:
                    raise EndpointError(
                        f"server {server.shown} still failing within {s.retry_time_budget:g} s of retries (prompt {pi}, "
                        f"sample {si}): {status}{self._others(servers, server)}; finished batches are saved, rerun "
                        f"the same command to resume") from None
                counted += 1
                self.retries[kind] += 1
                avoid = None
                await asyncio.sleep(wait)
            finally:
                server.in_flight -= 1

    def _others(self, servers: list[_Server], failing: _Server) -> str:
        rest = [f"{x.shown}: {x.status or 'out of rotation'}" for x in servers if x is not failing]
        return f" (no other server left: {'; '.join(rest)})" if rest else ""

    def _no_server_left(self, servers: list[_Server], pi: int, si: int) -> str:
        states = "; ".join(f"{x.shown}: {x.status or 'waiting for Retry-After'}" for x in servers)
        return (f"no server left for prompt {pi} sample {si} within {self.settings.retry_time_budget:g} s of retries "
                f"({states}); finished batches are saved, rerun the same command to resume")

    def _adapt(self, status: str, body: dict, extra: dict, server: _Server) -> bool:
        """Leave out (or rename) a setting a server refused by name, for every request from now on."""
        name = refused_setting(status, body, extra)
        if name is None:
            return False
        if name == "max_tokens":
            self._max_tokens_name = "max_completion_tokens"
            note = "max_tokens sent as max_completion_tokens"
        else:
            self._dropped.add(name)
            note = f"{name} left out"
        self.adapted.append(f"{note} (server {server.shown}: {status[:200]})")
        print(f"engine openai: {note}: the server refused it ({status[:200]})", flush=True)
        return True

    def _error_sample(self, pi: int, si: int, error: str) -> ServedSample:
        self.errors += 1
        return ServedSample(pi, si, "", [], [], "error", 0.0, completion_tokens=0, error=error)

    def _sample(self, resp, pi: int, si: int, server: _Server) -> ServedSample:
        choice = resp.choices[0]
        if choice.finish_reason == "abort":
            raise _Aborted(f"finish_reason='abort' for prompt {pi} sample {si}")
        if choice.finish_reason not in ("stop", "length"):
            raise EndpointError(f"server {server.shown} returned finish_reason={choice.finish_reason!r} for prompt "
                                f"{pi} sample {si}; only 'stop' and 'length' are complete answers")
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
            raise EndpointError(f"server {server.shown} reported no token usage for prompt {pi} sample {si}; the "
                                f"engine counts tokens from it")
        server.failures, server.probing = 0, False
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
