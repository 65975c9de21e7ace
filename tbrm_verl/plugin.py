"""Exact TBRM inside verl 0.9.1: an advantage estimator, an FSDP engine override and a loss dispatcher.

verl's registered policy losses see ``(old_log_prob, log_prob, advantages, response_mask, ...)`` and nothing else,
so a registered loss cannot see V_θ(s_1) and would silently train TBRM with V ≡ 0 (baseline-free REINFORCE,
biased off-policy; docs/verl-plugin.md explains the design). This module adds the missing term without editing verl:

1. ``compute_tbrm_target`` (advantage estimator ``tbrm``). With ``algorithm.use_kl_in_reward=True``,
   ``kl_penalty=kl`` and a fixed ``kl_coef=β``, verl's ``apply_kl_penalty`` has already turned the scores into
   ``token_level_rewards = r·[last token] − β·(old − ref)``. Their sum over the response divided by β is
   ``r/β − O + R`` (O, R: summed old and reference log-probs). It is broadcast over the response tokens.
2. ``TBRMFSDPEngineWithLMHead`` (registered for (cuda, nvidia) and (cpu, cpu), which verl's ``EngineRegistry``
   prefers over the stock FSDP engine of the device). Under grad it takes the logits row that predicts each response's first token, divides it
   by the rollout temperature and stores its logsumexp (V_θ(s_1)) as ``model_output["tbrm_v"]``.
3. ``ppo_loss_dispatch`` replaces ``verl.workers.engine_workers.ppo_loss`` (resolved when the actor is built):
   ``policy_loss.loss_mode == "tbrm"`` goes to ``tbrm_actor_loss``, every other mode to verl's own ``ppo_loss``.
   ``tbrm_actor_loss`` computes δ = V + Σ(log π_θ − old) − A = V + L − R − r/β and the mean of δ² over the
   global mini-batch. ``old`` cancels algebraically, so the value is exact for any θ: across micro-batches,
   mini-batches and epochs.

verl swallows errors raised while loading ``verl.plugins`` entry points (``verl/__init__.py:75``). So every way
this plugin can be missing fails loudly on first use: the ``tbrm`` policy loss registered in verl's registry
raises (it is only reached when the dispatcher is not installed), and ``tbrm_actor_loss`` raises when the engine
override did not run. Settings the loss cannot honour exactly are refused by ``check_actor_settings``.

Pinned to verl 0.9.1: verl rewrote the engine and worker surfaces used here twice within a year
(docs/verl-plugin.md, "Loading and versions").
"""

from __future__ import annotations

import logging

import torch

VERL_VERSION = "0.9.1"
LOSS_MODE = "tbrm"  # actor_rollout_ref.actor.policy_loss.loss_mode
ADV_ESTIMATOR = "tbrm"  # algorithm.adv_estimator
V_KEY = "tbrm_v"  # model_output key: V_θ(s_1) at each response's first prediction position, 0 elsewhere

log = logging.getLogger(__name__)


class TBRMSettingError(ValueError):
    """A verl setting under which the TBRM loss would not be the TBRM objective."""


# --- 1. target: r/β − Σ(old − ref) from verl's KL-shaped token rewards -------------------------------------------


def _get(cfg, key, default=None):
    return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def tbrm_beta(algo_config) -> float:
    """β of an ``algorithm`` config, after checking it is used the way TBRM needs (else TBRMSettingError)."""
    if algo_config is None:
        raise TBRMSettingError("the tbrm advantage estimator needs the algorithm config (for kl_ctrl.kl_coef = beta)")
    kl_ctrl = _get(algo_config, "kl_ctrl")
    problems = []
    if not _get(algo_config, "use_kl_in_reward", False):
        problems.append("algorithm.use_kl_in_reward must be True (the reference log-probs enter the target "
                        "through verl's in-reward KL)")
    if _get(algo_config, "kl_penalty") not in ("kl", "k1"):
        problems.append(f"algorithm.kl_penalty must be 'kl' (old - ref, unclamped), got {_get(algo_config, 'kl_penalty')!r}")
    if kl_ctrl is None or _get(kl_ctrl, "type") != "fixed":
        problems.append("algorithm.kl_ctrl.type must be 'fixed' (beta is a constant of the objective)")
    beta = _get(kl_ctrl, "kl_coef") if kl_ctrl is not None else None
    if beta is None or not beta > 0:
        problems.append(f"algorithm.kl_ctrl.kl_coef is beta and must be > 0, got {beta!r}")
    if problems:
        raise TBRMSettingError("TBRM on verl: " + "; ".join(problems))
    return float(beta)


