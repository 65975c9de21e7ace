"""Losses and log-prob helpers against hand-computed numbers (the arithmetic is written out next to each)."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.grpo_loss import grpo_advantages, grpo_loss, kl_k3
from baselines.ppo_loss import (
    gae,
    kl_penalty_k3,
    outcome_token_rewards,
    ppo_actor_loss,
    ppo_policy_loss,
    ppo_value_loss,
    whiten,
)
from tbrm.logprobs import entropy_from_logits, logsumexp_values, masked_mean, masked_sum, token_logprobs
from tbrm.loss import tbrm_loss

LN2, LN3 = math.log(2.0), math.log(3.0)
NAN = float("nan")

# The shared 2x3 example: row 0 has 3 real tokens, row 1 has 2 real tokens and one padding slot.
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def t(x, **kw):
    return torch.tensor(x, dtype=torch.float32, **kw)


def close(a, b, tol=1e-5):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return torch.allclose(a, b, atol=tol, rtol=tol)


# ----------------------------------------------------------------------------------------------- logprobs


def test_token_logprobs_hand_values():
    # logits [0, ln 3] -> π = [1/4, 3/4], V = ln 4
    logits = t([[[0.0, LN3], [0.0, LN3]]])  # [1, 2, 2]
    targets = torch.tensor([[1, 0]])
    lp = token_logprobs(logits, targets)
    assert close(lp, [[math.log(0.75), math.log(0.25)]])
    assert close(logsumexp_values(logits), [[math.log(4.0), math.log(4.0)]])
    # H = -(1/4 ln 1/4 + 3/4 ln 3/4) = ln 4 - (3/4) ln 3
    assert close(entropy_from_logits(logits), [[math.log(4) - 0.75 * LN3] * 2])


def test_token_logprobs_matches_log_softmax_gather_and_is_nonpositive():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 7, generator=g) * 5
    targets = torch.randint(0, 7, (3, 4), generator=g)
    ref = torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    lp = token_logprobs(logits, targets)
    assert lp.dtype == torch.float32 and close(lp, ref)
    assert (lp <= 0).all() and lp.sum() <= 0
    # the probabilities of all V targets at a position sum to 1
    all_lp = torch.stack([token_logprobs(logits, torch.full_like(targets, v)) for v in range(7)], -1)
    assert close(all_lp.exp().sum(-1), torch.ones(3, 4))
    # chunking over B changes nothing, forward or backward
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    w = torch.randn(3, 4, generator=g)
    (token_logprobs(x1, targets, chunk_rows=1) * w).sum().backward()
    (torch.log_softmax(x2, -1).gather(-1, targets[..., None]).squeeze(-1) * w).sum().backward()
    assert close(x1.grad, x2.grad)


def test_bf16_logits_give_fp32_outputs_and_bf16_grads():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 3, 11, generator=g) * 4).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(0, 11, (2, 3), generator=g)
    lp, v, h = token_logprobs(logits, targets), logsumexp_values(logits), entropy_from_logits(logits)
    assert lp.dtype == v.dtype == h.dtype == torch.float32
    # computed in fp32 from the bf16 values (not rounded to bf16 on the way out)
    up = logits.detach().float()
    assert torch.allclose(lp, torch.log_softmax(up, -1).gather(-1, targets[..., None]).squeeze(-1), atol=1e-6)
    assert torch.allclose(v, torch.logsumexp(up, -1), atol=1e-6)
    (lp.sum() + v.sum() + h.sum()).backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad.float()).all()


@pytest.mark.parametrize("fn", ["lp", "lse", "ent"])
def test_chunked_backward_gradcheck(fn):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 5, (3, 2), generator=g)
    f = {
        "lp": lambda z: token_logprobs(z, targets, chunk_rows=2),
        "lse": lambda z: logsumexp_values(z, chunk_rows=2),
        "ent": lambda z: entropy_from_logits(z, chunk_rows=2),
    }[fn]
    assert f(x).dtype == torch.float64
    assert torch.autograd.gradcheck(f, (x,))


def test_entropy_uniform_and_minus_inf_logits():
    assert close(entropy_from_logits(torch.zeros(1, 1, 5)), [[math.log(5)]])
    # a -inf logit has p = 0 and contributes nothing (not 0 * -inf = nan): two equal live logits -> ln 2
    x = t([[[0.0, 0.0, -math.inf]]], requires_grad=True)
    h = entropy_from_logits(x)
    assert close(h, [[LN2]])
    h.sum().backward()
    assert torch.isfinite(x.grad).all()  # H is maximal at equal live logits: zero gradient
    assert close(x.grad, [[[0.0, 0.0, 0.0]]])


def test_masked_sum_and_mean():
    x = t([[1.0, 2.0, 3.0], [4.0, 5.0, NAN]])  # nan on padding must not leak
    assert close(masked_sum(x, MASK), 15.0)  # 1+2+3+4+5
    assert close(masked_sum(x, MASK, dim=-1), [6.0, 9.0])
    assert close(masked_mean(x, MASK), 3.0)  # 15 / 5
    assert close(masked_mean(x, MASK, dim=-1), [2.0, 4.5])  # 6/3, 9/2
    assert masked_mean(x, torch.zeros_like(MASK)).item() == 0.0  # empty -> 0, not nan


# ----------------------------------------------------------------------------------------------- TBRM


def _tbrm_example():
    v_start = t([3.0, 1.0], requires_grad=True)
    # padding slot of row 1 holds garbage on purpose (1e6 in logprobs, nan in ref)
    logprobs = t([[-1.0, -2.0, -0.5], [-0.25, -1.0, 1e6]], requires_grad=True)
    ref = t([[-1.5, -1.0, -1.0], [-0.5, -2.0, NAN]])
    rewards = t([1.0, 0.0])
    return v_start, logprobs, ref, rewards


def test_tbrm_loss_hand_values_and_masking():
    v_start, logprobs, ref, rewards = _tbrm_example()
    loss, m = tbrm_loss(v_start, logprobs, ref, MASK, rewards, beta=0.5)
    # r/β = [2, 0]
    # row 0: Σ(lp - ref) = (-1+1.5) + (-2+1) + (-0.5+1) = 0.5 - 1 + 0.5 = 0     -> δ0 = 3 + 0 - 2 = 1
    # row 1: Σ(lp - ref) = (-0.25+0.5) + (-1+2) = 1.25 (padding ignored)         -> δ1 = 1 + 1.25 - 0 = 2.25
    # loss = (1² + 2.25²) / 2 = (1 + 5.0625) / 2 = 3.03125
    assert loss.dtype == torch.float32 and close(loss, 3.03125)
    assert close(m["tbrm/residual_mean"], 1.625)  # (1 + 2.25) / 2
    assert close(m["tbrm/residual_std"], 0.625)  # population std of {1, 2.25} = 1.25 / 2
    assert close(m["tbrm/residual_abs_mean"], 1.625)
    assert close(m["tbrm/v_start_mean"], 2.0)
    assert close(m["tbrm/log_ratio_sum_mean"], 0.625)  # (0 + 1.25) / 2
    assert close(m["tbrm/reward_over_beta_mean"], 1.0)  # (2 + 0) / 2
    assert all(isinstance(v, float) for v in m.values())
    loss.backward()
    # dL/dv_b = 2 δ_b / B = [1, 2.25]; dL/dlp_bh = 2 δ_b / B · mask_bh; padding gets exactly 0
    assert close(v_start.grad, [1.0, 2.25])
    assert close(logprobs.grad, [[1.0, 1.0, 1.0], [2.25, 2.25, 0.0]])


def test_tbrm_subtract_ref_value_hand_values():
    """ReVal's fix (arXiv 2603.23355, Prop. 1): δ = V_θ(s_1) − V_ref(s_1) + Σ log π_θ/π_ref − r/β."""
    v_start, logprobs, ref, rewards = _tbrm_example()
    v_ref = t([0.5, 2.0], requires_grad=True)  # a constant: must receive no gradient
    loss, m = tbrm_loss(v_start, logprobs, ref, MASK, rewards, beta=0.5, v_ref_start=v_ref)
    # row 0: δ0 = 3 − 0.5 + 0 − 2 = 0.5; row 1: δ1 = 1 − 2 + 1.25 − 0 = 0.25; loss = (0.25 + 0.0625) / 2
    assert close(loss, 0.15625)
    assert close(m["tbrm/residual_mean"], 0.375) and close(m["tbrm/v_ref_start_mean"], 1.25)
    assert close(m["tbrm/v_start_mean"], 2.0)  # V_θ itself, as in plain TBRM
    loss.backward()
    assert close(v_start.grad, [0.5, 0.25])  # 2 δ_b / B
    assert close(logprobs.grad, [[0.5, 0.5, 0.5], [0.25, 0.25, 0.0]])
    assert v_ref.grad is None
    with pytest.raises(ValueError, match="v_ref_start"):
        tbrm_loss(v_start, logprobs, ref, MASK, rewards, beta=0.5, v_ref_start=t([1.0]))


