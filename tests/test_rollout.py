"""The shared forward pass: padded batches must give exactly the log-probs of each sequence run alone."""

from __future__ import annotations

import pytest
import torch

from tbrm.models import load_model, load_tokenizer
from tbrm.rollout import collate, response_forward


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return load_model(tiny_model_path, trainable=True), load_tokenizer(tiny_model_path)


def test_padded_batch_matches_unpadded_sequences(tiny):
    model, tok = tiny
    prompts = [[5, 6, 7, 8, 9], [11, 12], [20, 21, 22]]
    responses = [[30, 31], [40, 41, 42, 43], [50]]
    batch = collate(prompts, responses, [1.0, 0.0, 1.0], [0, 1, 2], tok.pad_token_id)
    out = response_forward(model, batch)
    assert out.logprobs.dtype == torch.float32 and out.logprobs.shape == (3, 4)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        with torch.no_grad():
            logits = model(torch.tensor([p + r])).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        expected = torch.stack([lp[len(p) - 1 + t, tok_id] for t, tok_id in enumerate(r)])
        torch.testing.assert_close(out.logprobs[i, : len(r)].detach(), expected, rtol=1e-4, atol=1e-4)
        # V(s_1): logsumexp of the raw logits where the first response token is predicted
        torch.testing.assert_close(out.v_start[i].detach(), torch.logsumexp(logits[len(p) - 1], -1), rtol=1e-4, atol=1e-4)
    assert batch.response_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_bf16_autocast_keeps_fp32_logprobs_close(tiny):
    model, tok = tiny
    batch = collate([[5, 6, 7]], [[8, 9, 10]], [1.0], [0], tok.pad_token_id)
    fp32 = response_forward(model, batch).logprobs
    bf16 = response_forward(model, batch, autocast="bf16").logprobs
    assert bf16.dtype == torch.float32
    assert torch.allclose(fp32, bf16, atol=0.1)


def test_micro_batch_selection_keeps_rows_aligned(tiny):
    _, tok = tiny
    batch = collate([[1, 2], [3]], [[4], [5, 6]], [0.5, 1.5], [0, 1], tok.pad_token_id)
    batch.extra["ref_logprobs"] = torch.tensor([[0.1, 0.0], [0.2, 0.3]])
    second = batch.select(slice(1, 2))
    assert second.rewards.tolist() == [1.5] and second.extra["ref_logprobs"].tolist() == [[pytest.approx(0.2), pytest.approx(0.3)]]
    assert second.prompt_width == batch.prompt_width


def test_generation_plan_bounds_padding_and_tokens(tiny):
    from tbrm.generation import HFGenerator, SamplingParams

    model, tok = tiny
    gen = HFGenerator(model, tok, batch_size=4, max_batch_tokens=10 * 100)
    prompts = ["word " * 300] + ["word " * 20] * 6 + ["word " * 9] * 3
    plan = gen.plan(prompts, SamplingParams(n=2, max_new_tokens=50))
    items = [it for b in plan for it in b]
    assert sorted(items) == [(p, s) for p in range(10) for s in range(2)]  # every sample exactly once
    assert plan[0] == [(0, 0), (0, 1)]  # the long prompt does not drag short ones into its padding
    lengths = [len(gen.encode(p)) for p in prompts]
    for batch in plan:
        width = max(lengths[p] for p, _ in batch)
        assert len(batch) <= 4 and min(lengths[p] for p, _ in batch) >= width / 2
        assert len(batch) * (width + 50) <= 1000 or len(batch) == 1
    assert plan == gen.plan(prompts, SamplingParams(n=2, max_new_tokens=50))  # deterministic (resume relies on it)
