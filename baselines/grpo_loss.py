"""GRPO (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300) and Dr. GRPO (Liu et al. 2025, arXiv 2503.20783).

Small pure functions on tensors in the style of verl's ``trainer/ppo/core_algos.py``; losses return
``(loss, metrics)`` with ``metrics`` a dict of Python floats. All math in fp32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tbrm.config import LOSS_AGG_MODES
from tbrm.logprobs import masked_mean, masked_sum

__all__ = ["grpo_advantages", "grpo_loss", "kl_k3", "clipped_surrogate", "LOSS_AGG_MODES"]

# exp() of a log-ratio beyond this overflows nothing in fp32 but only ever means "policy moved absurdly";
# clamping keeps one bad token from turning the batch loss into inf/nan (verl clamps at ±20 too).
_MAX_LOG_RATIO = 20.0


def grpo_advantages(rewards: Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    """Group-relative outcome advantages.

    Groups are consecutive blocks of ``group_size`` rows (the rollouts of one prompt, in the order the loop
    generated them). Within each group g:

        A_i = (r_i − mean_g) / (std_g + eps)    (GRPO, arXiv 2402.03300 §4.1.2)
        A_i =  r_i − mean_g                     (scale_by_std=False: Dr. GRPO, arXiv 2503.20783,
                                                 which removes the question-difficulty bias of 1/std)

    std is the UNBIASED sample std (``torch.std``, correction=1), as in verl's
    ``compute_grpo_outcome_advantage`` and TRL's ``GRPOTrainer``, so numbers match those frameworks.
    A group whose rewards are all equal gets A = 0 (no signal), with or without the std scaling.

    Args:
        rewards: ``[N]`` outcome rewards, N = num_prompts * group_size.
        group_size: rollouts per prompt, >= 2 (one rollout has no group baseline: use TBRM for that).
        scale_by_std: divide by the group std (GRPO) or not (Dr. GRPO).
        eps: added to the std, so all-equal groups give 0, not 0/0.

    Returns:
        ``[N]`` fp32 advantages, detached (they are targets, not functions of θ).
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be [N], got {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 (GRPO needs several rollouts per prompt), got {group_size}")
    if rewards.shape[0] % group_size:
        raise ValueError(f"N={rewards.shape[0]} rewards do not split into groups of {group_size}")
    with torch.no_grad():
        r = rewards.detach().float().view(-1, group_size)  # [num_prompts, G]
        centred = r - r.mean(dim=1, keepdim=True)
        if scale_by_std:
            centred = centred / (r.std(dim=1, keepdim=True) + eps)
        return centred.reshape(-1)


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(π_θ‖π_ref) (Schulman 2020, "Approximating KL divergence").

    k3 = exp(ref − lp) − (ref − lp) − 1 with samples from π_θ: unbiased, always >= 0 (e^x >= 1 + x) and
    low-variance; 0 exactly when the two log-probs agree. Shapes: ``[B, T]`` -> ``[B, T]`` fp32 (padding
    is NOT masked here; reduce with ``masked_mean``).
    """
    d = (ref_logprobs.detach().float() - logprobs.float()).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return torch.exp(d) - d - 1.0


def clipped_surrogate(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor,
                      clip_eps: float, clip_eps_high: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped surrogate per token (arXiv 1707.06347 eq. 7), the policy-gradient term of GRPO and PPO.

        ρ = exp(lp − old_lp),   ℓ = max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high))   (= −min of the two surrogates)

    ε_low = `clip_eps`; ε_high = `clip_eps_high` (None: the symmetric clip; DAPO's "clip-higher" raises it,
    arXiv 2503.14476 §3.1). verl's ``compute_policy_loss_vanilla`` with ``clip_ratio_c`` above every ratio (its
    dual clip never active) is this function (tests_verl/test_verl_equality.py).

    The log-ratio is clamped to ±`_MAX_LOG_RATIO` first, so one runaway token cannot make the loss inf/nan.

    Args:
        logprobs: ``[B, T]`` log π_θ (with grad). old_logprobs: ``[B, T]`` log π_old (constant).
        advantages: ``[B, T]``, or ``[B, 1]`` for one advantage per sequence (constant).
        clip_eps: ε.

    Returns:
        ``(loss [B, T], ratio [B, T], clipped [B, T] bool)`` fp32: the per-token loss (padding not masked), ρ,
        and where the clipped branch is the active one (strictly: where both branches tie, ρ is inside the band
        and the clip does nothing).
    """
    adv = advantages.detach().float()
    log_ratio = (logprobs.float() - old_logprobs.detach().float()).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    high = clip_eps if clip_eps_high is None else clip_eps_high
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + high)
    return torch.maximum(unclipped, clipped), ratio, clipped > unclipped