def test_zero_reward_keeps_the_reference_only_with_the_ref_value_subtracted():
    """Prop. 1 of ReVal on a toy LM: at θ = ref and r = 0, plain TBRM's residual is V_ref(s_1) ≠ 0, so its
    gradient moves the policy off the reference; with V_ref(s_1) subtracted the loss and its gradient are 0."""
    policy = ToyLM(0)
    prompt, response = torch.tensor([[3]]), torch.tensor([[1, 4]])
    seq = torch.cat([prompt, response], dim=1)
    logits = policy(seq)[:, 0:2]  # the logits that predict the two response tokens
    lp = token_logprobs(logits, response)
    v = logsumexp_values(logits[:, :1]).squeeze(1)
    ref_lp, ref_v = lp.detach(), v.detach()  # the reference is the same network, frozen
    mask, reward = torch.ones(1, 2), t([0.0])
    plain, m_plain = tbrm_loss(v, lp, ref_lp, mask, reward, beta=0.1)
    grads = torch.autograd.grad(plain, list(policy.parameters()), retain_graph=True)
    assert close(m_plain["tbrm/residual_mean"], ref_v.item()) and abs(ref_v.item()) > 0.1
    assert sum(g.abs().sum() for g in grads) > 1e-3
    fixed, m_fixed = tbrm_loss(v, lp, ref_lp, mask, reward, beta=0.1, v_ref_start=ref_v)
    grads = torch.autograd.grad(fixed, list(policy.parameters()))
    assert fixed.item() == 0.0 and m_fixed["tbrm/residual_mean"] == 0.0
    assert all(g.abs().max() == 0 for g in grads)


