"""PPO with a learned critic (Schulman et al. 2017, arXiv 1707.06347) and GAE (arXiv 1506.02438).

Small pure functions on tensors in the style of verl's ``trainer/ppo/core_algos.py``; losses return
``(loss, metrics)`` with ``metrics`` a dict of Python floats. All math in fp32.

How the loop uses them, per batch of right-padded responses:

    token_rewards = outcome_token_rewards(rewards, mask)            # r on the last real token
    adv, returns  = gae(token_rewards, old_values, mask, gamma=1.0, lam=1.0)
    adv           = whiten(adv, mask)
    loss_actor, m = ppo_actor_loss(lp, old_lp, adv, mask, ref_logprobs=ref_lp,
                                   entropy=entropy_from_logits(logits), kl_coef=1e-3, entropy_coef=1e-3)
    loss_critic, m2 = ppo_value_loss(values, old_values, returns, mask)

Total actor loss = pg_loss + kl_coef·KL − entropy_coef·entropy. The TBRM paper's PPO baseline uses
KL and entropy coefficients 0.001, clip 0.2, actor lr 1e-6 and critic lr 1e-5.
"""

from __future__ import annotations

import torch
from torch import Tensor

from baselines.grpo_loss import clipped_surrogate, kl_k3
from tbrm.logprobs import masked_mean

__all__ = [
    "gae",
    "outcome_token_rewards",
    "whiten",
    "ppo_policy_loss",
    "ppo_value_loss",
    "kl_penalty_k3",
    "ppo_actor_loss",
]

def _same_shape(ref: Tensor, **named: Tensor | None) -> None:
    if ref.dim() != 2:
        raise ValueError(f"expected [B, T] tensors, got {tuple(ref.shape)}")
    for name, t in named.items():
        if t is not None and t.shape != ref.shape:
            raise ValueError(f"{name} {tuple(t.shape)} must be {tuple(ref.shape)}")


def outcome_token_rewards(rewards: Tensor, mask: Tensor) -> Tensor:
    """Put each sequence's outcome reward on its LAST real token, 0 elsewhere.

    Args:
        rewards: ``[B]`` outcome rewards.
        mask: ``[B, T]`` 1.0 real token, 0.0 padding (right-padded).

    Returns:
        ``[B, T]`` fp32. A row with no real token gets no reward at all (nowhere to put it).
    """
    if rewards.shape != mask.shape[:1] or mask.dim() != 2:
        raise ValueError(f"rewards {tuple(rewards.shape)} must be [B] for mask [B, T] = {tuple(mask.shape)}")
    real = mask != 0
    T = mask.shape[1]
    # index of the last real token = T-1 - (first real token of the reversed row)
    last = (T - 1) - real.flip(-1).int().argmax(dim=-1)  # [B]
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    has_any = real.any(dim=-1)
    out[has_any, last[has_any]] = rewards.detach().float()[has_any]
    return out


