"""TBRM: Trajectory Bellman Residual Minimization (Yuan et al. 2025, arXiv 2505.15311).

Small pure functions on tensors in the style of verl's ``trainer/ppo/core_algos.py``; every loss returns
``(loss, metrics)`` with ``metrics`` a dict of Python floats.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tbrm.logprobs import masked_sum

__all__ = ["tbrm_loss"]


def _check_shapes(v_start: Tensor, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, rewards: Tensor) -> None:
    # Strict shapes on purpose: rewards shaped [B, 1] instead of [B] would silently broadcast the
    # residual to [B, B] and the loss would still look like a number.
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be [B, T], got {tuple(logprobs.shape)}")
    B = logprobs.shape[0]
    for name, t in (("ref_logprobs", ref_logprobs), ("mask", mask)):
        if t.shape != logprobs.shape:
            raise ValueError(f"{name} {tuple(t.shape)} must match logprobs {tuple(logprobs.shape)}")
    for name, t in (("v_start", v_start), ("rewards", rewards)):
        if t.shape != (B,):
            raise ValueError(f"{name} must be [B] = [{B}], got {tuple(t.shape)}")


def tbrm_loss(
    v_start: Tensor,
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor,
    rewards: Tensor,
    beta: float | Tensor,
    v_ref_start: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Trajectory Bellman residual loss (TBRM objective, arXiv 2505.15311).

    The model's logits are Q-values: Q_θ(s, a) = logit(s, a), V_θ(s) = logsumexp_a Q_θ(s, a),
    π_θ = softmax(Q_θ). For one sampled response τ = (a_1..a_H) to prompt s_1 with outcome reward r(τ),
    the KL-regularised soft Bellman equations telescope along the trajectory into one residual

        δ(τ) = V_θ(s_1) + Σ_h [log π_θ(a_h|s_h) − log π_ref(a_h|s_h)] − r(τ)/β

    (equivalently logit(a_1|s_1) + Σ_{h≥2} log π_θ − Σ_{h≥1} log π_ref − r/β, since
    V(s_1) + log π(a_1|s_1) = logit(a_1|s_1)), and the loss is the batch mean of δ².
    Token terms are SUMMED over the response (the residual is a trajectory-level quantity; a per-token
    mean would change the fixed point). There is no critic, no importance ratio and no clipping, so the
    rollouts can be off-policy and ONE rollout per prompt suffices (no group baseline is needed).

    Gradient: ∇δ² = 2δ·∇[V_θ(s_1) + Σ_h log π_θ(a_h|s_h)] — the reference log-probs and the reward are
    constants (detached here). So with B=1 the update is 2δ times the gradient of the start value plus the
    trajectory log-likelihood; with a batch it is the mean of those.

    Scale: with the paper's β = 0.002, r/β = 500 for a correct answer, so δ starts in the hundreds and δ²
    near 1e5 — all math here is fp32 (inputs are cast with ``.float()``); expect a small learning rate.

    Args:
        v_start: ``[B]`` V_θ(s_1), i.e. ``logsumexp_values(logits[:, :1]).squeeze(1)`` (with grad).
        logprobs: ``[B, T]`` log π_θ(a_h|s_h) of the response tokens (with grad).
        ref_logprobs: ``[B, T]`` log π_ref(a_h|s_h) (constant).
        mask: ``[B, T]`` 1.0 for real response tokens, 0.0 for padding (padding contributes nothing,
            even if it holds -inf/nan).
        rewards: ``[B]`` outcome rewards r(τ) (constant).
        beta: KL-regularisation strength β > 0 (paper: 0.002), or ``[B]``, one β_i per trajectory (ReVal's
            length-scaled β, ``beta_length_scaled``: β_i = β·|y_i|/max_new_tokens; the target is then r/β_i).
        v_ref_start: ``[B]`` V_ref(s_1) of the frozen reference (constant), or None (plain TBRM). When given, it
            is subtracted inside the residual — the fix of ReVal (arXiv 2603.23355, Prop. 1):

                δ_ref(τ) = V_θ(s_1) − V_ref(s_1) + Σ_h [log π_θ(a_h|s_h) − log π_ref(a_h|s_h)] − r(τ)/β.

            Why: at θ = ref with zero reward, plain δ = V_ref(s_1), which is not 0 (logits are not normalised), so
            the gradient 2δ·∇[V_θ(s_1) + Σ log π_θ] moves the policy away from the reference although nothing
            was rewarded. With the subtraction, θ = ref is a stationary point when r = 0. The gradient keeps
            its form (V_ref is a constant); only the target shifts, per prompt.

    Returns:
        ``(loss, metrics)``: scalar fp32 loss = mean_b δ_b²; metrics (Python floats):
        ``tbrm/residual_mean``, ``tbrm/residual_std`` (population std, 0 for B=1),
        ``tbrm/residual_abs_mean``, ``tbrm/v_start_mean``,
        ``tbrm/log_ratio_sum_mean`` (mean over sequences of Σ_h log π_θ − log π_ref: a per-sequence
        estimate of KL(π_θ‖π_ref) on on-policy samples), ``tbrm/reward_over_beta_mean``; with `v_ref_start`
        also ``tbrm/v_ref_start_mean``.
    """
    _check_shapes(v_start, logprobs, ref_logprobs, mask, rewards)
    if isinstance(beta, Tensor):
        if beta.shape != rewards.shape or not bool((beta > 0).all()):
            raise ValueError(f"beta as a tensor must be [B] = [{rewards.shape[0]}] and > 0, got {tuple(beta.shape)}")
        beta = beta.detach().float()
    elif not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if v_ref_start is not None and v_ref_start.shape != v_start.shape:
        raise ValueError(f"v_ref_start must be [B] = [{v_start.shape[0]}], got {tuple(v_ref_start.shape)}")

    v_start = v_start.float()
    logprobs = logprobs.float()
    ref_logprobs = ref_logprobs.detach().float()
    rewards = rewards.detach().float()
    mask = mask.float()

    log_ratio_sum = masked_sum(logprobs - ref_logprobs, mask, dim=-1)  # [B]
    reward_over_beta = rewards / beta  # [B]
    start = v_start if v_ref_start is None else v_start - v_ref_start.detach().float()  # [B]
    residual = start + log_ratio_sum - reward_over_beta  # [B]
    loss = residual.pow(2).mean()

    with torch.no_grad():
        r = residual.detach()
        metrics = {
            "tbrm/residual_mean": r.mean().item(),
            # population std (correction=0): defined for B=1, where the unbiased one would be nan
            "tbrm/residual_std": r.std(correction=0).item(),
            "tbrm/residual_abs_mean": r.abs().mean().item(),
            "tbrm/v_start_mean": v_start.detach().mean().item(),
            "tbrm/log_ratio_sum_mean": log_ratio_sum.detach().mean().item(),
            "tbrm/reward_over_beta_mean": reward_over_beta.mean().item(),
        }
        if v_ref_start is not None:
            metrics["tbrm/v_ref_start_mean"] = v_ref_start.detach().float().mean().item()
    return loss, metrics
