"""PPO (Schulman et al. 2017, arXiv 1707.06347) with a critic and GAE, on the shared loop.

The critic is a copy of the policy's decoder with a scalar value head (the paper's PPO baseline uses a critic of
the same size as the actor), trained with its own AdamW at `critic_lr`. The outcome reward sits on the last
response token; GAE (gamma, lambda) turns it into per-token advantages, whitened over the batch. Actor loss:
clipped surrogate + kl_coef * k3 KL to the reference - entropy_coef * entropy.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from baselines.ppo_loss import gae, outcome_token_rewards, ppo_actor_loss, ppo_value_loss, whiten
from tbrm.algorithm import Algorithm, adamw
from evals.models import autocast_context


class Critic(nn.Module):
    def __init__(self, policy):
        super().__init__()
        self.decoder = copy.deepcopy(policy.get_decoder())
        self.decoder.requires_grad_(True)
        self.value_head = nn.Linear(policy.config.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)  # start at V=0: no arbitrary initial baseline
        nn.init.zeros_(self.value_head.bias)

    def forward(self, batch, autocast="none"):
        W, T = batch.prompt_width, batch.response_ids.shape[1]
        with autocast_context(batch.input_ids.device, autocast):
            h = self.decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                             position_ids=batch.position_ids, use_cache=False).last_hidden_state
        # value of the state before each response token: the same slice as the policy's response logits
        return self.value_head(h[:, W - 1 : W - 1 + T].float()).squeeze(-1)


class PPO(Algorithm):
    name = "ppo"
    label = "PPO"
    paper = "Schulman et al. 2017, arXiv 1707.06347"
    own_settings = ("critic_lr", "value_clip", "gae_lambda", "whiten_advantages")
    token_weighted = True
    tempered_logprobs = True

    def __init__(self, cfg, policy, device):
        super().__init__(cfg, policy, device)
        self.needs_reference = cfg.kl_coef > 0
        self.critic = Critic(policy).to(device)
        if cfg.gradient_checkpointing and hasattr(self.critic.decoder, "gradient_checkpointing_enable"):
            self.critic.decoder.gradient_checkpointing_enable()
        self.critic_opt = adamw(self.critic.parameters(), lr=cfg.critic_lr, weight_decay=0.0)

    @torch.no_grad()
    def prepare(self, batch, policy_logprobs):
        values = self.critic(batch, self.cfg.autocast)
        rewards = outcome_token_rewards(batch.rewards, batch.response_mask)
        adv, returns = gae(rewards, values, batch.response_mask, self.cfg.gae_gamma, self.cfg.gae_lambda)
        if self.cfg.whiten_advantages:
            adv = whiten(adv, batch.response_mask)
        batch.extra.update(old_values=values, returns=returns, advantages=adv)
        if self.cfg.policy_epochs > 1:
            batch.extra["old_logprobs"] = policy_logprobs(batch)
        m = batch.response_mask
        return {"ppo/value_mean": float((values * m).sum() / m.sum().clamp(min=1))}

    def loss(self, mb, out):
        old = mb.extra.get("old_logprobs", out.logprobs.detach())
        actor, metrics = ppo_actor_loss(
            out.logprobs, old, mb.extra["advantages"], mb.response_mask, ref_logprobs=mb.extra.get("ref_logprobs"),
            entropy=out.entropy() if self.cfg.entropy_coef > 0 else None, clip_eps=self.cfg.clip_eps,
            kl_coef=self.cfg.kl_coef, entropy_coef=self.cfg.entropy_coef)
        values = self.critic(mb, self.cfg.autocast)
        vloss, vmetrics = ppo_value_loss(values, mb.extra["old_values"], mb.extra["returns"], mb.response_mask,
                                         self.cfg.value_clip)
        # Actor and critic share no parameters, so one backward of the sum trains both.
        return actor + vloss, {**metrics, **vmetrics}

    def after_backward(self, step):
        norm = torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.cfg.grad_clip)
        self.critic_opt.step()
        self.critic_opt.zero_grad(set_to_none=True)
        return {"ppo/critic_grad_norm": float(norm)}

    def state_dict(self):
        return {"critic": self.critic.state_dict(), "critic_opt": self.critic_opt.state_dict()}

    def load_state_dict(self, state):
        self.critic.load_state_dict(state["critic"])
        self.critic_opt.load_state_dict(state["critic_opt"])
