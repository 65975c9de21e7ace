"""The shared forward pass: padded batches must give exactly the log-probs of each sequence run alone."""

from __future__ import annotations

import pytest
import torch

from evals.models import load_model, load_tokenizer
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


def test_temperature_scales_logprobs_but_not_v_start(tiny):
    """GRPO/PPO log-probs are those of the sampling policy softmax(logits/T); V(s_1) stays on raw logits."""
    model, tok = tiny
    batch = collate([[5, 6, 7], [8]], [[9, 10], [11, 12]], [1.0, 0.0], [0, 1], tok.pad_token_id)
    raw = response_forward(model, batch)
    hot = response_forward(model, batch, temperature=0.5)
    expected = torch.log_softmax(raw.logits / 0.5, -1).gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(hot.logprobs, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(hot.logprobs, raw.logprobs, atol=1e-3)
    torch.testing.assert_close(hot.v_start, raw.v_start)


def test_the_registry_trains_every_algorithm_the_config_accepts():
    from baselines.registry import CLASSES
    from tbrm.api import algorithms

    assert sorted(algorithms()) == sorted(c.name for c in CLASSES)
    assert all(cls.name == name for name, cls in algorithms().items())


def test_only_policy_gradient_methods_temper_their_logprobs(tiny):
    from tbrm.api import make_algorithm
    from tbrm.config import load_config

    for recipe, expected in (("cpu-tbrm-n1", 1.0), ("cpu-grpo-n4", 0.7), ("cpu-ppo-n1", 0.7)):
        cfg = load_config(recipe)
        assert cfg.temperature == 0.7
        assert make_algorithm(cfg, tiny[0], torch.device("cpu")).logit_temperature == expected


def test_only_tbrm_computes_v_start_and_policy_gradient_keeps_one_vocab_sized_buffer(tiny):
    """GRPO and PPO never read V(s_1). Computing it saved a view of the raw fp32 [B, T, V] logits for backward,
    which kept that whole buffer alive beside the tempered copy the log-probs use: two vocabulary-sized buffers
    per micro-batch instead of one."""
    from tbrm.api import make_algorithm
    from tbrm.config import load_config

    model, tok = tiny
    batch = collate([[5, 6, 7], [8]], [[9, 10, 11], [12, 13]], [1.0, 0.0], [0, 1], tok.pad_token_id)
    vocab_sized = batch.size * batch.response_ids.shape[1] * model.config.vocab_size * 4
    for recipe, expect_v_start in (("cpu-tbrm-n1", True), ("cpu-grpo-n4", False), ("cpu-ppo-n1", False)):
        algo = make_algorithm(load_config(recipe), model, torch.device("cpu"))
        assert algo.needs_v_start == expect_v_start
        saved = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = response_forward(model, batch, temperature=algo.logit_temperature, need_v_start=algo.needs_v_start)
        assert (out.v_start is not None) == expect_v_start
        assert sum(n == vocab_sized for n in saved.values()) == 1, recipe
        out.logprobs.sum().backward()  # the graph is still complete


def test_bf16_autocast_keeps_fp32_logprobs_close(tiny):
    model, tok = tiny
    batch = collate([[5, 6, 7]], [[8, 9, 10]], [1.0], [0], tok.pad_token_id)
    fp32 = response_forward(model, batch).logprobs
    bf16 = response_forward(model, batch, autocast="bf16").logprobs
    assert bf16.dtype == torch.float32
    assert torch.allclose(fp32, bf16, atol=0.1)


@pytest.mark.parametrize("greedy", [True, False])
def test_non_finite_logits_stop_generation_with_a_clear_error(tiny_model_path, greedy):
    """Weights gone NaN: sampling raises our error (not multinomial's, or CUDA's device-side assert), and greedy
    decoding raises instead of silently emitting token 0; a healthy model passes the same guard."""
    from evals.engines.base import SamplingParams, generate
    from evals.engines.hf import HFGenerator, NonFiniteLogitsError

    model, tok = load_model(tiny_model_path), load_tokenizer(tiny_model_path)
    params = SamplingParams(n=1, max_new_tokens=4, temperature=0.0 if greedy else 1.0, seed=0)
    gen = HFGenerator(model, tok, batch_size=4)
    ok = generate(gen, ["What is 1 + 1?", "2 + 3 ="], params)
    assert all(len(g[0].token_ids) >= 1 for g in ok)
    with torch.no_grad():
        model.model.layers[-1].mlp.down_proj.weight[0, 0] = float("nan")  # one weight poisons every position
    with pytest.raises(NonFiniteLogitsError, match=r"NaN/inf logits at generated token 1 in 2 of 2 rows"):
        generate(gen, ["What is 1 + 1?", "2 + 3 ="], params)


def test_auto_autocast_is_bf16_only_where_bf16_is_native():
    """autocast=auto (the CPU recipes) runs bf16 only on hardware with native bf16; on a CPU without AVX512-BF16/AMX
    the forward stays fp32 (emulated bf16 is several times slower: benchmarks/results/engines-fp32.md)."""
    from evals.models import native_bf16
    from evals.models import autocast_context

    cpu = torch.device("cpu")
    seen = {}
    for mode in ("none", "bf16", "auto"):
        with autocast_context(cpu, mode):
            x = torch.ones(2, 2)
            seen[mode] = (torch.is_autocast_enabled("cpu"), (x @ x).dtype)
    assert seen["none"] == (False, torch.float32) and seen["bf16"] == (True, torch.bfloat16)
    assert seen["auto"] == seen["bf16" if native_bf16(cpu) else "none"]


def test_micro_batch_selection_keeps_rows_aligned(tiny):
    _, tok = tiny
    batch = collate([[1, 2], [3]], [[4], [5, 6]], [0.5, 1.5], [0, 1], tok.pad_token_id)
    batch.extra["ref_logprobs"] = torch.tensor([[0.1, 0.0], [0.2, 0.3]])
    second = batch.select(slice(1, 2))
    assert second.rewards.tolist() == [1.5] and second.extra["ref_logprobs"].tolist() == [[pytest.approx(0.2), pytest.approx(0.3)]]
    assert second.prompt_width == batch.prompt_width


def test_generation_plan_bounds_padding_and_tokens(tiny):
    from evals.engines.base import SamplingParams
    from evals.engines.hf import HFGenerator

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


@pytest.mark.parametrize("whiten", [True, False])
def test_ppo_advantages_whitened_only_when_asked(tiny, whiten):
    """Raw GAE advantages are r - V (gamma = lambda = 1); whitening rescales them to zero mean, unit std."""
    from baselines.ppo_loss import gae, outcome_token_rewards
    from tbrm.api import make_algorithm
    from tbrm.config import load_config

    model, tok = tiny
    cfg = load_config("cpu-ppo-n1", [f"whiten_advantages={str(whiten).lower()}"])
    algo = make_algorithm(cfg, model, torch.device("cpu"))
    batch = collate([[5, 6, 7], [8, 9]], [[10, 11, 12], [13, 14]], [1.0, 0.0], [0, 1], tok.pad_token_id)
    algo.prepare(batch, lambda b: None)
    m = batch.response_mask
    raw, _ = gae(outcome_token_rewards(batch.rewards, m), batch.extra["old_values"], m)
    adv = batch.extra["advantages"]
    if whiten:
        real = adv[m > 0]
        assert abs(real.mean().item()) < 1e-5 and real.std().item() == pytest.approx(1.0, abs=1e-3)
    else:
        torch.testing.assert_close(adv, raw)
        torch.testing.assert_close(raw, (batch.rewards[:, None] - batch.extra["old_values"]) * m)