def compute_tbrm_target(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, config=None, **kwargs):
    """Per-response regression target r/β − Σ_h(old − ref), broadcast over the response.

    Args:
        token_level_rewards: ``[B, T]`` verl's ``score − β·(old − ref)`` (``apply_kl_penalty`` with ``kl``).
        response_mask: ``[B, T]``.
        config: verl's ``algorithm`` config (β = ``kl_ctrl.kl_coef``).

    Returns:
        ``(advantages, returns)``, both ``[B, T]`` equal to the target on response tokens, 0 on padding.
    """
    beta = tbrm_beta(config)
    mask = response_mask.float()
    target = (token_level_rewards.float() * mask).sum(-1, keepdim=True) / beta
    advantages = target * mask
    return advantages, advantages


# --- 2. engine override: V_θ(s_1) = logsumexp of the first response position's logits ---------------------------


def _first_response_positions(micro_batch) -> torch.Tensor:
    """Flat index (into the packed prompt+response tokens) of the position predicting each response's first
    token: ``seq_offset − resp_len − 1``, derived by verl's own ``no_padding_2_padding`` so that it is by
    construction the row the loss reads back."""
    from verl.workers.utils.padding import no_padding_2_padding

    offsets = micro_batch["input_ids"].offsets()
    total = int(offsets[-1])
    positions = torch.arange(total, device=offsets.device, dtype=torch.float64)
    return no_padding_2_padding(positions, micro_batch)[:, 0].long()


