"""One generation interface for evaluation and for training rollouts: prompts in, k samples per prompt out.

`HFGenerator` is the transformers backend: length-sorted batches, left padding, KV cache. Work is split into a
deterministic *plan* of batches, each sampled under its own seed derived from (seed, batch index), so a run
that is killed and resumed regenerates exactly the batches it had not finished and gets the same samples as an
uninterrupted run. The vLLM backend (`evals.vllm_generation`) implements the same `Generator` protocol; nothing
here imports vLLM.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Iterator, Protocol, Sequence

import torch

from evals.seeding import stable_seed


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
    def plan(self, prompts: Sequence[str], params: SamplingParams) -> list[list[WorkItem]]: ...

    def run_batch(self, prompts: Sequence[str], batch: list[WorkItem], batch_index: int,
                  params: SamplingParams) -> list[Sample]: ...


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
    data-parallel engine (one with `run_batches`, evals.vllm_data_parallel) runs them side by side and yields
    them as they finish."""
    if hasattr(generator, "run_batches"):
        yield from generator.run_batches(prompts, batches, params)
        return
    for bi, batch in batches:
        yield bi, generator.run_batch(prompts, batch, bi, params)


def generate(generator: Generator, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
    """Convenience: run the whole plan; returns samples grouped per prompt, in sample order."""
    out: list[list[Sample]] = [[None] * params.n for _ in prompts]  # type: ignore[list-item]
    for _, samples in run_batches(generator, prompts, list(enumerate(generator.plan(prompts, params))), params):
        for s in samples:
            out[s.prompt_index][s.sample_index] = s
    return out


class NonFiniteLogitsError(RuntimeError):
    """The model's next-token scores held NaN or +inf: there is nothing to sample from."""


def _finite_logits_guard(width: int, under_autocast: bool):
    """A logits processor that stops `generate` with a clear error when a row's scores hold NaN or +inf. Without
    it CUDA's multinomial dies with an opaque device-side assert (reported later, at an unrelated op), CPU's with
    a generic one, and greedy decoding silently emits token 0. -inf is legitimate (top-p, stop filtering)."""
    from transformers import LogitsProcessor

    class FiniteLogitsGuard(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            bad = scores.isnan() | scores.isposinf()
            if bad.any():  # one host sync per token; generate's stopping check already syncs each token
                rows = bad.any(dim=-1).nonzero().flatten().tolist()
                hint = (" under bf16 autocast (retry with autocast=none to tell an overflow from weights that "
                        "went non-finite)" if under_autocast else " (the weights went non-finite?)")
                raise NonFiniteLogitsError(
                    f"NaN/inf logits at generated token {input_ids.shape[1] - width + 1} in {len(rows)} of "
                    f"{scores.shape[0]} rows (first {rows[:8]}){hint}")
            return scores

    return FiniteLogitsGuard()


class HFGenerator:
    """transformers `generate` backend.

    batch_size: most sequences per batch. On CPU, 32-64 maximises tokens/s for a 135M model; on GPU, larger.
    Batches hold prompts of similar length (sorted, longest first so an out-of-memory shows up at once) under a
    token budget (see `plan`).
    """

    def __init__(self, model, tokenizer, batch_size: int = 64, autocast: str = "none",
                 max_batch_tokens: int | None = None):
        self.model = model
        # rows x (padded prompt + new tokens) per batch; default batch_size x (256 + max_new_tokens)
        self.max_batch_tokens = max_batch_tokens
        self.autocast = autocast  # "bf16": sample under bf16 autocast (fp32 master weights stay untouched)
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.eos_ids = eos_token_ids(tokenizer, getattr(model.generation_config, "eos_token_id", None))

    def encode(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)

    def plan(self, prompts: Sequence[str], params: SamplingParams) -> list[list[WorkItem]]:
        """Deterministic batches: sequences sorted by prompt length (longest first), a new batch started when
        `batch_size` rows are reached, when rows x (width + max_new_tokens) would pass the token budget, or when
        the next prompt is under half the batch's width. Every row of a batch is padded to its longest prompt
        and the KV cache of every row grows to that width, so one 900-token prompt in a batch of 100-token
        prompts would make the whole batch ~5x more expensive."""
        lengths = [len(self.encode(p)) for p in prompts]
        items = [(pi, si) for pi in range(len(prompts)) for si in range(params.n)]
        items.sort(key=lambda it: (-lengths[it[0]], it[0], it[1]))
        budget = self.max_batch_tokens or self.batch_size * (256 + params.max_new_tokens)
        batches: list[list[WorkItem]] = []
        current: list[WorkItem] = []
        width = 0
        for item in items:
            length = lengths[item[0]]
            if current and (len(current) >= self.batch_size or length < width / 2
                            or (len(current) + 1) * (width + params.max_new_tokens) > budget):
                batches.append(current)
                current = []
            if not current:
                width = length
            current.append(item)
        if current:
            batches.append(current)
        return batches

    @torch.no_grad()
    def run_batch(self, prompts: Sequence[str], batch: list[WorkItem], batch_index: int,
                  params: SamplingParams) -> list[Sample]:
        from transformers import GenerationConfig, LogitsProcessorList

        tok = self.tokenizer
        device = next(self.model.parameters()).device
        encoded = [self.encode(prompts[pi]) for pi, _ in batch]
        width = max(len(e) for e in encoded)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
        attention = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
        # A fresh config so a checkpoint's own sampling defaults (repetition penalty, top_k, ...) never leak in.
        gen_cfg = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            temperature=params.temperature if not params.greedy else None,
            top_p=params.top_p if not params.greedy else None,
            top_k=0 if not params.greedy else None,  # pure temperature sampling, as in the paper (top_k=0 = off)
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=pad,
            bos_token_id=tok.bos_token_id,
            stop_strings=list(params.stop) or None,
            use_cache=True,
        )
        if not params.greedy:
            seed = stable_seed(params.seed, batch_index)
            torch.manual_seed(seed)
            if device.type == "cuda":
                torch.cuda.manual_seed_all(seed)
        was_training = self.model.training
        self.model.eval()
        t0 = time.perf_counter()
        from evals.models import autocast_context

        with autocast_context(device, self.autocast):
            # "auto" is fp32 where bf16 is not native: the error's hint names what actually ran
            guard = _finite_logits_guard(width, torch.is_autocast_enabled(device.type))
            out = self.model.generate(input_ids=input_ids, attention_mask=attention, generation_config=gen_cfg,
                                      tokenizer=tok if params.stop else None,
                                      logits_processor=LogitsProcessorList([guard]))
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        self.model.train(was_training)
        new = out[:, width:].tolist()
        samples = []
        for (pi, si), ids, prompt_ids in zip(batch, new, encoded):
            response, text, reason = finish_response(tok, ids, self.eos_ids, params.stop)
            samples.append(Sample(pi, si, text, prompt_ids, response, reason, dt))
        return samples
