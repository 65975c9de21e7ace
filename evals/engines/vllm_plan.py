"""Prompt encoding and the batch plan that both vLLM engines share: the in-process `VLLMGenerator`
(evals.engines.vllm_engine) and the data-parallel `DataParallelVLLM` (evals.engines.vllm_data_parallel), so a run planned by
one can resume on the other.

This module imports no torch or vLLM at its top: the data-parallel engine's replica processes import it before
they set their device environment.
"""

from __future__ import annotations

from typing import Sequence

from evals.engines.base import GeneratorBase, encode_prompt


WorkItem = tuple[int, int]  # (prompt index, sample index), as in evals.engines.base


def plan_batches(prompt_lengths: Sequence[int], params, max_model_len: int, batch_size: int) -> list[list[WorkItem]]:
    """Batches of `batch_size` (prompt index, sample index) items in prompt order. vLLM schedules the sequences
    of a batch itself (continuous batching), so no length sorting; batches only bound how much work a crash can
    lose (and, with data parallelism, are what the replicas share). Raises ValueError naming the first prompt
    that cannot fit `params.max_new_tokens` more tokens within `max_model_len`."""
    too_long = [i for i, n in enumerate(prompt_lengths) if n + params.max_new_tokens > max_model_len]
    if too_long:
        i = too_long[0]
        raise ValueError(f"prompt {i} has {prompt_lengths[i]} tokens; with max_new_tokens={params.max_new_tokens} it "
                         f"exceeds the engine's max_model_len={max_model_len} ({len(too_long)} prompts do)")
    items = [(pi, si) for pi in range(len(prompt_lengths)) for si in range(params.n)]
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


class VLLMPlanning(GeneratorBase):
    """`encode` and `plan` of the Generator protocol for an engine with `tokenizer`, `max_model_len` and
    `batch_size` attributes. `plan` keeps the token ids of the prompts it planned, so running the plan does not
    tokenize them a second time (the next `plan` replaces them: memory stays one prompt set's worth)."""

    name = "vllm"
    tokenizer: object
    max_model_len: int
    batch_size: int
    _planned: dict[str, list[int]] = {}

    def encode(self, prompt: str) -> list[int]:
        ids = self._planned.get(prompt)
        return list(ids) if ids is not None else encode_prompt(self.tokenizer, prompt)

    def plan(self, prompts: Sequence[str], params) -> list[list[WorkItem]]:
        self._planned = {p: encode_prompt(self.tokenizer, p) for p in dict.fromkeys(prompts)}
        return plan_batches([len(self._planned[p]) for p in prompts], params, self.max_model_len, self.batch_size)