def test_tbrm_padding_values_do_not_matter():
    v_start, logprobs, ref, rewards = _tbrm_example()
    base, _ = tbrm_loss(v_start, logprobs, ref, MASK, rewards, beta=0.5)
    lp2, ref2 = logprobs.detach().clone(), ref.clone()
    lp2[1, 2], ref2[1, 2] = -123.0, -math.inf
    other, _ = tbrm_loss(v_start, lp2, ref2, MASK, rewards, beta=0.5)
    assert base.item() == other.item()


def test_tbrm_paper_beta_scale_stays_fp32():
    # β = 0.002: a correct answer gives r/β = 500 and δ = -500 at init; bf16 inputs are cast to fp32
    bf16_v, bf16_lp = t([0.0]).bfloat16(), torch.zeros(1, 2, dtype=torch.bfloat16)
    loss, m = tbrm_loss(bf16_v, bf16_lp, torch.zeros(1, 2), torch.ones(1, 2), t([1.0]), beta=0.002)
    assert loss.dtype == torch.float32 and close(loss, 250000.0)
    assert close(m["tbrm/residual_mean"], -500.0) and m["tbrm/residual_std"] == 0.0


def test_tbrm_rejects_bad_shapes_and_beta():
    v_start, logprobs, ref, rewards = _tbrm_example()
    with pytest.raises(ValueError, match="rewards"):
        tbrm_loss(v_start, logprobs, ref, MASK, rewards[:, None], beta=0.5)  # [B,1] would broadcast to [B,B]
    with pytest.raises(ValueError, match="mask"):
        tbrm_loss(v_start, logprobs, ref, MASK[:, :2], rewards, beta=0.5)
    with pytest.raises(ValueError, match="beta"):
        tbrm_loss(v_start, logprobs, ref, MASK, rewards, beta=0.0)


