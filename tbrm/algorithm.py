"""The interface every algorithm plugs into the shared loop with, and TBRM itself.

The loop (tbrm/trainer.py) owns rollouts, rewards, the reference forward, micro-batching, the optimiser and
logging; an algorithm only says what it needs before the update (`prepare`) and what its loss is on one
micro-batch (`loss`). That keeps TBRM, GRPO and PPO comparisons fair by construction: same sampler, same
verifier, same optimiser, same numerics.

The loop receives the algorithm's class; it never looks one up by name. The registry of names
(`tbrm.api.algorithms`) lives in the entry layer, above `baselines/`, so the baselines build on this
module without the training core importing them back.
"""

from __future__ import annotations

import torch

from tbrm.config import TrainConfig
from tbrm.loss import tbrm_loss
from tbrm.rollout import ResponseOutputs, RolloutBatch


def adamw(params, **kwargs) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where the parameters' device has one (CPU and CUDA). The default on CPU is
    a per-tensor Python loop, several times slower than the fused kernel for a model of many small tensors such as
    SmolLM2-135M, and it runs once per step for the policy and, for PPO, once more for the critic. Same update up
    to float rounding (~1e-9; tests/test_train_e2e.py compares the two)."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(params, fused=fused or None, **kwargs)


class Algorithm:
    name = "base"
    needs_reference = True
    token_weighted = False  # True: the loss is a token mean, so micro-batches are weighted by their token count
    # Policy-gradient methods (GRPO, PPO) estimate the gradient of the policy that sampled the rollouts,
    # softmax(logits / T), so their log-probs (policy, old, reference) divide by the sampling temperature, as verl
    # and TRL do. TBRM keeps raw logits: they are its Q-values and its loss defines pi = softmax(logits); sampling
    # at T is only exploration (it may even learn from another policy's trajectories).
    tempered_logprobs = False
    # Whether the loss reads V(s_1) (`ResponseOutputs.v_start`); without it the forward skips it (tbrm/rollout.py).
    needs_v_start = False

    def __init__(self, cfg: TrainConfig, policy, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.logit_temperature = cfg.temperature if self.tempered_logprobs else 1.0

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch, policy_logprobs) -> dict[str, float]:
        """Fill `batch.extra` with what the loss needs that must not change during the update.
        `policy_logprobs(batch)` gives the current policy's micro-batched no-grad [B, T] response log-probs."""
        return {}

    def loss(self, mb: RolloutBatch, out: ResponseOutputs) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def weight(self, mb: RolloutBatch, full: RolloutBatch) -> float:
        """Scale of a micro-batch's mean loss so the accumulated gradient equals the full batch's."""
        if self.token_weighted:
            return float(mb.response_mask.sum() / full.response_mask.sum().clamp(min=1))
        return mb.size / full.size

    # Extra trainable state (the PPO critic); TBRM and GRPO have none.
    def after_backward(self, step: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class TBRM(Algorithm):
    """Trajectory Bellman Residual Minimization (arXiv 2505.15311): regress V(s_1) + sum_h log(pi/pi_ref) onto
    r/beta, one squared residual per trajectory. No critic, no ratio, no clipping: `prepare` has nothing to
    freeze, and the batch may come from any policy (off-policy TBRM reads it from a file)."""

    name = "tbrm"
    needs_v_start = True

    def loss(self, mb, out):
        v_ref = mb.extra["ref_v_start"] if self.cfg.subtract_ref_value else None  # ReVal's fix (config.py)
        return tbrm_loss(out.v_start, out.logprobs, mb.extra["ref_logprobs"], mb.response_mask, mb.rewards,
                         self.cfg.beta, v_ref_start=v_ref)

