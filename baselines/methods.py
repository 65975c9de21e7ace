"""RLOO, REINFORCE++ (and its baseline variant), DAPO and GSPO on the shared loop: each is its advantage estimator
and loss (baselines/pg_losses.py) behind the policy-gradient base of baselines/grpo.py."""

from __future__ import annotations

import torch

from baselines.grpo import GRPO, PG_SETTINGS, PolicyGradient
from baselines.grpo_loss import grpo_advantages
from baselines.pg_losses import (
    groups_with_signal,
    gspo_loss,
    kl_in_reward,
    overlong_penalty,
    reinforcepp_advantages,
    reinforcepp_baseline_advantages,
    rloo_advantages,
)


class RLOO(PolicyGradient):
    """REINFORCE with a leave-one-out baseline (arXiv 2402.14740): A_i = r_i − mean of the other rollouts."""

    name = "rloo"
    label = "RLOO"
    paper = "Ahmadian et al. 2024, arXiv 2402.14740"
    min_rollouts = 2

    def advantages(self, batch):
        return rloo_advantages(batch.rewards, self.cfg.rollouts_per_prompt), {}


class REINFORCEPP(PolicyGradient):
    """REINFORCE++ (arXiv 2501.03262): KL to the reference as a per-token reward term (k1, coefficient kl_coef),
    returns whitened over the batch; no group baseline, so n=1 works. The KL is never also a loss term."""

    name = "reinforcepp"
    label = "REINFORCE++"
    paper = "Hu 2025, arXiv 2501.03262"
    kl_in_loss = False

    def advantages(self, batch):
        penalty = None
        if "ref_logprobs" in batch.extra and self.cfg.kl_coef > 0:
            # the sampling policy's log-probs (pi_old): the pre-update forward, as verl's old_log_prob
            old = batch.extra.get("old_logprobs")
            if old is None:
                old = batch.extra["policy_logprobs"]
            penalty = kl_in_reward(old, batch.extra["ref_logprobs"], batch.response_mask, self.cfg.kl_coef)
        adv, _ = reinforcepp_advantages(batch.rewards, batch.response_mask, penalty, gamma=self.cfg.gae_gamma)
        metrics = {}
        if penalty is not None:
            metrics["reinforcepp/kl_reward_mean"] = float(penalty.sum(-1).mean())
        return adv, metrics

    @torch.no_grad()
    def prepare(self, batch, policy_logprobs):
        if self.cfg.policy_epochs == 1 and self.cfg.kl_coef > 0:
            batch.extra["policy_logprobs"] = policy_logprobs(batch)  # pi_old for the in-reward KL
        return super().prepare(batch, policy_logprobs)


class REINFORCEPPBaseline(PolicyGradient):
    """REINFORCE++-baseline (arXiv 2501.03262 v3): the group mean as baseline, whitened over the batch; the KL is a
    k3 loss term, as GRPO's."""

    name = "reinforcepp-baseline"
    label = "REINFORCE++-baseline"
    paper = "Hu 2025, arXiv 2501.03262"
    min_rollouts = 2

    def advantages(self, batch):
        return reinforcepp_baseline_advantages(batch.rewards, batch.response_mask, self.cfg.rollouts_per_prompt), {}


class DAPO(PolicyGradient):
    """DAPO (arXiv 2503.14476): GRPO's group advantages with clip-higher (clip_eps_low/high), token-mean loss,
    dynamic sampling (the loop drops all-equal groups and refills, `keep_groups`) and overlong shaping: a soft
    length penalty added to the reward (overlong_buffer) and/or no loss from truncated responses (mask_truncated)."""

    name = "dapo"
    label = "DAPO"
    paper = "Yu et al. 2025, arXiv 2503.14476"
    min_rollouts = 2
    own_settings = PG_SETTINGS + ("dynamic_sampling", "dynamic_sampling_rounds", "overlong_buffer",
                                  "overlong_penalty_factor", "mask_truncated")

    @classmethod
    def check(cls, cfg):
        problems = super().check(cfg)
        if cfg.loss_agg != "token-mean":
            problems.append(f"DAPO's loss is a token mean (arXiv 2503.14476 Sec. 3.3); loss_agg={cfg.loss_agg!r}")
        return problems

    def keep_groups(self, rewards):
        return groups_with_signal(rewards, self.cfg.rollouts_per_prompt) if self.cfg.dynamic_sampling else None

    def advantages(self, batch):
        cfg, metrics = self.cfg, {}
        rewards = batch.rewards
        if cfg.overlong_buffer:
            lengths = batch.response_mask.sum(-1)
            pen = overlong_penalty(lengths, cfg.max_new_tokens, cfg.overlong_buffer, cfg.overlong_penalty_factor)
            rewards = rewards + pen
            metrics["dapo/overlong_penalty_mean"] = float(pen.mean())
        if cfg.mask_truncated and "truncated" in batch.extra:
            keep = (~batch.extra["truncated"].bool()).float().unsqueeze(-1)
            batch.response_mask = batch.response_mask * keep
            metrics["dapo/truncated_masked"] = float(1 - keep.mean())
        return grpo_advantages(rewards, cfg.rollouts_per_prompt, scale_by_std=cfg.scale_adv_by_std), metrics


class GSPO(GRPO):
    """GSPO (arXiv 2507.18071): GRPO's group advantages with one importance ratio per sequence (the geometric mean
    of its token ratios), clipped per sequence in [1 − clip_eps_low, 1 + clip_eps_high]."""

    name = "gspo"
    label = "GSPO"
    paper = "Zheng et al. 2025, arXiv 2507.18071"

    def loss(self, mb, out):
        old = mb.extra.get("old_logprobs", out.logprobs.detach())
        low, high = self.clip_band()
        return gspo_loss(out.logprobs, old, mb.extra["advantages"], mb.response_mask, clip_eps_low=low,
                         clip_eps_high=high, loss_agg=self.cfg.loss_agg, max_len=self.cfg.max_new_tokens,
                         ref_logprobs=mb.extra.get("ref_logprobs"), kl_coef=self.cfg.kl_coef)