class ToyLM(torch.nn.Module):
    """A 5-token-vocab "causal LM": the state at step t is the sum of the embeddings of tokens[:t+1]."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = torch.nn.Embedding(5, 4)
        self.head = torch.nn.Linear(4, 5)

    def forward(self, tokens):  # [B, L] -> logits [B, L, 5]; logits[:, t] predict tokens[:, t+1]
        return self.head(self.emb(tokens).cumsum(dim=1))


def test_tbrm_gradient_on_toy_model_equals_2delta_grad_of_value_plus_logprobs():
    policy, ref_model = ToyLM(0), ToyLM(1)
    prompt, response = torch.tensor([[3]]), torch.tensor([[1, 4]])  # s_1 = prompt, a_1 = 1, a_2 = 4
    seq = torch.cat([prompt, response], dim=1)
    beta, reward = 0.1, t([1.0])

    # the loop's slicing: logits that predict the response tokens = positions P-1 .. L-2
    logits = policy(seq)[:, prompt.shape[1] - 1 : -1]  # [1, 2, 5]
    with torch.no_grad():
        ref_lp = token_logprobs(ref_model(seq)[:, prompt.shape[1] - 1 : -1], response)
    v_start = logsumexp_values(logits[:, :1]).squeeze(1)
    lp = token_logprobs(logits, response)
    loss, _ = tbrm_loss(v_start, lp, ref_lp, torch.ones(1, 2), reward, beta)
    params = list(policy.parameters())
    g_loss = torch.autograd.grad(loss, params)

    # independently, with plain torch ops: f = V(s_1) + Σ_h log π_θ(a_h|s_h), δ = f - Σ log π_ref - r/β
    logits2 = policy(seq)[:, prompt.shape[1] - 1 : -1]
    logp = torch.log_softmax(logits2, -1)
    f = torch.logsumexp(logits2[0, 0], -1) + logp[0, 0, 1] + logp[0, 1, 4]
    delta = f.detach() - ref_lp.sum() - reward[0] / beta
    g_f = torch.autograd.grad(f, params)
    assert close(loss, delta**2)
    for a, b in zip(g_loss, g_f):
        assert torch.allclose(a, 2 * delta * b, atol=1e-4, rtol=1e-5)

    # first-logit identity: V(s_1) + log π(a_1|s_1) = logit(a_1|s_1), so
    # δ = logit(a_1) + log π(a_2|s_2) - Σ log π_ref - r/β
    assert close(v_start + lp[:, 0], logits[:, 0, 1])
    assert close(logits[0, 0, 1] + lp[0, 1] - ref_lp.sum() - reward[0] / beta, delta)


# ----------------------------------------------------------------------------------------------- GRPO


def test_grpo_advantages_by_hand():
    r = t([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    a = grpo_advantages(r, group_size=4)
    # group 1: mean 0.5, unbiased std = sqrt(4 · 0.25 / 3) = 1/√3 -> A = ±0.5·√3 = ±√3/2
    # group 2: all equal -> 0 (eps keeps it from being 0/0)
    s = math.sqrt(3) / 2
    assert close(a, [s, -s, -s, s, 0, 0, 0, 0], tol=1e-5)
    # pair [1, 0]: mean 0.5, unbiased std = sqrt(0.5 / 1) -> ±0.5 / 0.7071 = ±0.7071
    assert close(grpo_advantages(t([1.0, 0.0]), 2), [math.sqrt(0.5), -math.sqrt(0.5)], tol=1e-5)
    assert not a.requires_grad and a.dtype == torch.float32


def test_dr_grpo_advantages_are_centred_not_scaled():
    r = t([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    dr = grpo_advantages(r, 4, scale_by_std=False)
    assert close(dr, [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    # GRPO = Dr. GRPO / (std + eps) group-wise
    assert close(grpo_advantages(r, 4)[:4], dr[:4] / (1 / math.sqrt(3) + 1e-6))
    # a group with 3/4 correct: GRPO's 1/std inflates it relative to a 1/2-correct group, Dr. GRPO does not
    r2 = t([1.0, 1.0, 1.0, 0.0])
    assert close(grpo_advantages(r2, 4, scale_by_std=False), [0.25, 0.25, 0.25, -0.75])


def test_grpo_advantages_validation():
    with pytest.raises(ValueError, match="groups"):
        grpo_advantages(t([1.0, 0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="group_size"):
        grpo_advantages(t([1.0, 0.0]), 1)


def _ratio_example():
    """log-ratios lp - old: row 0 [0, ln 1.5, ln 0.5], row 1 [ln 1.1, ln 0.7, garbage on padding]."""
    old = t([[-1.0, -1.0, -1.0], [-2.0, -2.0, 0.0]])
    lp = (old + t([[0.0, math.log(1.5), math.log(0.5)], [math.log(1.1), math.log(0.7), 50.0]])).requires_grad_()
    # ref - lp: +ln 2 on [0,0] and +ln 3 on [1,1], 0 elsewhere (padding nan). Asymmetric on purpose:
    # the reversed estimator exp(lp - ref) - (lp - ref) - 1 would give different numbers.
    ref = lp.detach() + t([[LN2, 0.0, 0.0], [0.0, LN3, NAN]])
    return lp, old, ref


KL_EX = (3 - math.log(6)) / 5  # token-mean k3 of _ratio_example (see test_grpo_loss_hand_values)


def test_grpo_loss_hand_values():
    lp, old, ref = _ratio_example()
    adv = t([1.0, -2.0])
    loss, m = grpo_loss(lp, old, ref, adv, MASK, clip_eps=0.2, kl_coef=0.1)
    # ratios row 0 [1, 1.5, 0.5], A = 1: max(-ρ, -clip ρ) = [max(-1,-1), max(-1.5,-1.2), max(-0.5,-0.8)]
    #                                                     = [-1, -1.2 (clipped), -0.5]            sum -2.7
    # ratios row 1 [1.1, 0.7], A = -2: max(2ρ, 2 clip ρ) = [max(2.2,2.2), max(1.4,1.6)] = [2.2, 1.6 (clipped)] sum 3.8
    # token-mean pg = (-2.7 + 3.8) / 5 = 0.22
    # k3 = e^d - d - 1 with d = ref - lp: d = ln 2 -> 2 - ln 2 - 1 = 1 - ln 2;  d = ln 3 -> 3 - ln 3 - 1 = 2 - ln 3
    # sum = 3 - ln 6 ≈ 1.208241, over 5 real tokens -> KL ≈ 0.241648
    assert close(m["grpo/pg_loss"], 0.22)
    assert close(m["grpo/kl"], KL_EX)
    assert close(loss, 0.22 + 0.1 * KL_EX)
    assert close(m["grpo/clip_frac"], 2 / 5)  # the two "(clipped)" tokens
    assert close(m["grpo/ratio_mean"], (1 + 1.5 + 0.5 + 1.1 + 0.7) / 5)  # 0.96
    assert close(m["grpo/advantage_abs_mean"], 1.5)


def test_grpo_loss_gradient_by_hand():
    lp, old, _ = _ratio_example()
    loss, _ = grpo_loss(lp, old, None, t([1.0, -2.0]), MASK, kl_coef=0.0)
    loss.backward()
    # d/dlp of -A·ρ is -A·ρ; clipped tokens get 0; token mean divides by 5
    # row 0: -1·1/5 = -0.2, 0 (clipped), -1·0.5/5 = -0.1;  row 1: 2·1.1/5 = 0.44, 0 (clipped), 0 (padding)
    assert close(lp.grad, [[-0.2, 0.0, -0.1], [0.44, 0.0, 0.0]])


def test_grpo_loss_aggregations():
    lp, old, ref = _ratio_example()
    adv = t([1.0, -2.0])
    # per-row pg sums: -2.7 (3 tokens) and 3.8 (2 tokens)
    dr, m = grpo_loss(lp, old, ref, adv, MASK, kl_coef=0.0, loss_agg="seq-mean-token-sum-norm", max_len=4)
    assert close(dr, (-2.7 + 3.8) / 2 / 4)  # 0.1375: sums, mean over 2 sequences, / constant 4
    assert close(m["grpo/pg_loss"], 0.1375) and close(m["grpo/kl"], KL_EX)  # kl metric is always a token mean
    with pytest.raises(ValueError, match="max_len"):
        grpo_loss(lp, old, ref, adv, MASK, loss_agg="seq-mean-token-sum-norm")
    # GSPO's seq-mean-token-mean: each row's token mean, then the mean over rows: (-2.7/3 + 3.8/2) / 2 = 0.5
    sm, m = grpo_loss(lp, old, ref, adv, MASK, kl_coef=0.0, loss_agg="seq-mean-token-mean")
    assert close(sm, 0.5) and close(m["grpo/pg_loss"], 0.5)
    for unknown in ("sum", "seq-mean-token-sum"):  # the training config offers only LOSS_AGG_MODES
        with pytest.raises(ValueError, match="loss_agg"):
            grpo_loss(lp, old, ref, adv, MASK, loss_agg=unknown)


def test_grpo_on_policy_ratio_one_and_kl_requires_ref():
    lp, _, _ = _ratio_example()
    _, m = grpo_loss(lp, lp.detach(), None, t([1.0, -1.0]), MASK, kl_coef=0.0)
    assert m["grpo/ratio_mean"] == 1.0 and m["grpo/clip_frac"] == 0.0 and "grpo/kl" not in m
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(lp, lp.detach(), None, t([1.0, -1.0]), MASK, kl_coef=0.001)


def test_k3_nonnegative_and_zero_when_equal():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 6, generator=g) * 3, torch.randn(4, 6, generator=g) * 3
    assert (kl_k3(a, b) >= 0).all()
    assert kl_k3(a, a).abs().max().item() == 0.0
    kl, per_tok = kl_penalty_k3(a, a, torch.ones(4, 6))
    assert kl.item() == 0.0 and per_tok.abs().max().item() == 0.0


# ----------------------------------------------------------------------------------------------- PPO


def test_outcome_token_rewards():
    out = outcome_token_rewards(t([1.0, 2.0, 5.0]), torch.cat([MASK, torch.zeros(1, 3)]))
    # reward on each row's last real token; the all-padding row gets nothing
    assert close(out, [[0, 0, 1.0], [0, 2.0, 0], [0, 0, 0]])


def test_gae_gamma_lambda_one_is_return_minus_value():
    rewards = t([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    values = t([[0.5, 0.6, 0.7], [0.1, 0.2, 99.0]], requires_grad=True)  # 99 on padding: ignored
    adv, ret = gae(rewards, values, MASK, gamma=1.0, lam=1.0)
    # reward-to-go: row 0 [1, 1, 1], row 1 [2, 2, -]; A = return - value
    assert close(ret, [[1.0, 1.0, 1.0], [2.0, 2.0, 0.0]])
    assert close(adv, [[0.5, 0.4, 0.3], [1.9, 1.8, 0.0]])
    assert not adv.requires_grad and not ret.requires_grad


def test_gae_hand_gamma_lambda():
    rewards = t([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    values = t([[0.5, 0.6, 0.7], [0.2, 0.4, 7.0]])
    adv, ret = gae(rewards, values, MASK, gamma=0.9, lam=0.5)  # γλ = 0.45
    # row 0: δ2 = 1 - 0.7 = 0.3 (terminal); δ1 = 0.9·0.7 - 0.6 = 0.03; δ0 = 0.9·0.6 - 0.5 = 0.04
    #        A2 = 0.3; A1 = 0.03 + 0.45·0.3 = 0.165; A0 = 0.04 + 0.45·0.165 = 0.11425
    # row 1 (last real token at t=1): δ1 = 1 - 0.4 = 0.6; δ0 = 0.9·0.4 - 0.2 = 0.16; A0 = 0.16 + 0.45·0.6 = 0.43
    assert close(adv, [[0.11425, 0.165, 0.3], [0.43, 0.6, 0.0]])
    assert close(ret, [[0.61425, 0.765, 1.0], [0.63, 1.0, 0.0]])  # A + V


def test_whiten():
    x = t([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    w = whiten(x, MASK)
    # mean 3, unbiased var = (4 + 1 + 0 + 1 + 4) / 4 = 2.5
    s = math.sqrt(2.5)
    assert close(w, [[-2 / s, -1 / s, 0.0], [1 / s, 2 / s, 0.0]], tol=1e-5)
# shift_mean=False: rescaled around the mean, which is kept: (x - 3) / s + 3
    assert close(whiten(x, MASK, shift_mean=False), [[-2 / s + 3, -1 / s + 3, 3.0], [1 / s + 3, 2 / s + 3, 0.0]])


def test_ppo_policy_loss_hand_values():
    lp, old, _ = _ratio_example()
    adv = t([[1.0, 1.0, 1.0], [-2.0, -2.0, 7.0]])  # same numbers as the GRPO example, per token
    loss, m = ppo_policy_loss(lp, old, adv, MASK, clip_eps=0.2)
    assert close(loss, 0.22) and close(m["ppo/pg_loss"], 0.22)
    assert close(m["ppo/clip_frac"], 0.4)
    # approx_kl = mean(old - lp) = -(ln 1 + ln 1.5 + ln 0.5 + ln 1.1 + ln 0.7) / 5
    assert close(m["ppo/approx_kl"], -math.log(1.5 * 0.5 * 1.1 * 0.7) / 5)


def test_ppo_value_loss_clipping():
    values = t([[1.1, 1.5, 0.5]], requires_grad=True)
    old, ret, mask = t([[1.0, 1.0, 1.0]]), t([[2.0, 2.0, 0.0]]), torch.ones(1, 3)
    loss, m = ppo_value_loss(values, old, ret, mask, clip_range_value=0.2)
    # clipped V = [1.1, 1.2, 0.8]; (V-R)² = [0.81, 0.25, 0.25]; (Vc-R)² = [0.81, 0.64, 0.64]
    # 0.5 · mean(max) = 0.5 · (0.81 + 0.64 + 0.64) / 3 = 0.348333
    assert close(loss, 0.5 * 2.09 / 3) and close(m["ppo/value_loss"], 0.5 * 2.09 / 3)
    assert close(m["ppo/value_clip_frac"], 2 / 3)
    # EV: Var[R] = 8/9; R - V = [0.9, 0.5, -0.5], Var = 1.04 / 3; 1 - (1.04/3)/(8/9) = 1 - 0.39 = 0.61
    assert close(m["ppo/explained_variance"], 0.61)
    loss.backward()
    # only the unclipped token moves: d/dV 0.5 (V-R)² / 3 = (1.1 - 2) / 3 = -0.3; clipped ones get 0
    assert close(values.grad, [[-0.3, 0.0, 0.0]])
    _, m2 = ppo_value_loss(values, old, torch.ones(1, 3), mask)
    assert math.isnan(m2["ppo/explained_variance"])  # constant returns: undefined
    # constant only up to float rounding, as returns = (r - V) + V are when every reward is 0
    v = torch.randn(4, 6) * 0.05
    adv, ret = gae(torch.zeros(4, 6), v, torch.ones(4, 6))
    _, m3 = ppo_value_loss(v, v, ret, torch.ones(4, 6))
    assert math.isnan(m3["ppo/explained_variance"])


def test_ppo_actor_loss_combines_terms():
    lp, old, ref = _ratio_example()
    adv = t([[1.0, 1.0, 1.0], [-2.0, -2.0, 7.0]])
    entropy = t([[1.0, 1.0, 1.0], [2.0, 2.0, 9.0]])  # token mean over real tokens = (3 + 4) / 5 = 1.4
    kl, per_tok = kl_penalty_k3(lp, ref, MASK)
    assert close(kl, KL_EX) and per_tok[1, 2].item() == 0.0  # same k3 numbers as the GRPO test; padding 0
    assert close(per_tok, [[1 - LN2, 0, 0], [0, 2 - LN3, 0]])
    loss, m = ppo_actor_loss(lp, old, adv, MASK, ref_logprobs=ref, entropy=entropy, kl_coef=0.1, entropy_coef=0.5)
    total = 0.22 + 0.1 * KL_EX - 0.5 * 1.4  # ≈ -0.455835
    assert close(loss, total)
    assert close(m["ppo/kl"], KL_EX) and close(m["ppo/entropy"], 1.4) and close(m["ppo/actor_loss"], total)
    with pytest.raises(ValueError, match="ref_logprobs"):
        ppo_actor_loss(lp, old, adv, MASK, entropy=entropy)
    with pytest.raises(ValueError, match="entropy"):
        ppo_actor_loss(lp, old, adv, MASK, ref_logprobs=ref)
    loss0, m0 = ppo_actor_loss(lp, old, adv, MASK, kl_coef=0.0, entropy_coef=0.0)
    assert close(loss0, 0.22) and "ppo/kl" not in m0
