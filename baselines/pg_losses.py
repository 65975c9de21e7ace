"""The advantage estimators and losses of RLOO, REINFORCE++, DAPO and GSPO.

Small pure functions on tensors in the style of verl's ``trainer/ppo/core_algos.py`` (each equals verl's function of
the same method on the same tensors: tests_verl/test_verl_equality.py); losses return ``(loss, metrics)`` with
``metrics`` a dict of Python floats. All math in fp32. Rollouts of one prompt are consecutive rows, ``group_size``
of them, as the shared loop generates them.

- RLOO (Ahmadian et al. 2024, arXiv 2402.14740): each rollout's baseline is the mean of the OTHER rollouts of its
  prompt.
- REINFORCE++ (Hu 2025, arXiv 2501.03262): the outcome reward on the last token minus a per-token KL penalty, summed
  to returns and whitened over the whole batch (no group baseline, no critic). Its baseline variant subtracts the
  group mean of the outcome reward, then whitens over the batch.
- DAPO (Yu et al. 2025, arXiv 2503.14476): GRPO advantages, a higher upper clip, token-mean aggregation, dynamic
  sampling (`groups_with_signal`) and overlong reward shaping (`overlong_penalty`).
- GSPO (Zheng et al. 2025, arXiv 2507.18071): one importance ratio per sequence, the geometric mean of its token
  ratios, clipped per sequence (`gspo_loss`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from baselines.grpo_loss import _MAX_LOG_RATIO, kl_and_aggregate
from baselines.ppo_loss import whiten
from tbrm.config import LOSS_AGG_MODES
from tbrm.logprobs import masked_mean, masked_sum

__all__ = ["rloo_advantages", "reinforcepp_advantages", "reinforcepp_baseline_advantages", "overlong_penalty",
           "groups_with_signal", "gspo_loss", "kl_in_reward"]

# GSPO's sequence log-ratio is clamped above at 10 (as verl does): exp(10) already means "policy moved absurdly".
_MAX_SEQ_LOG_RATIO = 10.0


def _groups(rewards: Tensor, group_size: int, minimum: int) -> Tensor:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be [N], got {tuple(rewards.shape)}")
    if group_size < minimum:
        raise ValueError(f"group_size must be >= {minimum}, got {group_size}")
    if rewards.shape[0] % group_size:
        raise ValueError(f"N={rewards.shape[0]} rewards do not split into groups of {group_size}")
    return rewards.detach().float().view(-1, group_size)


def rloo_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """Leave-one-out advantages (RLOO, arXiv 2402.14740 eq. 5).

        A_i = r_i − 1/(n−1) Σ_{j≠i} r_j  =  n/(n−1) · (r_i − mean_g)

    The baseline of each rollout is the mean reward of the other n−1 rollouts of its prompt, so it is independent
    of the rollout itself and the estimator stays unbiased.

    Args:
        rewards: ``[N]`` outcome rewards, N = num_prompts * group_size.
        group_size: n >= 2 (one rollout has no other rollouts to be its baseline).

    Returns:
        ``[N]`` fp32 advantages, detached.
    """
    with torch.no_grad():
        r = _groups(rewards, group_size, 2)
        return ((r - r.mean(dim=1, keepdim=True)) * group_size / (group_size - 1)).reshape(-1)


def kl_in_reward(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """The per-token KL penalty REINFORCE++ puts in the reward: −kl_coef · (log π_old − log π_ref) on every real
    token (k1, verl's ``kl_penalty="kl"``). Shapes ``[B, T]`` -> ``[B, T]`` fp32, 0 on padding."""
    return -kl_coef * (logprobs.detach().float() - ref_logprobs.detach().float()) * mask.float()


def reinforcepp_advantages(rewards: Tensor, mask: Tensor, token_penalty: Tensor | None = None,
                           gamma: float = 1.0) -> tuple[Tensor, Tensor]:
    """REINFORCE++ (arXiv 2501.03262 §3): returns of the token-level reward, whitened over the batch.

    Token rewards: the outcome reward r on the last real token of each response, plus `token_penalty` (the
    per-token KL term, ``kl_in_reward``) on every token. Returns G_t = Σ_{k≥t} γ^{k−t} r_k (padding carries the
    running return through unchanged), and A = (G − mean) / sqrt(var + 1e-8) with mean and the unbiased variance
    over every real token of the batch (verl's ``compute_reinforce_plus_plus_outcome_advantage``).

    Args:
        rewards: ``[B]`` outcome rewards. mask: ``[B, T]`` real response tokens (every row needs at least one).
        token_penalty: ``[B, T]`` per-token reward terms (the KL penalty), or None.
        gamma: discount (1: the paper).

    Returns:
        ``(advantages [B, T], returns [B, T])`` fp32, detached, 0 on padding.
    """
    if mask.dim() != 2 or rewards.shape != mask.shape[:1]:
        raise ValueError(f"rewards must be [B] and mask [B, T], got {tuple(rewards.shape)} and {tuple(mask.shape)}")
    with torch.no_grad():
        m = mask.float()
        lengths = m.sum(-1).long()
        if (lengths < 1).any():
            raise ValueError("every response needs at least one token")
        tok = torch.zeros_like(m)
        tok[torch.arange(m.shape[0]), lengths - 1] = rewards.detach().float()
        if token_penalty is not None:
            tok = tok + token_penalty.detach().float()
        returns = torch.zeros_like(m)
        running = torch.zeros(m.shape[0], device=m.device)
        for t in reversed(range(m.shape[1])):
            new = tok[:, t] + gamma * running
            returns[:, t] = new * m[:, t]
            running = new * m[:, t] + running * (1 - m[:, t])
        return whiten(returns, m) * m, returns


def reinforcepp_baseline_advantages(rewards: Tensor, mask: Tensor, group_size: int) -> Tensor:
    """REINFORCE++-baseline (arXiv 2501.03262 v3): the outcome reward minus its group's mean, on every token,
    whitened over the batch's real tokens (verl's ``compute_reinforce_plus_plus_baseline_outcome_advantage``).
    A group of one keeps its reward (mean 0). Shapes: rewards ``[B]``, mask ``[B, T]`` -> ``[B, T]`` fp32."""
    with torch.no_grad():
        r = _groups(rewards, group_size, 1)
        centred = r - r.mean(dim=1, keepdim=True) if group_size > 1 else r
        m = mask.float()
        return whiten(centred.reshape(-1, 1) * m, m) * m


def overlong_penalty(lengths: Tensor, max_len: int, buffer: int, factor: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment (arXiv 2503.14476 eq. 13), added to the reward.

        0                                  if |y| ≤ L_max − L_cache
        ((L_max − L_cache) − |y|) / L_cache · factor   in the buffer (down to −factor at |y| = L_max)

    Args:
        lengths: ``[B]`` response lengths in tokens. max_len: L_max (max_new_tokens). buffer: L_cache, 0 < L_cache
        <= L_max. factor: the penalty at L_max (DAPO: 1).

    Returns:
        ``[B]`` fp32 penalties (<= 0), as verl's DAPO reward manager adds them.
    """
    if not 0 < buffer <= max_len:
        raise ValueError(f"the overlong buffer must be in (0, max_len={max_len}], got {buffer}")
    exceed = lengths.float() - (max_len - buffer)
    return torch.clamp(-exceed / buffer * factor, max=0.0)


def groups_with_signal(rewards: Tensor, group_size: int) -> Tensor:
    """DAPO's dynamic sampling criterion (arXiv 2503.14476 §3.2): which groups of rollouts do NOT all share one
    reward (a group whose rewards are all equal has zero advantage everywhere: no gradient). ``[N]`` -> ``[N/n]``
    bool."""
    r = _groups(rewards, group_size, 1)
    return (r != r[:, :1]).any(dim=1)


def gspo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps_low: float = 3e-4,
    clip_eps_high: float = 4e-4,
    loss_agg: str = "seq-mean-token-mean",
    max_len: int | None = None,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """GSPO's sequence-level clipped objective (arXiv 2507.18071 eq. 5-7, token form eq. 10).

    Per sequence, the importance ratio is the length-normalised likelihood ratio
        s_i = exp( 1/|y_i| Σ_t [lp − old_lp] ),
    and its token-level form keeps the value of s_i with each token's own gradient:
        s_{i,t} = sg[s_i] · π_θ(y_t) / sg[π_θ(y_t)]     (log-space: sg[log s_i] + lp − sg[lp], clamped at 10)
        ℓ_{i,t} = max(−A_i·s_{i,t}, −A_i·clip(s_{i,t}, 1−ε_low, 1+ε_high))
    reduced with `loss_agg` (GSPO: "seq-mean-token-mean"). So a whole sequence is clipped or not. Plus
    kl_coef·k3 to the reference when given. Equals verl's ``compute_policy_loss_gspo``.

    Args:
        logprobs: ``[B, T]`` log π_θ (with grad). old_logprobs: ``[B, T]`` log π_old (constant).
        advantages: ``[B]`` sequence advantages (GRPO's). mask: ``[B, T]`` real tokens.
        clip_eps_low, clip_eps_high: the clip band on the sequence ratio (paper: 3e-4, 4e-4).
        loss_agg, max_len: as ``grpo_loss``. ref_logprobs, kl_coef: optional k3 KL term.

    Returns:
        ``(loss, metrics)``; metrics: ``gspo/pg_loss``, ``gspo/clip_frac`` (share of real tokens, i.e. of
        sequences weighted by length, whose clipped branch is active), ``gspo/seq_ratio_mean``, ``gspo/kl``.
    """
    if logprobs.dim() != 2 or old_logprobs.shape != logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError("logprobs, old_logprobs and mask must all be [B, T]")
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"advantages must be [B] = [{logprobs.shape[0]}], got {tuple(advantages.shape)}")
    if loss_agg not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg {loss_agg!r}; expected one of {LOSS_AGG_MODES}")
    if ref_logprobs is None and kl_coef > 0:
        raise ValueError(f"kl_coef={kl_coef} > 0 needs ref_logprobs")
    lp, m = logprobs.float(), mask.float()
    adv = advantages.detach().float().unsqueeze(-1)
    seq_log_ratio = masked_sum(lp - old_logprobs.detach().float(), m, dim=-1) / m.sum(-1).clamp(min=1)  # [B]
    log_s = (lp - lp.detach() + seq_log_ratio.detach().unsqueeze(-1)).clamp(max=_MAX_SEQ_LOG_RATIO)
    s = torch.exp(log_s)
    unclipped = -adv * s
    clipped = -adv * torch.clamp(s, 1.0 - clip_eps_low, 1.0 + clip_eps_high)
    pg_tok = torch.maximum(unclipped, clipped)
    loss, metrics = kl_and_aggregate(pg_tok, lp, ref_logprobs, kl_coef, m, loss_agg, max_len, "gspo")
    with torch.no_grad():
        metrics.update({
            "gspo/clip_frac": masked_mean((clipped > unclipped).float(), m).item(),
            "gspo/seq_ratio_mean": torch.exp(seq_log_ratio.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)).mean().item(),
        })
    return loss, metrics