def _start_values(logits_rows: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """``[B, V]`` logits rows (raw), ``[B]`` temperatures -> ``[B]`` fp32 logsumexp(rows / T)."""
    return torch.logsumexp(logits_rows.float() / temperature.float().unsqueeze(-1), dim=-1)


def _engine_base():
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    return FSDPEngineWithLMHead


def _make_engine_class():
    from torch.distributed.tensor import DTensor

    from verl.utils import tensordict_utils as tu

    class TBRMFSDPEngineWithLMHead(_engine_base()):
        """verl's FSDP LM engine, plus ``model_output["tbrm_v"]`` in training forwards (see module doc).

        Only grad-enabled forwards add it, so old/ref log-prob passes cost nothing extra. It is skipped
        (and the TBRM loss then refuses to run) where the logits are not materialised or are sharded: fused
        kernels, Ulysses SP > 1, vocab-parallel DTensor logits. The rows are gathered BEFORE the logsumexp:
        ``logprobs_from_logits`` may run flash-attn's cross-entropy with ``inplace_backward=True``, which
        overwrites the logits buffer with its gradient, so an op that saved the full logits would back-prop
        through garbage. (CPU tests cannot exercise that CUDA kernel; the GPU smoke script does.) The gather's
        backward still produces one transient logits-shaped gradient per micro-batch, as the log-prob's does.
        GRPO/PPO runs in the same environment also get ``tbrm_v`` (B rows of logsumexp, negligible); their loss
        ignores it.
        """

        def prepare_model_outputs(self, output, output_args, micro_batch, logits_processor_func):
            model_output = super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
            use_fused = tu.get_non_tensor_data(data=micro_batch, key="use_fused_kernels", default=False)
            logits = getattr(output, "logits", None)
            if (not torch.is_grad_enabled() or use_fused or logits is None or isinstance(logits, DTensor)
                    or getattr(self, "use_ulysses_sp", False)):
                return model_output
            input_ids = micro_batch["input_ids"]
            offsets = input_ids.offsets()
            idx = _first_response_positions(micro_batch).to(logits.device)
            use_remove_padding = tu.get_non_tensor_data(data=micro_batch, key="use_remove_padding", default=True)
            if use_remove_padding:
                rows = logits.squeeze(0)[idx]  # packed: (total_nnz + pad, V)
                temperature = output_args["temperature_rmpad"][idx]
            else:
                seq = torch.arange(idx.shape[0], device=logits.device)
                rows = logits[seq, idx - offsets[:-1].to(logits.device)]  # right-padded: (B, max_len, V)
                temperature = output_args["temperature"]
            v = _start_values(rows, temperature.to(rows.device))
            flat = torch.zeros(int(offsets[-1]), dtype=v.dtype, device=v.device).index_put((idx,), v)
            model_output[V_KEY] = torch.nested.nested_tensor_from_jagged(flat, offsets.to(v.device))
            return model_output

    return TBRMFSDPEngineWithLMHead


# --- 3. the loss, its dispatcher and the guards -----------------------------------------------------------------


def _actor_sp_size(config) -> int:
    engine = _get(config, "engine")
    sizes = [_get(config, "ulysses_sequence_parallel_size", 1) or 1]
    if engine is not None:
        sizes.append(_get(engine, "ulysses_sequence_parallel_size", 1) or 1)
    return int(max(sizes))


def check_actor_settings(config, temperature=None, use_fused_kernels: bool = False) -> None:
    """Refuse actor settings under which ``tbrm_actor_loss`` would not be the TBRM objective.

    Args:
        config: verl's actor config (``ActorConfig`` or the ``actor_rollout_ref.actor`` DictConfig).
        temperature: the rollout temperature(s) the engine divides logits by (scalar or tensor), if known.
        use_fused_kernels: the engine's flag (from ``actor_rollout_ref.model.use_fused_kernels``), if known.
    """
    problems = []
    strategy = _get(config, "strategy")
    if strategy not in ("fsdp", "fsdp2"):
        problems.append(f"actor strategy {strategy!r} is not supported: only the FSDP engine computes V(s_1) "
                        "(Megatron's vocab-parallel logits would need a tensor-parallel logsumexp)")
    if use_fused_kernels or _get(config, "use_fused_kernels", False):
        problems.append("use_fused_kernels=True is not supported: fused kernels never materialise the logits, "
                        "so V(s_1) = logsumexp(logits) cannot be taken")
    if _actor_sp_size(config) > 1:
        problems.append(f"ulysses_sequence_parallel_size={_actor_sp_size(config)} is not supported: with "
                        "sequence parallelism the first-position logits are sharded across ranks")
    if _get(config, "use_kl_loss", False):
        problems.append("use_kl_loss=True would add a second KL term: TBRM's KL to the reference is inside the "
                        "residual (set algorithm.use_kl_in_reward=True, actor.use_kl_loss=False)")
    if (_get(config, "entropy_coeff", 0) or 0) != 0:
        problems.append("entropy_coeff must be 0: an entropy bonus is not part of the TBRM objective")
    if temperature is not None:
        t = torch.as_tensor(temperature, dtype=torch.float64)
        if not torch.all(t == 1.0):
            problems.append(f"rollout temperature {float(t.flatten()[0]):g} is not supported: TBRM's Q-values are "
                            "the raw logits (T = 1); verl divides the logits by the rollout temperature, which "
                            "would train a tempered policy")
    if problems:
        raise TBRMSettingError("TBRM on verl: " + "; ".join(problems))


def tbrm_actor_loss(config, model_output, data, dp_group=None):
    """TBRM loss on one micro-batch of verl's actor update.

    δ_i = V_θ(s_1) + Σ_h (log π_θ − old)·mask − A_i, with A_i = r_i/β − Σ_h(old − ref) from
    ``compute_tbrm_target``, so δ_i = V + L − R − r/β exactly. The loss is Σ_i δ_i² / global_batch_size · dp_size
    (verl's ``seq-mean-token-sum`` aggregation on δ² placed at each response's first token), so the gradient
    accumulated over micro-batches and averaged over data-parallel ranks is that of mean δ² over the mini-batch.

    Returns:
        ``(loss, metrics)`` like verl's ``ppo_loss``.
    """
    from verl.trainer.ppo.core_algos import agg_loss
    from verl.utils.metric import AggregationType, Metric
    from verl.workers.utils.padding import no_padding_2_padding

    from verl.utils import tensordict_utils as tu

    check_actor_settings(config, temperature=data.get("temperature", None),
                         use_fused_kernels=tu.get_non_tensor_data(data=data, key="use_fused_kernels", default=False))
    if V_KEY not in model_output:
        raise RuntimeError(
            "TBRM on verl: the actor engine did not compute V(s_1) (model_output has no 'tbrm_v'). The tbrm_verl "
            "engine override is not the engine in use: check that tbrm_verl is installed in every Ray worker's "
            "environment, that verl selected vendor 'nvidia' (EngineRegistry.get_engine_cls), and that "
            "use_fused_kernels=False and ulysses_sequence_parallel_size=1")

    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    v_start = no_padding_2_padding(model_output[V_KEY], data)[:, 0]

    config.global_batch_info["dp_size"] = data["dp_size"]
    config.global_batch_info["batch_num_tokens"] = data["batch_num_tokens"]
    config.global_batch_info["global_batch_size"] = data["global_batch_size"]
    config.global_batch_info["loss_scale_factor"] = config.loss_scale_factor

    padded = data.select("response_mask", "old_log_probs", "advantages").to_padded_tensor()
    mask = padded["response_mask"].float()
    old_log_prob = padded["old_log_probs"].float()
    target = padded["advantages"].float()[:, 0]  # A is constant over each response

    log_ratio_to_old = ((log_prob.float() - old_log_prob) * mask).sum(-1)
    delta = v_start + log_ratio_to_old - target
    loss_mat = torch.zeros_like(mask)
    loss_mat[:, 0] = delta.pow(2)
    loss = agg_loss(loss_mat=loss_mat, loss_mask=mask, loss_agg_mode="seq-mean-token-sum", **config.global_batch_info)

    d = delta.detach()
    metrics = {
        "actor/pg_loss": Metric(value=loss.detach(), aggregation=AggregationType.SUM),
        "tbrm/residual_mean": Metric(value=d.mean(), aggregation=AggregationType.MEAN),
        "tbrm/residual_abs_mean": Metric(value=d.abs().mean(), aggregation=AggregationType.MEAN),
        "tbrm/v_start_mean": Metric(value=v_start.detach().mean(), aggregation=AggregationType.MEAN),
        "tbrm/target_mean": Metric(value=target.mean(), aggregation=AggregationType.MEAN),
    }
    return loss, metrics


def _tbrm_registry_guard(**kwargs):
    raise RuntimeError(
        "TBRM on verl: verl's policy-loss registry was asked for 'tbrm', which means this worker builds its loss "
        "with verl's stock ppo_loss: the tbrm_verl plugin was imported but its loss dispatcher is not installed "
        "here (verl.workers.engine_workers.ppo_loss was rebound after init_model, or replaced by another plugin). "
        "A registered policy loss cannot express TBRM: it never sees V(s_1)")


_ORIGINAL_PPO_LOSS = None


def ppo_loss_dispatch(config, model_output, data, dp_group=None):
    """Drop-in for verl's ``ppo_loss``: ``loss_mode == "tbrm"`` -> ``tbrm_actor_loss``, else verl's own."""
    if _get(config.policy_loss, "loss_mode", "vanilla") == LOSS_MODE:
        return tbrm_actor_loss(config, model_output, data, dp_group)
    return _ORIGINAL_PPO_LOSS(config, model_output=model_output, data=data, dp_group=dp_group)


_INSTALLED = False
ENGINE_CLASS = None


def install() -> None:
    """Register the estimator, the guard loss and the engine; rebind the worker's ``ppo_loss``. Idempotent."""
    global _INSTALLED, _ORIGINAL_PPO_LOSS, ENGINE_CLASS
    if _INSTALLED:
        return
    import verl
    from verl.trainer.ppo import core_algos
    from verl.workers import engine_workers
    from verl.workers.engine.base import EngineRegistry

    if verl.__version__ != VERL_VERSION:
        raise ImportError(f"tbrm_verl supports verl=={VERL_VERSION} only (it overrides semi-internal engine and "
                          f"worker surfaces), found verl {verl.__version__}")
    core_algos.register_adv_est(ADV_ESTIMATOR)(compute_tbrm_target)
    core_algos.register_policy_loss(LOSS_MODE)(_tbrm_registry_guard)
    ENGINE_CLASS = _make_engine_class()
    EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device="cuda",
                            vendor="nvidia")(ENGINE_CLASS)
    # verl 0.9.1 has no CPU platform; with one that reports device and vendor "cpu" (the CPU test harness,
    # tests_verl/verl_cpu.py) this engine is chosen as on a GPU, without VERL_ENGINE_* overrides
    EngineRegistry.register(model_type="language_model", backend=["fsdp", "fsdp2"], device="cpu",
                            vendor="cpu")(ENGINE_CLASS)
    _ORIGINAL_PPO_LOSS = engine_workers.ppo_loss
    engine_workers.ppo_loss = ppo_loss_dispatch
    _INSTALLED = True


def is_installed() -> bool:
    return _INSTALLED


# Importing this module IS loading the plugin (verl imports it from the `verl.plugins` entry point, or from
# VERL_USE_EXTERNAL_MODULES=tbrm_verl.plugin). verl logs entry-point errors at DEBUG only, so say it at ERROR.
try:
    install()
except Exception:
    log.exception("tbrm_verl: the TBRM plugin for verl failed to load; TBRM runs will fail in this process")
    raise