@torch.no_grad()
def gae(
    token_rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016, arXiv 1506.02438) on right-padded rows.

        δ_t = r_t + γ·V_{t+1} − V_t,     A_t = δ_t + γλ·A_{t+1},     returns_t = A_t + V_t

    with V_{t+1} := 0 and A_{t+1} := 0 after a row's last real token (the episode ends at EOS; whatever
    the critic output on padding is ignored). With γ = λ = 1 this is A_t = Σ_{t'≥t} r_{t'} − V_t, i.e.
    return − value. Computed without grad: advantages and returns are targets.

    Args:
        token_rewards: ``[B, T]`` per-token rewards (e.g. ``outcome_token_rewards``).
        values: ``[B, T]`` critic values V(s_t) of the old policy.
        mask: ``[B, T]`` 1.0 real token, 0.0 padding.

    Returns:
        ``(advantages [B, T], returns [B, T])`` fp32, both 0 on padding. Not whitened (see ``whiten``).
    """
    _same_shape(token_rewards, values=values, mask=mask)
    r = token_rewards.float()
    v = values.float()
    m = (mask != 0).float()
    # zero rewards/values on padding so garbage there (even nan) cannot leak into real positions
    r = torch.where(m > 0, r, torch.zeros_like(r))
    v = torch.where(m > 0, v, torch.zeros_like(v))
    B, T = r.shape
    adv = torch.zeros_like(r)
    last_adv = torch.zeros(B, dtype=r.dtype, device=r.device)
    for t in reversed(range(T)):
        # m[:, t+1] == 0 exactly when t is the last real token (or padding): the episode ends there
        next_m = m[:, t + 1] if t + 1 < T else torch.zeros_like(last_adv)
        next_v = v[:, t + 1] if t + 1 < T else torch.zeros_like(last_adv)
        delta = r[:, t] + gamma * next_v * next_m - v[:, t]
        last_adv = delta + gamma * lam * last_adv * next_m
        adv[:, t] = last_adv
    adv = adv * m
    returns = (adv + v) * m
    return adv, returns


@torch.no_grad()
def whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Masked advantage normalisation: (x − mean) / sqrt(var + eps) over the real tokens of the batch.

    Uses the unbiased (Bessel-corrected) masked variance, as verl's ``masked_whiten`` and TRL's ``whiten``.
    ``shift_mean=False`` rescales only (adds the mean back). Padding positions come back as 0.
    Fewer than 2 real tokens: variance is undefined, so only the mean is removed.
    Shapes: ``[B, T]`` -> ``[B, T]`` fp32, no grad.
    """
    _same_shape(x, mask=mask)
    x = x.float()
    m = (mask != 0).float()
    n = m.sum()
    mean = masked_mean(x, m)
    if n < 2:
        out = x - mean if shift_mean else x
        return out * m
    var = masked_mean((x - mean) ** 2, m) * n / (n - 1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(m > 0, out, torch.zeros_like(out))


def ppo_policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_eps: float = 0.2
) -> tuple[Tensor, dict[str, float]]:
    """PPO clipped surrogate (arXiv 1707.06347 eq. 7), token-mean over real tokens.

        ρ_t = exp(lp_t − old_lp_t),   ℓ_t = max(−A_t·ρ_t, −A_t·clip(ρ_t, 1−ε, 1+ε))

    Args:
        logprobs: ``[B, T]`` log π_θ (with grad). old_logprobs: ``[B, T]`` log π_old (constant).
        advantages: ``[B, T]`` (constant; usually whitened GAE). mask: ``[B, T]``.

    Returns:
        ``(loss, metrics)``; ``ppo/pg_loss``, ``ppo/clip_frac`` (fraction of real tokens where the clipped
        branch is active), ``ppo/approx_kl`` (token-mean of old_lp − lp, the k1 estimate of
        KL(π_old‖π_θ) as logged by verl's ``ppo_kl``; ~0 on the first epoch of a batch).
    """
    _same_shape(logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    lp = logprobs.float()
    old = old_logprobs.detach().float()
    mask = mask.float()
    pg_tok, _, clipped = clipped_surrogate(lp, old, advantages, clip_eps)
    loss = masked_mean(pg_tok, mask)
    with torch.no_grad():
        metrics = {
            "ppo/pg_loss": loss.item(),
            "ppo/clip_frac": masked_mean(clipped.float(), mask).item(),
            "ppo/approx_kl": masked_mean(old - lp.detach(), mask).item(),
        }
    return loss, metrics


def _explained_variance(pred: Tensor, target: Tensor, mask: Tensor) -> float:
    # 1 − Var[target − pred] / Var[target] over real tokens; nan when Var[target] = 0 (e.g. every answer in
    # the batch wrong): undefined rather than a misleading number (same convention as stable-baselines3).
    # "0" includes float rounding: returns = (r - V) + V are constant only up to ~1e-9, and dividing by that
    # variance gave explained variances of -1e15.
    var_t = masked_mean((target - masked_mean(target, mask)) ** 2, mask)
    if var_t.item() <= 1e-10:
        return float("nan")
    res = target - pred
    var_r = masked_mean((res - masked_mean(res, mask)) ** 2, mask)
    return (1.0 - var_r / var_t).item()


def ppo_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range_value: float = 0.2
) -> tuple[Tensor, dict[str, float]]:
    """Clipped critic loss (as in OpenAI baselines / verl ``compute_value_loss``), token-mean.

        V_clip = old_V + clip(V − old_V, −c, c),   ℓ_t = 0.5 · max((V − R)², (V_clip − R)²)

    The clip keeps the critic from jumping far from the values the advantages were computed with.

    Args:
        values: ``[B, T]`` current critic output (with grad). old_values: ``[B, T]`` critic output at rollout
        time (constant). returns: ``[B, T]`` GAE returns (constant). mask: ``[B, T]``.

    Returns:
        ``(loss, metrics)``; ``ppo/value_loss``, ``ppo/value_clip_frac`` (fraction of real tokens where the
        clipped error is the larger one), ``ppo/explained_variance`` (of returns by values; nan if the
        returns have zero variance).
    """
    _same_shape(values, old_values=old_values, returns=returns, mask=mask)
    v = values.float()
    old = old_values.detach().float()
    ret = returns.detach().float()
    mask = mask.float()
    v_clipped = old + torch.clamp(v - old, -clip_range_value, clip_range_value)
    err = (v - ret) ** 2
    err_clipped = (v_clipped - ret) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        metrics = {
            "ppo/value_loss": loss.item(),
            "ppo/value_clip_frac": masked_mean((err_clipped > err).float(), mask).item(),
            "ppo/explained_variance": _explained_variance(v.detach(), ret, mask),
        }
    return loss, metrics


