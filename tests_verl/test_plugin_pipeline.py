"""TBRM through verl's real actor path, against this suite's reference loss.

One batch goes the way a verl 0.9.1 TBRM step takes it: old and reference log-probs from the engine's own
input/output preparation (no grad), ``apply_kl_penalty`` -> ``compute_advantage`` (our ``tbrm`` estimator) ->
the policy moves (as it does after the first mini-batch) -> ``left_right_2_no_padding`` -> ``prepare_micro_batches``
-> the engine's ``prepare_model_inputs`` -> the model -> the engine's ``prepare_model_outputs`` (our override) ->
the worker's ``ppo_loss`` (resolved like ``init_model`` does, i.e. our dispatcher) -> backward, summed over
micro-batches as verl's ``forward_backward_batch`` does.

The reference is ``tbrm.loss.tbrm_loss`` on the same batch, with V(s_1) and the log-probs from separate
per-sequence forwards of the same (moved) policy and ``tbrm.logprobs``. Loss and every parameter gradient must
match. verl's FSDP engine needs CUDA for ``forward_step`` itself, so the model call between the engine's two
preparation steps is made here, exactly as ``forward_step`` makes it (fp32, so without autocast).
"""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
import pytest
import torch

BETA = 0.002  # the paper's β: r/β = 500, so δ is in the hundreds, as in real training
PAD = 0

# prompt and response token ids (vocab 97; 0 = pad); lengths differ so that padding matters on both sides
PROMPTS = [[5, 17, 33, 8], [40, 41], [9, 10, 11, 12, 13, 14], [70, 3, 90]]
RESPONSES = [[21, 22, 2], [60, 61, 62, 63, 64], [30], [44, 45, 46, 2]]
REWARDS = [1.0, 0.0, 1.0, 0.0]


def _engine(model_dir: str, use_remove_padding: bool):
    from verl.trainer.config import CheckpointConfig
    from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig
    from verl.workers.engine.base import EngineRegistry

    cls = EngineRegistry.get_engine_cls("language_model", "fsdp2")
    return cls(HFModelConfig(path=model_dir, load_tokenizer=False, use_remove_padding=use_remove_padding),
               FSDPEngineConfig(strategy="fsdp2", use_torch_compile=False), FSDPOptimizerConfig(lr=1e-6),
               CheckpointConfig())


def _actor_config(micro_batch_size: int, **overrides):
    from verl.workers.config import FSDPActorConfig, PolicyLossConfig

    kw = dict(strategy="fsdp2", rollout_n=1, ppo_mini_batch_size=len(PROMPTS),
              ppo_micro_batch_size_per_gpu=micro_batch_size, policy_loss=PolicyLossConfig(loss_mode="tbrm"),
              use_kl_loss=False, entropy_coeff=0.0, use_torch_compile=False)
    kw.update(overrides)
    return FSDPActorConfig(**kw)


def _padded_batch():
    """verl's rollout layout: prompts left-padded, responses right-padded."""
    B, P, R = len(PROMPTS), max(map(len, PROMPTS)), max(map(len, RESPONSES))
    prompts = torch.full((B, P), PAD)
    responses = torch.full((B, R), PAD)
    attention = torch.zeros(B, P + R, dtype=torch.long)
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        prompts[i, P - len(p):] = torch.tensor(p)
        responses[i, :len(r)] = torch.tensor(r)
        attention[i, P - len(p):P + len(r)] = 1
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    return dict(prompts=prompts, responses=responses, input_ids=torch.cat([prompts, responses], 1),
                attention_mask=attention, position_ids=position_ids, response_mask=attention[:, P:].clone())


def _engine_forward(engine, model, data, loss_fn=None):
    """verl's FSDPEngine.forward_backward_batch + FSDPEngineWithLMHead.forward_step, minus device moves."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.engine.utils import prepare_micro_batches

    tu.assign_non_tensor(data, sp_size=engine.ulysses_sequence_parallel_size)
    tu.assign_non_tensor(data, batch_num_tokens=int(data["loss_mask"].sum()), dp_size=1)
    micro_batches, _ = prepare_micro_batches(data=data, dp_group=None, same_micro_num_in_dp=True)
    outputs, total = [], 0.0
    for mb in micro_batches:
        model_inputs, output_args = engine.prepare_model_inputs(micro_batch=mb)
        raw = model(**model_inputs, use_cache=False)
        model_output = engine.prepare_model_outputs(output=raw, output_args=output_args, micro_batch=mb,
                                                    logits_processor_func=loss_fn)
        if loss_fn is not None:
            loss, metrics = loss_fn(model_output=model_output, data=mb, dp_group=None)
            loss.backward()
            total += loss.item()
        outputs.append((mb, model_output))
    return outputs, total


def _to_actor_td(batch: dict, use_remove_padding: bool, micro_batch_size: int, **extra):
    from tensordict import TensorDict

    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    td = TensorDict({k: v.clone() for k, v in batch.items()}, batch_size=len(PROMPTS))
    td = left_right_2_no_padding(td)
    tu.assign_non_tensor(td, temperature=1.0, use_remove_padding=use_remove_padding, use_fused_kernels=False,
                         use_dynamic_bsz=False, micro_batch_size_per_gpu=micro_batch_size,
                         global_batch_size=len(PROMPTS), **extra)
    return td


def _log_probs(engine, model, batch, use_remove_padding):
    """Per-token log-probs of the responses the way verl's compute_log_prob gets them: no grad, [B, R]."""
    from verl.workers.utils.padding import no_padding_2_padding

    td = _to_actor_td(batch, use_remove_padding, micro_batch_size=len(PROMPTS))
    with torch.no_grad():
        ((mb, out),), _ = _engine_forward(engine, model, td)
    assert "tbrm_v" not in out, "the engine override must not touch no-grad (old/ref log-prob) passes"
    return no_padding_2_padding(out["log_probs"], mb)