def _aggregate(loss_mat: Tensor, mask: Tensor, loss_agg: str, max_len: int | None) -> Tensor:
    """Reduce a ``[B, T]`` per-token loss to a scalar (same modes as verl's ``agg_loss``)."""
    if loss_agg == "token-mean":
        # every token in the batch weighs the same (DAPO / verl default)
        return masked_mean(loss_mat, mask)
    if loss_agg == "seq-mean-token-mean":
        # every sequence weighs the same, its tokens averaged (GRPO's 1/|o_i| Σ_t; GSPO's default in verl)
        return (masked_sum(loss_mat, mask, dim=-1) / mask.sum(-1).clamp(min=1)).mean()
    if loss_agg == "seq-mean-token-sum-norm":
        # Dr. GRPO: Σ_t instead of 1/|o_i| Σ_t, divided by a CONSTANT max generation length so the step
        # size does not depend on the batch's lengths; mean over sequences (as TRL's loss_type="dr_grpo").
        if max_len is None or max_len <= 0:
            raise ValueError("loss_agg='seq-mean-token-sum-norm' needs max_len (the fixed max response length)")
        return masked_sum(loss_mat, mask, dim=-1).mean() / max_len
    raise ValueError(f"unknown loss_agg {loss_agg!r}; expected one of {LOSS_AGG_MODES}")


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    kl_coef: float = 0.001,
    loss_agg: str = "token-mean",
    max_len: int | None = None,
    clip_eps_high: float | None = None,
    prefix: str = "grpo",
) -> tuple[Tensor, dict[str, float]]:
    """GRPO clipped surrogate plus k3 KL to the reference (arXiv 2402.03300 eq. 3).

    Per token: ratio ρ = exp(lp − old_lp), A the sequence's advantage,
        ℓ_pg = max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε))      (= −min of the PPO surrogates)
        ℓ    = ℓ_pg + kl_coef · k3(lp, ref_lp)
    then reduced with ``loss_agg``: "token-mean" (default; every token of the batch weighs the same, as in DAPO
    and verl) or "seq-mean-token-sum-norm" (Dr. GRPO, arXiv 2503.20783: token sum / ``max_len``, mean over
    sequences; pair it with ``grpo_advantages(..., scale_by_std=False)``).

    Args:
        logprobs: ``[B, T]`` log π_θ of the sampled tokens (with grad).
        old_logprobs: ``[B, T]`` log π_old at sampling time (constant; equal to logprobs.detach() on the
            first update of a fresh batch, so ρ = 1 there).
        ref_logprobs: ``[B, T]`` log π_ref, or None when ``kl_coef == 0``.
        advantages: ``[B]`` from ``grpo_advantages`` (one per sequence), or ``[B, T]`` per token (REINFORCE++,
            whose returns carry a per-token KL penalty) (constant).
        mask: ``[B, T]`` 1.0 real response token, 0.0 padding.
        clip_eps: ε of the ratio clip (its lower side when `clip_eps_high` is given).
        kl_coef: weight of the KL term (paper recipe: 0.001).
        loss_agg: see above.
        max_len: the constant divisor for Dr. GRPO's aggregation.
        clip_eps_high: upper side of the ratio clip (None: `clip_eps`; DAPO: 0.28).
        prefix: the metrics' prefix (the method's name: the same loss trains RLOO, REINFORCE++ and DAPO).

    Returns:
        ``(loss, metrics)``; metrics: ``grpo/pg_loss`` (aggregated surrogate alone), ``grpo/clip_frac``
        (fraction of real tokens where the clipped branch is the active one), ``grpo/ratio_mean``,
        ``grpo/advantage_abs_mean`` (over sequences), and ``grpo/kl`` (token-mean k3; only when
        ``ref_logprobs`` is given).

    Raises:
        ValueError: ``ref_logprobs`` is None while ``kl_coef > 0``; bad shapes; unknown ``loss_agg``.
    """
    if ref_logprobs is None and kl_coef > 0:
        raise ValueError(f"kl_coef={kl_coef} > 0 needs ref_logprobs; pass kl_coef=0 to train without a reference")
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be [B, T], got {tuple(logprobs.shape)}")
    for name, t in (("old_logprobs", old_logprobs), ("ref_logprobs", ref_logprobs), ("mask", mask)):
        if t is not None and t.shape != logprobs.shape:
            raise ValueError(f"{name} {tuple(t.shape)} must match logprobs {tuple(logprobs.shape)}")
    if advantages.shape not in (logprobs.shape[:1], logprobs.shape):
        raise ValueError(f"advantages must be [B] = [{logprobs.shape[0]}] or [B, T] = {list(logprobs.shape)}, "
                         f"got {tuple(advantages.shape)}")
    if loss_agg not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg {loss_agg!r}; expected one of {LOSS_AGG_MODES}")

    lp = logprobs.float()
    mask = mask.float()
    adv = advantages.detach().float()
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1)  # [B, 1]: one outcome advantage for every token
    pg_tok, ratio, clipped = clipped_surrogate(lp, old_logprobs, adv, clip_eps, clip_eps_high)  # [B, T] each
    loss, metrics = kl_and_aggregate(pg_tok, lp, ref_logprobs, kl_coef, mask, loss_agg, max_len, prefix)
    with torch.no_grad():
        metrics.update({
            f"{prefix}/clip_frac": masked_mean(clipped.float(), mask).item(),
            f"{prefix}/ratio_mean": masked_mean(ratio.detach(), mask).item(),
            f"{prefix}/advantage_abs_mean": (adv.abs().mean() if adv.shape[1] == 1
                                             else masked_mean(adv.abs(), mask)).item(),
        })
    return loss, metrics


