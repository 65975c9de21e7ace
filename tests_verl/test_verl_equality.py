"""Each advantage estimator and loss of the newer baselines equals verl's own function for the same method on the
same random tensors (within 1e-6; gradients too where verl returns a loss), and the options verl has no function
for (ReVal's TBRM changes) match small cases computed by hand.

verl 0.9.1's ``verl.trainer.ppo.core_algos`` is the independent implementation: RLOO, REINFORCE++ (and -baseline)
estimators, GRPO's (DAPO's and GSPO's advantages), the vanilla clipped loss with clip_ratio_low/high (DAPO's
clip-higher) and its aggregation modes, GSPO's loss, and the in-reward KL. verl's vanilla loss also has a dual clip
(`clip_ratio_c`, a cap on the loss of negative advantages) this suite's losses do not: it is set above every ratio
the tensors reach, so it never binds (asserted)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from verl.trainer.config import AlgoConfig
from verl.trainer.ppo import core_algos as V
from verl.workers.config.actor import ActorConfig

from baselines.grpo_loss import grpo_advantages, grpo_loss
from baselines.pg_losses import (
    gspo_loss,
    kl_in_reward,
    overlong_penalty,
    reinforcepp_advantages,
    reinforcepp_baseline_advantages,
    rloo_advantages,
)
from tbrm.loss import tbrm_loss

TOL = dict(rtol=1e-6, atol=1e-6)
B, N, T = 12, 4, 9  # 3 prompts x 4 rollouts, up to 9 tokens


def _tensors(seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    rewards = torch.randint(0, 2, (B,), generator=g).float() + 0.25 * torch.randn(B, generator=g)
    old = -torch.rand(B, T, generator=g) * 3
    lp = old + 0.3 * torch.randn(B, T, generator=g)  # ratios well away from 1: the clips bind
    ref = old + 0.2 * torch.randn(B, T, generator=g)
    return mask, rewards, old, lp, ref


def _token_scores(rewards, mask):
    """verl's token_level_rewards: the outcome reward on each response's last real token."""
    out = torch.zeros_like(mask)
    out[torch.arange(B), mask.sum(-1).long() - 1] = rewards
    return out


INDEX = np.repeat(np.arange(B // N), N)  # verl's uid per prompt; ours: consecutive groups of N


@pytest.mark.parametrize("seed", range(3))
def test_rloo_advantages_equal_verls(seed):
    mask, rewards, *_ = _tensors(seed)
    theirs, _ = V.compute_rloo_outcome_advantage(_token_scores(rewards, mask), mask, INDEX)
    torch.testing.assert_close(rloo_advantages(rewards, N)[:, None] * mask, theirs, **TOL)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("std", [True, False])
def test_grpo_advantages_of_dapo_and_gspo_equal_verls(seed, std):
    mask, rewards, *_ = _tensors(seed)
    theirs, _ = V.compute_grpo_outcome_advantage(_token_scores(rewards, mask), mask, INDEX,
                                                 norm_adv_by_std_in_grpo=std)
    torch.testing.assert_close(grpo_advantages(rewards, N, scale_by_std=std)[:, None] * mask, theirs, **TOL)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforcepp_with_kl_in_the_reward_equals_verls(seed, gamma):
    mask, rewards, old, _, ref = _tensors(seed)
    kl_coef = 0.05
    # verl: token_level_rewards = scores - kl_coef * kl_penalty(old, ref, "kl") (ray_trainer.apply_kl_penalty)
    verl_kl = V.kl_penalty(old, ref, kl_penalty="kl")
    token_rewards = _token_scores(rewards, mask) - kl_coef * verl_kl * mask
    theirs_adv, theirs_ret = V.compute_reinforce_plus_plus_outcome_advantage(
        token_rewards, mask, config=AlgoConfig(gamma=gamma))
    ours_adv, ours_ret = reinforcepp_advantages(rewards, mask, kl_in_reward(old, ref, mask, kl_coef), gamma=gamma)
    torch.testing.assert_close(ours_ret, theirs_ret, **TOL)
    torch.testing.assert_close(ours_adv, theirs_adv, **TOL)


@pytest.mark.parametrize("seed", range(3))
def test_reinforcepp_baseline_equals_verls(seed):
    mask, rewards, *_ = _tensors(seed)
    theirs, _ = V.compute_reinforce_plus_plus_baseline_outcome_advantage(_token_scores(rewards, mask), mask, INDEX)
    torch.testing.assert_close(reinforcepp_baseline_advantages(rewards, mask, N), theirs, **TOL)


def _actor(**kw) -> ActorConfig:
    return ActorConfig(strategy="fsdp", rollout_n=N, ppo_micro_batch_size=2, **kw)


def _grads(fn, lp):
    x = lp.clone().requires_grad_()
    loss = fn(x)
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("clip", [(0.2, 0.2), (0.2, 0.28)])  # GRPO/RLOO's symmetric clip, DAPO's clip-higher
def test_clipped_policy_loss_equals_verls_vanilla_loss_and_gradient(seed, agg, clip):
    mask, rewards, old, lp, _ = _tensors(seed)
    adv = rloo_advantages(rewards, N)
    low, high = clip
    big_c = 1e6  # verl's dual clip: above every ratio here, so it never binds
    ratio = torch.exp(lp - old)
    assert ratio.max() < big_c and ((ratio < 1 - low) | (ratio > 1 + high)).any()  # the clip itself binds
    cfg = _actor(clip_ratio=low, clip_ratio_low=low, clip_ratio_high=high, clip_ratio_c=big_c,
                 loss_agg_mode=agg)
    theirs, theirs_g = _grads(lambda x: V.compute_policy_loss_vanilla(
        old, x, adv[:, None] * mask, mask, loss_agg_mode=agg, config=cfg)[0], lp)
    ours, ours_g = _grads(lambda x: grpo_loss(x, old, None, adv, mask, clip_eps=low, clip_eps_high=high, kl_coef=0,
                                              loss_agg=agg, max_len=T)[0], lp)
    torch.testing.assert_close(ours, theirs, **TOL)
    torch.testing.assert_close(ours_g, theirs_g, **TOL)


@pytest.mark.parametrize("seed", range(3))
def test_token_level_advantages_through_the_loss_equal_verls(seed):
    """REINFORCE++ feeds per-token advantages to the same clipped loss."""
    mask, rewards, old, lp, ref = _tensors(seed)
    adv, _ = reinforcepp_advantages(rewards, mask, kl_in_reward(old, ref, mask, 0.05))
    cfg = _actor(clip_ratio=0.2, clip_ratio_c=1e6)
    theirs, theirs_g = _grads(lambda x: V.compute_policy_loss_vanilla(old, x, adv, mask, config=cfg)[0], lp)
    ours, ours_g = _grads(lambda x: grpo_loss(x, old, None, adv, mask, clip_eps=0.2, kl_coef=0)[0], lp)
    torch.testing.assert_close(ours, theirs, **TOL)
    torch.testing.assert_close(ours_g, theirs_g, **TOL)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "token-mean"])
def test_gspo_loss_and_gradient_equal_verls(seed, agg):
    mask, rewards, old, lp, _ = _tensors(seed)
    lp = old + 0.05 * (lp - old)  # sequence ratios near 1, some in and some out of a 0.003/0.004 band
    adv = grpo_advantages(rewards, N)
    cfg = _actor(clip_ratio=0.003, clip_ratio_low=0.003, clip_ratio_high=0.004, loss_agg_mode=agg)
    theirs, theirs_g = _grads(lambda x: V.compute_policy_loss_gspo(old, x, adv[:, None] * mask, mask,
                                                                   loss_agg_mode=agg, config=cfg)[0], lp)
    ours, ours_g = _grads(lambda x: gspo_loss(x, old, adv, mask, clip_eps_low=0.003, clip_eps_high=0.004,
                                              loss_agg=agg)[0], lp)
    _, metrics = gspo_loss(lp, old, adv, mask, clip_eps_low=0.003, clip_eps_high=0.004, loss_agg=agg)
    assert 0 < metrics["gspo/clip_frac"] < 1  # the sequence clip binds for some sequences, not all
    torch.testing.assert_close(ours, theirs, **TOL)
    torch.testing.assert_close(ours_g, theirs_g, **TOL)


def test_overlong_penalty_equals_verls_dapo_reward_manager_rule():
    """verl's DAPO reward manager (verl/workers/reward_manager/dapo.py) adds min(-(|y| - (L - buf)) / buf * f, 0)."""
    max_len, buf, factor = 20, 8, 1.0
    lengths = torch.arange(1, max_len + 1)
    theirs = torch.tensor([min(-(n - (max_len - buf)) / buf * factor, 0) for n in lengths.tolist()])
    torch.testing.assert_close(overlong_penalty(lengths, max_len, buf, factor), theirs, **TOL)
    assert overlong_penalty(torch.tensor([12, 16, 20]), 20, 8).tolist() == [0.0, -0.5, -1.0]  # by hand


