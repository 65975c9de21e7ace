"""The interface every algorithm plugs into the shared loop with, and TBRM itself.

The loop (tbrm/trainer.py) owns rollouts, rewards, the reference forward, micro-batching, the optimiser and
logging; an algorithm only says what it needs before the update (`prepare`) and what its loss is on one
micro-batch (`loss`). That keeps TBRM, GRPO and PPO comparisons fair by construction: same sampler, same
verifier, same optimiser, same numerics.

The loop receives the algorithm's class; it never looks one up by name. Each class declares, beside its loss, what
defines it for the rest of the suite: its name and report label, the rollouts per prompt it needs, whether it
trains off-policy, the settings only it reads (`own_settings`, refused under any other algorithm) and its own
setting checks (`check`). The one registry of classes (`baselines.registry`, served as `tbrm.api.algorithms`) lives
above `baselines/`, so the baselines build on this module without the training core importing them back.
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
    name = "base"  # the value of TrainConfig.algorithm
    label = "base"  # how reports and tables name the method (with its n: "TBRM n=4")
    paper = ""  # where the method is defined (README's algorithm table)
    min_rollouts = 1  # rollouts_per_prompt it needs (a group baseline needs >= 2)
    off_policy = False  # may train from a fixed file of trajectories (offline_trajectories)
    # TrainConfig fields only algorithms that list them read: a non-default value under any other algorithm is an
    # error (it would silently do nothing)
    own_settings: tuple[str, ...] = ()
    needs_reference = True
    token_weighted = False  # True: the loss is a token mean, so micro-batches are weighted by their token count
    # Policy-gradient methods (GRPO, PPO) estimate the gradient of the policy that sampled the rollouts,
    # softmax(logits / T), so their log-probs (policy, old, reference) divide by the sampling temperature, as verl
    # and TRL do. TBRM keeps raw logits: they are its Q-values and its loss defines pi = softmax(logits); sampling
    # at T is only exploration (it may even learn from another policy's trajectories).
    tempered_logprobs = False
    # Whether the loss reads V(s_1) (`ResponseOutputs.v_start`); without it the forward skips it (tbrm/rollout.py).
    needs_v_start = False

    @classmethod
    def check(cls, cfg: TrainConfig) -> list[str]:
        """What is wrong with `cfg` for this algorithm (empty: nothing), beyond the checks every algorithm shares
        (`tbrm.config.validate`) and those the registry derives from the attributes above."""
        problems = []
        if cfg.ref_model in ("none", "") and cfg.kl_coef > 0:
            problems.append(f"{cfg.algorithm} with kl_coef={cfg.kl_coef} needs a reference model for its KL term; "
                            f"leave ref_model unset (the initial policy) or set kl_coef=0")
        return problems

    @classmethod
    def method_label(cls, cfg: dict) -> str:
        """The method a run of `cfg` (a train_config.json dict) trains, without its n: the label, plus the
        variant its settings select."""
        return cls.label

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

    def reset_reference(self, step: int) -> bool:
        """Whether the loop makes the reference the current policy before step `step` (ReVal's resets)."""
        return False

    def keep_groups(self, rewards: torch.Tensor) -> torch.Tensor | None:
        """Dynamic sampling (DAPO): [prompts] bool, the groups of rollouts to train on, or None to keep all (the
        loop then samples fresh prompts to refill the batch)."""
        return None


class TBRM(Algorithm):
    """Trajectory Bellman Residual Minimization (arXiv 2505.15311): regress V(s_1) + sum_h log(pi/pi_ref) onto
    r/beta, one squared residual per trajectory. No critic, no ratio, no clipping: the batch may come from any
    policy (off-policy TBRM reads it from a file). `prepare` only applies ReVal's options (config.py), each off by
    default: group-centred rewards, a per-trajectory length-scaled beta; the reference resets are the loop's."""

    name = "tbrm"
    label = "TBRM"
    paper = "Yuan et al. 2025, arXiv 2505.15311"
    off_policy = True
    own_settings = ("subtract_ref_value", "center_rewards", "ref_reset_every", "beta_length_scaled")
    needs_v_start = True

    @classmethod
    def check(cls, cfg):
        problems = []
        if cfg.ref_model in ("none", ""):
            problems.append("TBRM needs a frozen reference model: its residual contains log pi_ref (set ref_model, "
                            "or leave it unset to use the initial policy)")
        if cfg.center_rewards and cfg.rollouts_per_prompt < 2:
            problems.append("center_rewards subtracts the mean reward of each prompt's group: rollouts_per_prompt "
                            "must be >= 2")
        if cfg.center_rewards and cfg.offline_trajectories:
            problems.append("center_rewards needs groups of rollouts of one prompt; offline_trajectories has none")
        if cfg.ref_reset_every and cfg.ref_model:
            problems.append("ref_reset_every makes the reference the current policy; it needs the initial policy "
                            "as the first reference (leave ref_model unset)")
        return problems

    @classmethod
    def method_label(cls, cfg):
        reval = [k for k in ("center_rewards", "ref_reset_every", "beta_length_scaled") if cfg.get(k)]
        if reval:  # ReVal's changes (all or some, named when not all)
            return "TBRM-ReVal" + ("" if len(reval) == 3 and cfg.get("subtract_ref_value")
                                   else "(" + ",".join(reval + (["vref"] if cfg.get("subtract_ref_value") else []))
                                   + ")")
        return "TBRM-Vref" if cfg.get("subtract_ref_value") else "TBRM"  # ReVal's fix alone

    @torch.no_grad()
    def prepare(self, batch, policy_logprobs):
        cfg, out = self.cfg, {}
        if cfg.center_rewards:  # rows of one prompt are consecutive (the loop guarantees it)
            r = batch.rewards.float().view(-1, cfg.rollouts_per_prompt)
            batch.extra["tbrm_rewards"] = (r - r.mean(dim=1, keepdim=True)).reshape(-1)
        if cfg.beta_length_scaled:
            lengths = batch.response_mask.sum(-1).float().clamp(min=1)
            batch.extra["tbrm_beta"] = cfg.beta * lengths / cfg.max_new_tokens
            out["tbrm/beta_mean"] = float(batch.extra["tbrm_beta"].mean())
        return out

    def loss(self, mb, out):
        v_ref = mb.extra["ref_v_start"] if self.cfg.subtract_ref_value else None  # ReVal's fix (config.py)
        return tbrm_loss(out.v_start, out.logprobs, mb.extra["ref_logprobs"], mb.response_mask,
                         mb.extra.get("tbrm_rewards", mb.rewards), mb.extra.get("tbrm_beta", self.cfg.beta),
                         v_ref_start=v_ref)

    def reset_reference(self, step):
        k = self.cfg.ref_reset_every
        return bool(k) and step > 1 and (step - 1) % k == 0
