"""GRPO (Shao et al. 2024, arXiv 2402.03300) and Dr. GRPO (Liu et al. 2025, arXiv 2503.20783) on the shared loop,
and the policy-gradient base that GRPO, RLOO, REINFORCE++, DAPO and GSPO share.

n rollouts per prompt; each rollout's advantage is its reward relative to its group (divided by the group std
for GRPO, not for Dr. GRPO); clipped importance ratio; k3 KL to the reference as a loss term.
"""

from __future__ import annotations

import torch

from baselines.grpo_loss import grpo_advantages, grpo_loss
from tbrm.algorithm import Algorithm

# what every clipped policy-gradient method here reads and TBRM / PPO do not
PG_SETTINGS = ("clip_eps_low", "clip_eps_high")


class PolicyGradient(Algorithm):
    """A critic-free policy-gradient method: `advantages` (per sequence [B] or per token [B, T]) computed once
    before the update, then the clipped surrogate (`grpo_loss`) with the method's clip band, aggregation and KL."""

    tempered_logprobs = True
    own_settings = PG_SETTINGS
    kl_in_loss = True  # False: the method puts its KL in the reward (REINFORCE++), never in the loss

    def __init__(self, cfg, policy, device):
        super().__init__(cfg, policy, device)
        self.needs_reference = cfg.kl_coef > 0
        self.token_weighted = cfg.loss_agg == "token-mean"

    def clip_band(self) -> tuple[float, float]:
        """(ε_low, ε_high): clip_eps_low / clip_eps_high, each clip_eps where unset (verl's clip_ratio_low/high)."""
        low = self.cfg.clip_eps if self.cfg.clip_eps_low is None else self.cfg.clip_eps_low
        return low, self.cfg.clip_eps if self.cfg.clip_eps_high is None else self.cfg.clip_eps_high

    def advantages(self, batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    @torch.no_grad()
    def prepare(self, batch, policy_logprobs):
        if self.cfg.policy_epochs > 1:
            # Only with several passes does pi_old differ from pi_theta; with one pass the ratio is exactly 1
            # and this extra forward would be wasted.
            batch.extra["old_logprobs"] = policy_logprobs(batch)
        adv, metrics = self.advantages(batch)
        batch.extra["advantages"] = adv
        n = self.cfg.rollouts_per_prompt
        if n > 1:
            groups = (batch.rewards.view(-1, n).std(-1) > 0).float()
            metrics[f"{self.name}/groups_with_signal"] = groups.mean().item()
        return metrics

    def loss(self, mb, out):
        old = mb.extra.get("old_logprobs", out.logprobs.detach())
        low, high = self.clip_band()
        return grpo_loss(out.logprobs, old, mb.extra.get("ref_logprobs") if self.kl_in_loss else None,
                         mb.extra["advantages"], mb.response_mask, clip_eps=low, clip_eps_high=high,
                         kl_coef=self.cfg.kl_coef if self.kl_in_loss else 0.0, loss_agg=self.cfg.loss_agg,
                         max_len=self.cfg.max_new_tokens, prefix=self.name)


class GRPO(PolicyGradient):
    name = "grpo"
    label = "GRPO"
    paper = "Shao et al. 2024, arXiv 2402.03300 (Dr. GRPO: Liu et al. 2025, arXiv 2503.20783)"
    min_rollouts = 2

    def advantages(self, batch):
        # Rollouts of one prompt are consecutive rows (the loop guarantees it), as grpo_advantages expects.
        return grpo_advantages(batch.rewards, self.cfg.rollouts_per_prompt,
                               scale_by_std=self.cfg.scale_adv_by_std), {}