# ---- ReVal's TBRM options: verl has no function for them; small cases by hand ---------------------------------


def test_center_rewards_by_hand():
    """Group (1, 0): centred rewards (0.5, -0.5). One token each, log pi - log pi_ref = 0, V = 0, beta = 0.5:
    residuals 0 - 0.5/0.5 = -1 and 0 + 0.5/0.5 = +1, loss = 1; the wrong answer's target is now below the
    reference (its residual is positive: gradient descent lowers its log-probability)."""
    from tbrm.algorithm import TBRM
    from tbrm.config import TrainConfig
    from tbrm.rollout import collate

    cfg = TrainConfig(rollouts_per_prompt=2, center_rewards=True, beta=0.5)
    batch = collate([[1], [1]], [[5], [6]], [1.0, 0.0], [0, 0], pad_id=0)
    algo = TBRM.__new__(TBRM)
    algo.cfg = cfg
    algo.prepare(batch, None)
    assert batch.extra["tbrm_rewards"].tolist() == [0.5, -0.5]
    zeros = torch.zeros(2, 1)
    loss, m = tbrm_loss(torch.zeros(2), zeros, zeros, torch.ones(2, 1), batch.extra["tbrm_rewards"], cfg.beta)
    assert loss.item() == pytest.approx(1.0) and m["tbrm/residual_mean"] == pytest.approx(0.0)


