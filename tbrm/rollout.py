"""Rollout batches and the one forward pass every algorithm's loss is computed from.

Layout of a batch (B sequences): prompts are LEFT-padded to a common width W and responses RIGHT-padded to T,

    [pad pad p p p p | r r r EOS pad pad]
                   ^ column W-1: its output predicts the first response token; V(s_1) = logsumexp there

so the response logits of every row are the same slice [W-1, W-1+T) of the sequence, and position ids come
from the attention mask (as `generate` numbers them) so training sees the tokens at the positions they were
sampled at. Log-probs for the losses are computed in fp32 from fp32 logits: the decoder may run under bf16
autocast, but the LM head is applied in fp32 (TBRM sums hundreds of per-token terms and compares them to
r/beta = 500, where bf16 logits would add noise larger than the signal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from evals.models import autocast_context
from tbrm.logprobs import entropy_from_logits, logsumexp_values, token_logprobs


@dataclass
class RolloutBatch:
    """B sampled (or logged, for off-policy TBRM) trajectories and their rewards.

    input_ids/attention_mask/position_ids: [B, W+T]; response_ids/response_mask: [B, T]; rewards: [B];
    group: [B] index of the prompt each sequence answers (GRPO groups are consecutive blocks).
    `extra` holds per-algorithm tensors computed before the update (ref log-probs, old log-probs, values,
    advantages), all [B, T] or [B].
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    rewards: torch.Tensor
    group: torch.Tensor
    prompt_width: int
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def select(self, idx: slice) -> "RolloutBatch":
        def pick(t):
            return t[idx]

        return RolloutBatch(pick(self.input_ids), pick(self.attention_mask), pick(self.position_ids),
                            pick(self.response_ids), pick(self.response_mask), pick(self.rewards),
                            pick(self.group), self.prompt_width, {k: pick(v) for k, v in self.extra.items()})


def collate(prompt_ids: list[list[int]], response_ids: list[list[int]], rewards: list[float], group: list[int],
            pad_id: int, device: torch.device | str = "cpu") -> RolloutBatch:
    if not (len(prompt_ids) == len(response_ids) == len(rewards) == len(group)):
        raise ValueError("prompt_ids, response_ids, rewards and group must have the same length")
    W = max(len(p) for p in prompt_ids)
    T = max(1, max(len(r) for r in response_ids))
    rows, attn, resp, rmask = [], [], [], []
    for p, r in zip(prompt_ids, response_ids):
        rows.append([pad_id] * (W - len(p)) + list(p) + list(r) + [pad_id] * (T - len(r)))
        attn.append([0] * (W - len(p)) + [1] * (len(p) + len(r)) + [0] * (T - len(r)))
        resp.append(list(r) + [pad_id] * (T - len(r)))
        rmask.append([1.0] * len(r) + [0.0] * (T - len(r)))
    input_ids = torch.tensor(rows, device=device)
    attention_mask = torch.tensor(attn, device=device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return RolloutBatch(input_ids, attention_mask, position_ids, torch.tensor(resp, device=device),
                        torch.tensor(rmask, device=device), torch.tensor(rewards, dtype=torch.float32, device=device),
                        torch.tensor(group, device=device), W)


@dataclass
class ResponseOutputs:
    logits: torch.Tensor  # [B, T, V] fp32
    logprobs: torch.Tensor  # [B, T] fp32 log pi(response token)
    v_start: torch.Tensor | None  # [B] fp32 V(s_1) = logsumexp of the raw logits before the first response token
    hidden: torch.Tensor | None = None  # [B, T, H] decoder states (the PPO critic reads these)

    def entropy(self) -> torch.Tensor:
        return entropy_from_logits(self.logits)


def response_forward(model, batch: RolloutBatch, autocast: str = "none", keep_hidden: bool = False,
                     temperature: float = 1.0, need_v_start: bool = True) -> ResponseOutputs:
    """Run `model` over the batch and return fp32 response logits, log-probs and V(s_1).

    `temperature` divides the logits before log-probs and entropy (GRPO/PPO: the ratio and KL then refer to the
    policy that sampled, as in verl and TRL); V(s_1) always comes from the raw logits (TBRM: logits are Q-values).
    `need_v_start=False` (GRPO, PPO) skips V(s_1), which is then None: its backward would save a view of the raw
    [B, T, V] logits and so keep that whole buffer alive beside the tempered one until backward.

    The decoder runs under the requested autocast; the LM head runs in fp32 on the response slice only
    (memory: B*T*V floats instead of B*(W+T)*V)."""
    device = batch.input_ids.device
    W, T = batch.prompt_width, batch.response_ids.shape[1]
    with autocast_context(device, autocast):
        out = model.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids, use_cache=False)
    hidden = out.last_hidden_state[:, W - 1 : W - 1 + T]
    head = model.get_output_embeddings()
    logits = F.linear(hidden.float(), head.weight.float(), None if head.bias is None else head.bias.float())
    v_start = logsumexp_values(logits[:, :1]).squeeze(1) if need_v_start else None
    if temperature != 1.0:
        logits = logits / temperature
    return ResponseOutputs(logits=logits, logprobs=token_logprobs(logits, batch.response_ids), v_start=v_start,
                           hidden=hidden if keep_hidden else None)
