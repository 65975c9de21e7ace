"""GRPO (Shao et al. 2024, arXiv 2402.03300) and Dr. GRPO (Liu et al. 2025, arXiv 2503.20783) on the shared loop.

n rollouts per prompt; each rollout's advantage is its reward relative to its group (divided by the group std
for GRPO, not for Dr. GRPO); clipped importance ratio; k3 KL to the reference as a loss term.
"""

from __future__ import annotations

import torch

from baselines.grpo_loss import grpo_advantages, grpo_loss
from tbrm.algorithm import Algorithm


class GRPO(Algorithm):
    name = "grpo"
    tempered_logprobs = True

    def __init__(self, cfg, policy, device):
        super().__init__(cfg, policy, device)
        self.needs_reference = cfg.kl_coef > 0
        self.token_weighted = cfg.loss_agg == "token-mean"

    @torch.no_grad()
    def prepare(self, batch, policy_logprobs):
        # Rollouts of one prompt are consecutive rows (the loop guarantees it), as grpo_advantages expects.
        adv = grpo_advantages(batch.rewards, self.cfg.rollouts_per_prompt, scale_by_std=self.cfg.scale_adv_by_std)
        batch.extra["advantages"] = adv
        if self.cfg.policy_epochs > 1:
            # Only with several passes does pi_old differ from pi_theta; with one pass the ratio is exactly 1
            # and this extra forward would be wasted.
            batch.extra["old_logprobs"] = policy_logprobs(batch)
        groups = (batch.rewards.view(-1, self.cfg.rollouts_per_prompt).std(-1) > 0).float()
        return {"grpo/groups_with_signal": groups.mean().item()}

    def loss(self, mb, out):
        old = mb.extra.get("old_logprobs", out.logprobs.detach())
        return grpo_loss(out.logprobs, old, mb.extra.get("ref_logprobs"), mb.extra["advantages"], mb.response_mask,
                         clip_eps=self.cfg.clip_eps, kl_coef=self.cfg.kl_coef, loss_agg=self.cfg.loss_agg,
                         max_len=self.cfg.max_new_tokens)
