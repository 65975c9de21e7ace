"""The transformers engine (`HFGenerator`): `generate` with length-sorted batches, left padding and a KV cache,
behind the `Generator` protocol of `evals.engines.base`."""

from __future__ import annotations

import time
from typing import Sequence

import torch

from evals.engines.base import (GeneratorBase, Sample, SamplingParams, WorkItem, encode_prompt, eos_token_ids,
                                finish_response)
from evals.seeding import stable_seed


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


class HFGenerator(GeneratorBase):
    """transformers `generate` backend.

    batch_size: most sequences per batch. On CPU, 32-64 maximises tokens/s for a 135M model; on GPU, larger.
    Batches hold prompts of similar length (sorted, longest first so an out-of-memory shows up at once) under a
    token budget (see `plan`).
    """

    name = "hf"

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