def test_length_scaled_beta_by_hand():
    """max_new_tokens 4, beta 0.01: lengths 1 and 4 give beta_i 0.0025 and 0.01, targets r/beta_i 400 and 100."""
    from tbrm.algorithm import TBRM
    from tbrm.config import TrainConfig
    from tbrm.rollout import collate

    cfg = TrainConfig(beta=0.01, beta_length_scaled=True, max_new_tokens=4)
    batch = collate([[1], [1]], [[5], [6, 7, 8, 9]], [1.0, 1.0], [0, 1], pad_id=0)
    algo = TBRM.__new__(TBRM)
    algo.cfg = cfg
    algo.prepare(batch, None)
    torch.testing.assert_close(batch.extra["tbrm_beta"], torch.tensor([0.0025, 0.01]))
    z = torch.zeros(2, 4)
    _, m = tbrm_loss(torch.zeros(2), z, z, batch.response_mask, batch.rewards, batch.extra["tbrm_beta"])
    assert m["tbrm/reward_over_beta_mean"] == pytest.approx((400 + 100) / 2)


def test_reference_resets_every_k_steps_by_hand():
    """K = 3: the reference becomes the policy before steps 4, 7, 10 (after 3, 6, 9 updates); never with K = 0."""
    from tbrm.algorithm import TBRM
    from tbrm.config import TrainConfig

    algo = TBRM.__new__(TBRM)
    algo.cfg = TrainConfig(ref_reset_every=3)
    assert [s for s in range(1, 11) if algo.reset_reference(s)] == [4, 7, 10]
    algo.cfg = TrainConfig()
    assert not any(algo.reset_reference(s) for s in range(1, 11))