def verl_tbrm_step(model_dir, use_remove_padding, micro_batch_size, move_policy=True):
    """(loss, {param: grad}, moved policy, ref, batch, token_level_rewards) through verl's pipeline."""
    from transformers import AutoModelForCausalLM

    from verl import DataProto
    from verl.trainer.config import AlgoConfig, KLControlConfig
    from verl.trainer.ppo.core_algos import FixedKLController
    from verl.trainer.ppo.ray_trainer import apply_kl_penalty, compute_advantage
    from verl.workers import engine_workers

    engine = _engine(model_dir, use_remove_padding)
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    torch.manual_seed(1)  # the policy has already moved away from the reference (a later training step)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = _padded_batch()

    batch["old_log_probs"] = _log_probs(engine, policy, batch, use_remove_padding)
    batch["ref_log_prob"] = _log_probs(engine, ref, batch, use_remove_padding)

    data = DataProto.from_dict(tensors={k: v.clone() for k, v in batch.items()})
    scores = torch.zeros_like(batch["response_mask"], dtype=torch.float32)
    last = batch["response_mask"].sum(-1) - 1
    scores[torch.arange(len(REWARDS)), last] = torch.tensor(REWARDS)
    data.batch["token_level_scores"] = scores
    data.non_tensor_batch["uid"] = np.array([str(i) for i in range(len(REWARDS))], dtype=object)
    algo = AlgoConfig(adv_estimator="tbrm", use_kl_in_reward=True, kl_penalty="kl",
                      kl_ctrl=KLControlConfig(type="fixed", kl_coef=BETA))
    data, _ = apply_kl_penalty(data, kl_ctrl=FixedKLController(BETA), kl_penalty="kl")
    data = compute_advantage(data, adv_estimator="tbrm", config=algo)
    batch["advantages"] = data.batch["advantages"]

    if move_policy:  # old log-probs are now stale: the mini-batch drift case
        torch.manual_seed(2)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.02 * torch.randn_like(p))

    loss_fn = partial(engine_workers.ppo_loss, config=_actor_config(micro_batch_size))  # as init_model binds it
    td = _to_actor_td(batch, use_remove_padding, micro_batch_size)
    policy.zero_grad()
    _, loss = _engine_forward(engine, policy, td, loss_fn)
    grads = {n: p.grad.detach().clone() for n, p in policy.named_parameters()}
    return loss, grads, policy, ref, batch, data.batch["token_level_rewards"]


def reference_tbrm(policy, ref, batch):
    """tbrm.loss.tbrm_loss on the same batch, from one unpadded forward per sequence."""
    from tbrm.logprobs import logsumexp_values, token_logprobs
    from tbrm.loss import tbrm_loss

    R = batch["responses"].shape[1]
    policy.zero_grad()
    v, lp, ref_lp, mask = [], [], [], torch.zeros(len(PROMPTS), R)
    for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES)):
        ids = torch.tensor([p + r])
        logits = policy(input_ids=ids).logits[0, len(p) - 1:len(p) - 1 + len(r)]
        with torch.no_grad():
            ref_logits = ref(input_ids=ids).logits[0, len(p) - 1:len(p) - 1 + len(r)]
        target = torch.tensor(r)
        v.append(logsumexp_values(logits[:1]).squeeze(0))
        lp.append(torch.nn.functional.pad(token_logprobs(logits, target), (0, R - len(r))))
        ref_lp.append(torch.nn.functional.pad(token_logprobs(ref_logits, target), (0, R - len(r))))
        mask[i, :len(r)] = 1
    loss, metrics = tbrm_loss(torch.stack(v), torch.stack(lp), torch.stack(ref_lp), mask, torch.tensor(REWARDS),
                              BETA)
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in policy.named_parameters()}, metrics


def max_grad_diff(a: dict, b: dict) -> tuple[float, float]:
    """(max |Δgrad| over all parameters, max |grad| of the reference)."""
    assert a.keys() == b.keys()
    return (max((a[k] - b[k]).abs().max().item() for k in a), max(b[k].abs().max().item() for k in b))


