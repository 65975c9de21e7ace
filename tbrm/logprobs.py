"""Per-token quantities read off a causal LM's logits, in fp32, with bounded memory.

Conventions (shared by the training loop and every loss in this repo):

- The loop runs the model on prompt+response, slices out the response part and hands over
  ``logits [B, T, V]`` aligned with ``targets [B, T]`` (the response token ids) and a float
  ``mask [B, T]`` (1 for real response tokens, 0 for padding after EOS). Logits at position t are the
  ones that *predicted* token t, i.e. they were computed from the state s_t = prompt + response[:t].
- In TBRM (Yuan et al., arXiv 2505.15311) logits are Q-values: Q(s, a) = logit(s, a),
  V(s) = logsumexp_a logit(s, a), π(a|s) = softmax. So ``V(s_1)`` for a batch is
  ``logsumexp_values(logits[:, :1]).squeeze(1)`` (only one position: cheap).

Memory. The vocabulary dimension dominates (e.g. 16 x 1024 x 49k logits = 3.2 GB in fp32). A plain
``log_softmax(logits.float())`` makes a full fp32 copy and autograd then keeps it alive until backward.
Here every function runs over chunks of rows (dim 0) under ``torch.no_grad`` and, in backward, recomputes
each chunk's fp32 graph and frees it before the next (chunk-wise checkpointing), so the extra memory is a
few fp32 chunk-sized temporaries (chunks of ~128 MiB by default, at least one row), whatever B is; only
the [B, T] results are kept. The gradient w.r.t. the logits comes back in the logits' own dtype. The
price is one recomputation of each chunk's forward in backward.

Dtypes. bf16/fp16/fp32 logits give fp32 results; fp64 logits stay fp64 (lets ``gradcheck`` run).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = [
    "token_logprobs",
    "logsumexp_values",
    "entropy_from_logits",
    "masked_sum",
    "masked_mean",
]

# Budget for one fp32 chunk of logits. Big enough that small batches are one chunk (no Python loop
# overhead), small enough not to matter next to the model's own activations.
_CHUNK_BYTES = 128 * 2**20


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # fp32 at least (loss math needs it: TBRM residuals start in the hundreds), fp64 kept for gradcheck.
    return torch.promote_types(dtype, torch.float32)


def _rows_per_chunk(logits: Tensor, chunk_rows: int | None) -> int:
    if chunk_rows is not None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        return chunk_rows
    per_row = max(1, logits[0].numel() if logits.shape[0] else 1) * 4
    return max(1, _CHUNK_BYTES // per_row)


class _ChunkedRowwise(torch.autograd.Function):
    """y = cat_i fn(logits[i-th row chunk] in fp32, *extras[chunk]); backward recomputes chunk by chunk.

    ``fn`` must be row-wise (row b of the output depends only on row b of the inputs) and differentiable
    in its first argument; ``extras`` are integer/constant tensors (targets) that get no gradient.
    """

    @staticmethod
    def forward(ctx, fn: Callable[..., Tensor], rows: int, logits: Tensor, *extras: Tensor) -> Tensor:
        cdtype = _compute_dtype(logits.dtype)
        with torch.no_grad():
            outs = [
                fn(logits[s : s + rows].to(cdtype), *(e[s : s + rows] for e in extras))
                for s in range(0, logits.shape[0], rows)
            ]
        ctx.fn, ctx.rows, ctx.cdtype = fn, rows, cdtype
        ctx.save_for_backward(logits, *extras)
        if not outs:  # B == 0
            return logits.new_zeros(logits.shape[:-1], dtype=cdtype)
        return torch.cat(outs, dim=0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        logits, *extras = ctx.saved_tensors
        grad = torch.empty_like(logits)
        rows = ctx.rows
        for s in range(0, logits.shape[0], rows):
            with torch.enable_grad():
                x = logits[s : s + rows].detach().to(ctx.cdtype).requires_grad_(True)
                y = ctx.fn(x, *(e[s : s + rows] for e in extras))
                (g,) = torch.autograd.grad(y, x, grad_out[s : s + rows])
            grad[s : s + rows] = g.to(logits.dtype)
        return (None, None, grad) + (None,) * len(extras)


def _token_logprob_fn(x: Tensor, targets: Tensor) -> Tensor:
    # log π(a|s) = logit(a) - logsumexp(logits), evaluated with the fused log_softmax kernel on this chunk
    # only: faster on CPU than torch.logsumexp + gather, and the chunk bounds the copy it makes.
    return torch.log_softmax(x, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _logsumexp_fn(x: Tensor) -> Tensor:
    return torch.logsumexp(x, dim=-1)


def _entropy_fn(x: Tensor) -> Tensor:
    # H = -Σ p log p. Where p == 0 (a -inf logit) p·log p would be 0·(-inf) = nan, in value and in
    # gradient, so log p is zeroed there before the product (a where() after it would still leak nan grads).
    logp = torch.log_softmax(x, dim=-1)
    p = logp.exp()
    return -(p * logp.masked_fill(p == 0, 0.0)).sum(-1)


def _check_logits(logits: Tensor) -> None:
    if logits.dim() < 2:
        raise ValueError(f"logits must be [..., V] with at least 2 dims (e.g. [B, T, V]), got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got {logits.dtype}")


def token_logprobs(logits: Tensor, targets: Tensor, chunk_rows: int | None = None) -> Tensor:
    """log π(target | s) for every position, as ``logit[target] - logsumexp(logits)``.

    Args:
        logits: ``[B, T, V]`` any float dtype (bf16 from the model is fine).
        targets: ``[B, T]`` int64 token ids (padding positions may hold any valid id; mask them later).
        chunk_rows: rows of B per fp32 chunk; default picks it from a 128 MiB budget.

    Returns:
        ``[B, T]`` fp32 (fp64 if the logits are fp64) log-probabilities, differentiable w.r.t. ``logits``.
    """
    _check_logits(logits)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets {tuple(targets.shape)} must match logits {tuple(logits.shape)} minus the vocab dim")
    targets = targets.long()
    return _ChunkedRowwise.apply(_token_logprob_fn, _rows_per_chunk(logits, chunk_rows), logits, targets)


def logsumexp_values(logits: Tensor, chunk_rows: int | None = None) -> Tensor:
    """V(s) = logsumexp over the vocabulary of the raw logits (TBRM: logits are Q-values).

    Args:
        logits: ``[B, T, V]`` any float dtype.

    Returns:
        ``[B, T]`` fp32 (fp64 for fp64 logits). For TBRM's V(s_1) pass only ``logits[:, :1]``.
    """
    _check_logits(logits)
    return _ChunkedRowwise.apply(_logsumexp_fn, _rows_per_chunk(logits, chunk_rows), logits)


def entropy_from_logits(logits: Tensor, chunk_rows: int | None = None) -> Tensor:
    """Entropy of π = softmax(logits) at every position, H = logsumexp(z) - Σ_a π(a) z_a.

    Args:
        logits: ``[B, T, V]`` any float dtype.

    Returns:
        ``[B, T]`` fp32 (fp64 for fp64 logits), differentiable (PPO's entropy bonus backprops through it).
    """
    _check_logits(logits)
    return _ChunkedRowwise.apply(_entropy_fn, _rows_per_chunk(logits, chunk_rows), logits)


def _masked(x: Tensor, mask: Tensor) -> Tensor:
    if x.shape != mask.shape:
        raise ValueError(f"x {tuple(x.shape)} and mask {tuple(mask.shape)} must have the same shape")
    # where() rather than x * mask alone: padding may hold -inf/nan (e.g. a reference engine's logprob of
    # a pad id), and nan * 0 = nan would leak into the sum and its gradient.
    return torch.where(mask != 0, x * mask, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Σ x·mask over ``dim`` (all elements if None). Shapes: x, mask ``[B, T]`` -> scalar or ``[B]`` (dim=-1)."""
    xm = _masked(x, mask)
    return xm.sum() if dim is None else xm.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None, eps: float = 1e-8) -> Tensor:
    """Σ x·mask / Σ mask over ``dim`` (all tokens if None, per row with dim=-1).

    Shapes: x, mask ``[B, T]`` -> scalar (dim=None) or ``[B]`` (dim=-1). An all-padding row/batch gives 0
    (not nan): the denominator is clamped at ``eps``.
    """
    num = masked_sum(x, mask, dim)
    den = mask.sum() if dim is None else mask.sum(dim=dim)
    return num / den.to(num.dtype).clamp_min(eps)
