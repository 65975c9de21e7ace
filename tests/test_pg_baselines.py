"""The newer baselines' estimators and losses (baselines/pg_losses.py), ReVal's TBRM options, dynamic sampling's
refill and the algorithm registry, against hand-computed values (the arithmetic is written out next to each).
Equality with verl's own functions on random tensors is in tests_verl/test_verl_equality.py."""

from __future__ import annotations

import pytest
import torch

from baselines.grpo_loss import grpo_advantages, grpo_loss
from baselines.pg_losses import (
    groups_with_signal,
    gspo_loss,
    kl_in_reward,
    overlong_penalty,
    reinforcepp_advantages,
    reinforcepp_baseline_advantages,
    rloo_advantages,
)
from tbrm.config import ConfigError, TrainConfig


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_rloo_leaves_each_rollout_out_of_its_own_baseline():
    # group (1, 0, 0, 1): the baseline of rollout 0 is mean(0, 0, 1) = 1/3, so A_0 = 2/3; of rollout 1, mean(1, 0, 1)
    # = 2/3, so A_1 = -2/3. Group (1, 1, 1, 1): every baseline is 1, A = 0.
    adv = rloo_advantages(t([1, 0, 0, 1, 1, 1, 1, 1]), 4)
    torch.testing.assert_close(adv, t([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match=">= 2"):
        rloo_advantages(t([1.0]), 1)


def test_reinforcepp_returns_carry_the_kl_penalty_and_are_whitened_over_the_batch():
    # Row 0: 2 tokens, reward 1, log pi_old - log pi_ref = (0.5, 0.5), kl_coef 0.2 -> token rewards (-0.1, 1 - 0.1),
    # returns (0.8, 0.9). Row 1: 1 token, reward 0, kl 0 -> return 0. Whitened over the 3 real tokens: mean 17/30,
    # unbiased var = ((0.8-m)^2 + (0.9-m)^2 + m^2) / 2.
    mask = t([[1, 1], [1, 0]])
    old, ref = t([[-1.0, -1.0], [-2.0, -2.0]]), t([[-1.5, -1.5], [-2.0, -5.0]])
    pen = kl_in_reward(old, ref, mask, 0.2)
    torch.testing.assert_close(pen, t([[-0.1, -0.1], [0.0, 0.0]]))
    adv, ret = reinforcepp_advantages(t([1.0, 0.0]), mask, pen)
    torch.testing.assert_close(ret, t([[0.8, 0.9], [0.0, 0.0]]))
    m = 1.7 / 3
    sd = (((0.8 - m) ** 2 + (0.9 - m) ** 2 + m ** 2) / 2 + 1e-8) ** 0.5
    torch.testing.assert_close(adv, t([[(0.8 - m) / sd, (0.9 - m) / sd], [-m / sd, 0.0]]))


def test_reinforcepp_baseline_centres_by_group_then_whitens():
    # groups (1, 0) and (1, 1): centred 0.5, -0.5, 0, 0 on every token (one token each); mean 0, unbiased var 1/6
    adv = reinforcepp_baseline_advantages(t([1, 0, 1, 1]), torch.ones(4, 1), 2)
    torch.testing.assert_close(adv.squeeze(1), t([0.5, -0.5, 0, 0]) / (1 / 6 + 1e-8) ** 0.5)


def test_overlong_penalty_and_dynamic_sampling_criterion():
    # L_max 10, buffer 4: no penalty up to 6 tokens, then -1/4 per token, -1 at 10
    assert overlong_penalty(torch.tensor([3, 6, 7, 8, 10]), 10, 4).tolist() == [0, 0, -0.25, -0.5, -1]
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(torch.tensor([1]), 10, 0)
    assert groups_with_signal(t([1, 1, 0, 1, 0, 0]), 2).tolist() == [False, True, False]


def test_gspo_on_policy_gradient_is_grpos_with_sequence_mean_aggregation():
    """On-policy (pi_theta = pi_old) every sequence ratio is 1, inside any band, so GSPO's gradient is
    sum_t A_i grad log pi / |y_i| averaged over sequences: GRPO's with seq-mean-token-mean."""
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(4, 5, generator=g)
    mask = t([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    adv = grpo_advantages(t([1, 0, 0, 1]), 2)
    a, b = lp.clone().requires_grad_(), lp.clone().requires_grad_()
    la, ma = gspo_loss(a, lp, adv, mask, 3e-4, 4e-4)
    lb, _ = grpo_loss(b, lp, None, adv, mask, kl_coef=0, loss_agg="seq-mean-token-mean")
    la.backward()
    lb.backward()
    torch.testing.assert_close(a.grad, b.grad)
    assert ma["gspo/seq_ratio_mean"] == pytest.approx(1.0) and ma["gspo/clip_frac"] == 0


def test_gspo_clips_whole_sequences():
    # one sequence, A = 1, two tokens each up by log 1.1 against pi_old: sequence ratio 1.1 > 1 + 0.05, so the
    # clipped branch is active on both tokens and no gradient flows
    lp = torch.log(t([[0.5, 0.5]])) + torch.log(t(1.1))
    x = lp.clone().requires_grad_()
    loss, m = gspo_loss(x, torch.log(t([[0.5, 0.5]])), t([1.0]), torch.ones(1, 2), 0.05, 0.05)
    loss.backward()
    assert loss.item() == pytest.approx(-1.05) and m["gspo/clip_frac"] == 1 and (x.grad == 0).all()


def test_dapo_clip_higher_lets_a_positive_advantage_ratio_rise_further():
    # ratio 1.25, A = 1: the symmetric clip (0.2) caps it at 1.2 (clipped, no gradient); clip-higher 0.28 does not
    lp, old = torch.log(t([[1.25]])), t([[0.0]])
    sym, ms = grpo_loss(lp, old, None, t([1.0]), torch.ones(1, 1), clip_eps=0.2, kl_coef=0)
    high, mh = grpo_loss(lp, old, None, t([1.0]), torch.ones(1, 1), clip_eps=0.2, clip_eps_high=0.28, kl_coef=0)
    assert sym.item() == pytest.approx(-1.2) and ms["grpo/clip_frac"] == 1
    assert high.item() == pytest.approx(-1.25) and mh["grpo/clip_frac"] == 0


def test_dynamic_sampling_takes_kept_groups_in_order_up_to_the_batch():
    from tbrm.trainer import take_groups

    kept: list = []
    take_groups(kept, ["a0", "a1", "b0", "b1", "c0", "c1"], [True, False, True], n=2, want=3)
    assert kept == ["a0", "a1", "c0", "c1"]  # round 1: 2 of the 3 groups wanted
    take_groups(kept, ["d0", "d1", "e0", "e1"], [True, True], n=2, want=3)
    assert kept == ["a0", "a1", "c0", "c1", "d0", "d1"]  # refill round: only the one group still missing
    with pytest.raises(ValueError, match="groups of 2"):
        take_groups([], ["x"], [True], n=2, want=1)


def _tbrm(cfg):
    from tbrm.algorithm import TBRM

    return TBRM(cfg, policy=None, device=torch.device("cpu"))


def test_reval_center_rewards_and_length_scaled_beta_by_hand():
    from tbrm.rollout import collate

    # group (1, 0) centred to (0.5, -0.5); lengths 1 and 4 of max 4 with beta 0.01: beta_i 0.0025 and 0.01
    algo = _tbrm(TrainConfig(rollouts_per_prompt=2, center_rewards=True, beta=0.01, beta_length_scaled=True,
                             max_new_tokens=4))
    batch = collate([[1], [1]], [[5], [6, 7, 8, 9]], [1.0, 0.0], [0, 0], pad_id=0)
    metrics = algo.prepare(batch, None)
    assert batch.extra["tbrm_rewards"].tolist() == [0.5, -0.5]
    torch.testing.assert_close(batch.extra["tbrm_beta"], t([0.0025, 0.01]))
    assert metrics["tbrm/beta_mean"] == pytest.approx(0.00625)
    # the loss reads both: targets 0.5/0.0025 = 200 and -0.5/0.01 = -50, with V = 0 and log pi = log pi_ref
    from tbrm.rollout import ResponseOutputs

    z = torch.zeros(2, 4)
    batch.extra["ref_logprobs"] = z
    loss, m = algo.loss(batch, ResponseOutputs(logits=torch.zeros(2, 4, 1), logprobs=z, v_start=torch.zeros(2)))
    assert loss.item() == pytest.approx((200 ** 2 + 50 ** 2) / 2)
    assert m["tbrm/reward_over_beta_mean"] == pytest.approx((200 - 50) / 2)


def test_reval_reference_resets_every_k_steps():
    # K = 3: the reference becomes the policy before steps 4, 7, 10 (after 3, 6, 9 updates); never with K = 0
    assert [s for s in range(1, 11) if _tbrm(TrainConfig(ref_reset_every=3)).reset_reference(s)] == [4, 7, 10]
    assert not any(_tbrm(TrainConfig()).reset_reference(s) for s in range(1, 11))


@pytest.mark.parametrize("settings, message", [
    (dict(algorithm="rloo", rollouts_per_prompt=1), "rollouts_per_prompt must be >= 2"),
    (dict(algorithm="dapo", rollouts_per_prompt=4, loss_agg="seq-mean-token-mean"), "token mean"),
    (dict(algorithm="grpo", rollouts_per_prompt=4, center_rewards=True), "option of the TBRM loss"),
    (dict(algorithm="grpo", rollouts_per_prompt=4, dynamic_sampling=True), "option of the DAPO loss"),
    (dict(algorithm="ppo", clip_eps_high=0.28), "option of the GRPO/RLOO"),
    (dict(algorithm="tbrm", center_rewards=True), "center_rewards subtracts"),
    (dict(algorithm="tbrm", ref_reset_every=5, ref_model="x"), "leave ref_model unset"),
    (dict(algorithm="gspo", rollouts_per_prompt=4, offline_trajectories="t.jsonl"), "algorithm=tbrm only"),
    (dict(algorithm="sarsa"), "unknown algorithm 'sarsa'; choose one of tbrm, grpo, ppo, rloo"),
])
def test_the_registry_refuses_settings_the_algorithm_cannot_honour(settings, message):
    from baselines.registry import validate

    with pytest.raises(ConfigError, match=message):
        validate(TrainConfig(**settings))


def test_every_registered_algorithm_declares_what_defines_it():
    from dataclasses import fields

    from baselines.registry import CLASSES, method_label

    names = {f.name for f in fields(TrainConfig)}
    assert len({c.name for c in CLASSES}) == len(CLASSES) and len({c.label for c in CLASSES}) == len(CLASSES)
    for c in CLASSES:
        assert c.paper and set(c.own_settings) <= names, c
    assert method_label({"algorithm": "tbrm", "rollouts_per_prompt": 4, "subtract_ref_value": True,
                         "center_rewards": True, "ref_reset_every": 10, "beta_length_scaled": True}) == "TBRM-ReVal n=4"
    assert method_label({"algorithm": "tbrm", "rollouts_per_prompt": 1, "subtract_ref_value": True}) == "TBRM-Vref n=1"
    assert method_label({"algorithm": "dapo", "rollouts_per_prompt": 4}) == "DAPO n=4"
    assert method_label({"algorithm": "nope", "rollouts_per_prompt": 4}) is None