def assert_matches_reference(model_dir, use_remove_padding, micro_batch_size):
    loss, grads, policy, ref, batch, _ = verl_tbrm_step(model_dir, use_remove_padding, micro_batch_size)
    ref_loss, ref_grads, metrics = reference_tbrm(policy, ref, batch)
    assert abs(metrics["tbrm/residual_abs_mean"]) > 100  # r/β = 500 dominates: a realistic residual scale
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    diff, scale = max_grad_diff(grads, ref_grads)
    print(f"remove_padding={use_remove_padding} micro_batch={micro_batch_size}: loss {loss:.4f} vs "
          f"{ref_loss:.4f}, max|Δgrad| {diff:.3g} (max|grad| {scale:.3g})")
    assert all(g.abs().sum() > 0 for g in ref_grads.values()), "every parameter must get a gradient"
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("micro_batch_size", [4, 2, 1])
def test_padded_path_matches_tbrm_loss(dist, tiny_qwen_dir, micro_batch_size):
    assert_matches_reference(tiny_qwen_dir, use_remove_padding=False, micro_batch_size=micro_batch_size)


@pytest.mark.parametrize("micro_batch_size", [4, 1])
def test_packed_path_matches_tbrm_loss(dist, tiny_qwen_dir, micro_batch_size):
    assert_matches_reference(tiny_qwen_dir, use_remove_padding=True, micro_batch_size=micro_batch_size)


def test_target_is_reward_over_beta_minus_old_ref_log_ratio(dist, tiny_qwen_dir):
    """compute_advantage('tbrm') after apply_kl_penalty: A = r/β − Σ(old − ref) on every response token."""
    _, _, _, _, batch, token_level_rewards = verl_tbrm_step(tiny_qwen_dir, False, 4, move_policy=False)
    mask = batch["response_mask"].float()
    expected = torch.tensor(REWARDS) / BETA - ((batch["old_log_probs"] - batch["ref_log_prob"]) * mask).sum(-1)
    torch.testing.assert_close(batch["advantages"], expected[:, None] * mask, rtol=1e-6, atol=1e-4)
    assert (token_level_rewards * mask).sum(-1).sub(torch.tensor(REWARDS)).abs().max() > 0  # the KL is in


@pytest.mark.parametrize("use_remove_padding", [False, True])
def test_dropping_v_start_is_caught(dist, tiny_qwen_dir, monkeypatch, use_remove_padding):
    """Mutation: V(s_1) ≡ 0 (what a plain registered loss computes) must not pass the comparison."""
    from tbrm_verl import plugin

    monkeypatch.setattr(plugin, "_start_values", lambda rows, temperature: rows.sum(-1) * 0.0)
    with pytest.raises(AssertionError):
        assert_matches_reference(tiny_qwen_dir, use_remove_padding=use_remove_padding, micro_batch_size=2)


def test_missing_v_start_fails_loudly(dist, tiny_qwen_dir, monkeypatch):
    """The stock engine (plugin engine not selected, e.g. another vendor) -> a clear error, not V ≡ 0."""
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    from tbrm_verl import plugin

    monkeypatch.setattr(plugin.ENGINE_CLASS, "prepare_model_outputs", FSDPEngineWithLMHead.prepare_model_outputs)
    with pytest.raises(RuntimeError, match="did not compute V\\(s_1\\)"):
        verl_tbrm_step(tiny_qwen_dir, False, 4)


def test_other_loss_modes_reach_verls_own_ppo_loss(dist, tiny_qwen_dir):
    """With the plugin loaded, GRPO/PPO (loss_mode vanilla) still run verl's own ppo_loss, unchanged."""
    from verl.workers import engine_workers
    from verl.workers.utils.losses import ppo_loss

    from tbrm_verl import plugin

    assert engine_workers.ppo_loss is plugin.ppo_loss_dispatch
    torch.manual_seed(0)
    B, R = 3, 5
    mask = torch.ones(B, R)
    lp = torch.randn(B, R, requires_grad=True)
    from tensordict import TensorDict

    from verl.utils import tensordict_utils as tu

    prompts = torch.nested.as_nested_tensor([torch.tensor([1, 2])] * B, layout=torch.jagged)
    responses = torch.nested.as_nested_tensor([torch.arange(3, 3 + R)] * B, layout=torch.jagged)
    nested = lambda t: torch.nested.as_nested_tensor(list(t), layout=torch.jagged)  # noqa: E731
    data = TensorDict({"prompts": prompts, "responses": responses, "response_mask": nested(mask),
                       "old_log_probs": nested(lp.detach() + 0.1), "advantages": nested(torch.randn(B, R))},
                      batch_size=B)
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=B * R, global_batch_size=B, max_response_len=R)
    full = torch.cat([torch.zeros(B, 2), lp], 1)  # log-probs over prompt+response, as the engine returns them
    model_output = {"log_probs": torch.nested.nested_tensor_from_jagged(full.reshape(-1),
                                                                       torch.arange(0, B * (R + 2) + 1, R + 2))}
    cfg = _actor_config(B, policy_loss=__import__("verl.workers.config", fromlist=["PolicyLossConfig"])
                        .PolicyLossConfig(loss_mode="vanilla"))
    got, _ = engine_workers.ppo_loss(cfg, model_output=model_output, data=data)
    want, _ = ppo_loss(cfg, model_output=model_output, data=data)
    assert torch.equal(got, want) and got.item() != 0