def kl_penalty_k3(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """k3 estimate of KL(π_θ‖π_ref) (Schulman 2020): exp(ref − lp) − (ref − lp) − 1 per token, >= 0.

    Returns:
        ``(kl_mean, per_token)``: scalar token-mean over real tokens (with grad through ``logprobs``) and
        the ``[B, T]`` fp32 per-token values (0 on padding).
    """
    _same_shape(logprobs, ref_logprobs=ref_logprobs, mask=mask)
    per_token = kl_k3(logprobs, ref_logprobs)
    per_token = torch.where(mask != 0, per_token, torch.zeros_like(per_token))
    return masked_mean(per_token, mask.float()), per_token


def ppo_actor_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    ref_logprobs: Tensor | None = None,
    entropy: Tensor | None = None,
    clip_eps: float = 0.2,
    kl_coef: float = 0.001,
    entropy_coef: float = 0.001,
) -> tuple[Tensor, dict[str, float]]:
    """Total PPO actor loss = pg_loss + kl_coef·KL_k3(π_θ‖π_ref) − entropy_coef·H(π_θ), token means.

    The entropy bonus is subtracted (minimising the loss raises entropy). The TBRM paper's PPO baseline:
    kl_coef = entropy_coef = 0.001, clip 0.2.

    Args:
        logprobs, old_logprobs, advantages, mask: as in ``ppo_policy_loss`` (``[B, T]``).
        ref_logprobs: ``[B, T]`` log π_ref; required when ``kl_coef > 0``.
        entropy: ``[B, T]`` per-token entropy of π_θ with grad (``entropy_from_logits(logits)``);
            required when ``entropy_coef > 0``.

    Returns:
        ``(loss, metrics)``: the ``ppo_policy_loss`` metrics plus ``ppo/kl`` and ``ppo/entropy`` (token
        means; present when the corresponding tensor is given) and ``ppo/actor_loss``.

    Raises:
        ValueError: a coefficient is > 0 but its tensor is missing.
    """
    if kl_coef > 0 and ref_logprobs is None:
        raise ValueError(f"kl_coef={kl_coef} > 0 needs ref_logprobs")
    if entropy_coef > 0 and entropy is None:
        raise ValueError(f"entropy_coef={entropy_coef} > 0 needs entropy (entropy_from_logits(logits))")
    _same_shape(logprobs, ref_logprobs=ref_logprobs, entropy=entropy)

    loss, metrics = ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_eps)
    if ref_logprobs is not None:
        kl, _ = kl_penalty_k3(logprobs, ref_logprobs, mask)
        if kl_coef:
            loss = loss + kl_coef * kl
        metrics["ppo/kl"] = kl.item()
    if entropy is not None:
        ent = masked_mean(entropy.float(), mask.float())
        if entropy_coef:
            loss = loss - entropy_coef * ent
        metrics["ppo/entropy"] = ent.item()
    metrics["ppo/actor_loss"] = loss.item()
    return loss, metrics