def kl_and_aggregate(pg_tok: Tensor, logprobs: Tensor, ref_logprobs: Tensor | None, kl_coef: float, mask: Tensor,
                     loss_agg: str, max_len: int | None, prefix: str) -> tuple[Tensor, dict[str, float]]:
    """The tail every clipped policy-gradient loss shares (GRPO, DAPO, GSPO): the k3 KL to the reference, a loss
    term when `kl_coef` > 0 and else only logged, and the aggregation of the per-token terms into one loss.

    pg_tok, logprobs, mask: [B, T]; ref_logprobs: [B, T] or None. Returns (loss, metrics): `{prefix}/pg_loss` and,
    with a reference, `{prefix}/kl`."""
    loss_tok, kl_tok = pg_tok, None
    if ref_logprobs is not None:
        kl_tok = kl_k3(logprobs, ref_logprobs)
        if kl_coef:
            loss_tok = pg_tok + kl_coef * kl_tok
    loss = _aggregate(loss_tok, mask, loss_agg, max_len)
    with torch.no_grad():
        metrics = {f"{prefix}/pg_loss": _aggregate(pg_tok.detach(), mask, loss_agg, max_len).item()}
        if kl_tok is not None:
            metrics[f"{prefix}/kl"] = masked_mean(kl_tok.detach(), mask).item()
    return loss, metrics
