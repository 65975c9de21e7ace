"""A training recipe (tbrm/recipes/*.yaml, a ``TrainConfig``) -> verl's Hydra overrides, composed and checked with
verl's own config classes.

The mapping keeps every hyperparameter of the recipe and adds only what verl needs to place the work on GPUs.
Baselines run verl's own PPO (GAE + critic) and GRPO; TBRM runs the exact plugin (``tbrm_verl.plugin``):

| recipe field          | verl key                                                                          |
|-----------------------|-----------------------------------------------------------------------------------|
| model                 | actor_rollout_ref.model.path (and critic.model.path for PPO)                      |
| prompts_per_step      | data.train_batch_size and actor.ppo_mini_batch_size (one optimiser step per step) |
| rollouts_per_prompt   | actor_rollout_ref.rollout.n                                                       |
| max_new_tokens        | data.max_response_length                                                          |
| temperature, top_p    | actor_rollout_ref.rollout.temperature / top_p (TBRM: must be 1.0)                 |
| steps                 | trainer.total_training_steps                                                      |
| lr, weight_decay, warmup_steps | actor.optim.lr / weight_decay / lr_warmup_steps (constant schedule)      |
| grad_clip             | actor.grad_clip and actor.optim.clip_grad                                         |
| micro_batch_size      | actor.ppo_micro_batch_size_per_gpu, rollout/ref log_prob_micro_batch_size_per_gpu |
| gradient_checkpointing| actor_rollout_ref.model.enable_gradient_checkpointing                             |
| policy_epochs         | actor.ppo_epochs                                                                  |
| beta (TBRM)           | algorithm.kl_ctrl.kl_coef, fixed, in-reward KL ``kl``; loss_mode/adv_estimator tbrm|
| clip_eps              | actor.clip_ratio (= clip_ratio_low = clip_ratio_high)                             |
| kl_coef (GRPO, PPO)   | actor.kl_loss_coef with kl_loss_type low_var_kl (k3), use_kl_loss                 |
| scale_adv_by_std      | algorithm.norm_adv_by_std_in_grpo                                                 |
| loss_agg              | actor.loss_agg_mode                                                               |
| entropy_coef (PPO)    | actor.entropy_coeff                                                               |
| critic_lr, value_clip | critic.optim.lr, critic.cliprange_value                                           |
| gae_gamma, gae_lambda | algorithm.gamma, algorithm.lam                                                    |
| reward_*, lenient, verifier_timeout | reward.custom_reward_function.reward_kwargs (tbrm_verl.reward)|
| eval_every, save_every, keep_checkpoints | trainer.test_freq, save_freq, max_actor_ckpt_to_keep            |
| seed                  | data.seed, actor.data_loader_seed                                                 |

Paths in the overrides are relative to the run folder (the launch script runs there), so the config written
beside a run holds no absolute path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tbrm.config import ConfigError, TrainConfig

TRAIN_FILE = "data/train.parquet"
VAL_FILE = "data/val.parquet"
CHECKPOINT_DIR = "checkpoints"
MAX_PROMPT_LENGTH = 1024  # DAPO-Math-17k prompts with the Qwen-math system prompt fit; longer ones are dropped
PLUGIN_MODULE = "tbrm_verl.plugin"
# algorithms verl_overrides maps onto verl; any other is refused, never run as another method
VERL_MAPPED = ("tbrm", "grpo", "ppo", "rloo", "reinforcepp", "reinforcepp-baseline", "dapo", "gspo")
# the newer policy-gradient baselines: verl's own advantage estimator and policy loss of each
VERL_ESTIMATOR = {"rloo": "rloo", "reinforcepp": "reinforce_plus_plus",
                  "reinforcepp-baseline": "reinforce_plus_plus_baseline", "dapo": "grpo", "gspo": "grpo"}


@dataclass(frozen=True)
class Cluster:
    """Where verl runs. The paper: one node of 4 x H100."""

    n_gpus_per_node: int = 4
    nnodes: int = 1
    rollout_tp: int = 1  # vLLM tensor parallelism per rollout replica
    gpu_memory_utilization: float = 0.6  # vLLM's share while colocated with the FSDP actor (it sleeps in training)


def _unsupported(cfg: TrainConfig) -> list[str]:
    from evals.prompts import CHAT_TEMPLATES

    problems = []
    if cfg.data == "arithmetic":
        problems.append("data=arithmetic is the CPU-scale generator; verl runs train on data=hub or data=file")
    if cfg.offline_trajectories:
        problems.append("offline_trajectories: verl trains on its own rollouts")
    if cfg.ref_model not in (None,):
        problems.append(f"ref_model={cfg.ref_model!r}: verl's reference is the initial policy (leave it unset)")
    if cfg.template not in CHAT_TEMPLATES:
        problems.append(f"template={cfg.template!r}: verl renders prompts with the tokenizer's chat template; use "
                        f"one of {', '.join(CHAT_TEMPLATES)}")
    if cfg.algorithm == "tbrm" and cfg.temperature != 1.0:
        problems.append(f"temperature={cfg.temperature}: TBRM's Q-values are the raw logits and verl divides the "
                        "logits by the rollout temperature, so TBRM on verl needs temperature=1.0")
    if cfg.algorithm not in VERL_MAPPED:
        problems.append(f"algorithm={cfg.algorithm}: no mapping onto verl's estimator and loss yet (mapped: "
                        f"{', '.join(VERL_MAPPED)})")
    if cfg.mask_truncated:
        problems.append("mask_truncated: verl 0.9.1 has no overlong filtering of truncated responses")
    if cfg.algorithm == "ppo" and not cfg.whiten_advantages:
        problems.append("whiten_advantages=False: verl's GAE always whitens advantages")
    return problems


def verl_overrides(cfg: TrainConfig, name: str, cluster: Cluster = Cluster()) -> list[str]:
    """Hydra overrides of verl's ``ppo_trainer`` config that run `cfg` (raises ConfigError if it cannot)."""
    problems = _unsupported(cfg)
    if problems:
        raise ConfigError(f"recipe {name!r} cannot run on verl: " + "; ".join(problems))
    A, R, C = "actor_rollout_ref.actor", "actor_rollout_ref.rollout", "critic"
    mb = cfg.micro_batch_size
    o = [
        # data: converted by tbrm_verl.data into the run folder
        f"data.train_files={TRAIN_FILE}", f"data.val_files={VAL_FILE}",
        f"data.train_batch_size={cfg.prompts_per_step}",
        f"data.max_prompt_length={MAX_PROMPT_LENGTH}", f"data.max_response_length={cfg.max_new_tokens}",
        "data.filter_overlong_prompts=true", "data.truncation=error", f"data.seed={cfg.seed}",
        # model and actor
        f"actor_rollout_ref.model.path={cfg.model}",
        f"actor_rollout_ref.model.enable_gradient_checkpointing={_b(cfg.gradient_checkpointing)}",
        "actor_rollout_ref.model.use_remove_padding=true", "actor_rollout_ref.model.use_fused_kernels=false",
        f"{A}.strategy=fsdp2", f"{A}.optim.lr={cfg.lr}", f"{A}.optim.weight_decay={cfg.weight_decay}",
        f"{A}.optim.lr_warmup_steps={cfg.warmup_steps}", f"{A}.optim.lr_scheduler_type=constant",
        f"{A}.optim.clip_grad={cfg.grad_clip}", f"{A}.grad_clip={cfg.grad_clip}",
        f"{A}.ppo_mini_batch_size={cfg.prompts_per_step}", f"{A}.ppo_micro_batch_size_per_gpu={mb}",
        f"{A}.ppo_epochs={cfg.policy_epochs}", f"{A}.use_dynamic_bsz=false", f"{A}.data_loader_seed={cfg.seed}",
        f"{A}.ulysses_sequence_parallel_size=1", f"{A}.use_fused_kernels=false",
        f"actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu={mb}",
        # rollout (vLLM)
        f"{R}.name=vllm", f"{R}.n={cfg.rollouts_per_prompt}", f"{R}.temperature={cfg.temperature}",
        f"{R}.top_p={cfg.top_p}", f"{R}.log_prob_micro_batch_size_per_gpu={mb}",
        f"{R}.tensor_model_parallel_size={cluster.rollout_tp}",
        f"{R}.gpu_memory_utilization={cluster.gpu_memory_utilization}",
        f"{R}.val_kwargs.temperature=0", f"{R}.val_kwargs.do_sample=false",  # greedy held-out eval, as `tbrm eval`
        # one reward for every algorithm: this suite's verifier
        "reward.custom_reward_function.path=pkg://tbrm_verl.reward",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.custom_reward_function.reward_kwargs.reward_correct={cfg.reward_correct}",
        f"+reward.custom_reward_function.reward_kwargs.reward_wrong={cfg.reward_wrong}",
        f"+reward.custom_reward_function.reward_kwargs.lenient={_b(cfg.lenient)}",
        f"+reward.custom_reward_function.reward_kwargs.timeout_s={cfg.verifier_timeout}",
        # trainer
        f"trainer.total_training_steps={cfg.steps}", "trainer.total_epochs=1000",
        f"trainer.test_freq={cfg.eval_every if cfg.evaluate and cfg.eval_every else -1}",
        f"trainer.val_before_train={_b(cfg.evaluate)}",
        f"trainer.save_freq={cfg.save_every if cfg.save_every else -1}",
        f"trainer.max_actor_ckpt_to_keep={cfg.keep_checkpoints}",
        f"trainer.max_critic_ckpt_to_keep={cfg.keep_checkpoints}",
        f"trainer.default_local_dir={CHECKPOINT_DIR}", "trainer.project_name=tbrm-bench",
        f"trainer.experiment_name={name}", "trainer.logger=[console]",
        f"trainer.n_gpus_per_node={cluster.n_gpus_per_node}", f"trainer.nnodes={cluster.nnodes}",
        # verl's defaults that point into the home directory or /tmp: kept inside the run folder instead
        f"critic.model.path={cfg.model}", "skip.rollout.dump_dir=rollout_dump",
        "skip.rollout_tq.dump_dir=rollout_dump", "skip.async_rollout.dump_dir=rollout_dump",
        "actor_rollout_ref.rollout.prometheus.file=prometheus/prometheus.yml",
        # every Ray worker imports the plugin even if entry points are off (and fails loudly if it cannot)
        f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES={PLUGIN_MODULE}",
    ]
    if cfg.algorithm == "tbrm":
        o += [
            "algorithm.adv_estimator=tbrm", "algorithm.use_kl_in_reward=true", "algorithm.kl_penalty=kl",
            "algorithm.kl_ctrl.type=fixed", f"algorithm.kl_ctrl.kl_coef={cfg.beta}",
            f"{A}.policy_loss.loss_mode=tbrm", f"{A}.use_kl_loss=false", f"{A}.entropy_coeff=0",
            f"{A}.loss_agg_mode=seq-mean-token-sum",  # informational: the TBRM loss always averages over responses
            "critic.enable=false",
        ]
    elif cfg.algorithm == "grpo":
        o += [
            "algorithm.adv_estimator=grpo", "algorithm.use_kl_in_reward=false",
            f"algorithm.norm_adv_by_std_in_grpo={_b(cfg.scale_adv_by_std)}",
            f"{A}.policy_loss.loss_mode=vanilla", f"{A}.clip_ratio={cfg.clip_eps}",
            f"{A}.clip_ratio_low={cfg.clip_eps}", f"{A}.clip_ratio_high={cfg.clip_eps}",
            f"{A}.use_kl_loss={_b(cfg.kl_coef > 0)}", f"{A}.kl_loss_coef={cfg.kl_coef}",
            f"{A}.kl_loss_type=low_var_kl", f"{A}.entropy_coeff=0", f"{A}.loss_agg_mode={cfg.loss_agg}",
            "critic.enable=false",
        ]
    elif cfg.algorithm in VERL_ESTIMATOR:
        o += _policy_gradient_overrides(cfg, A)
    else:  # ppo
        o += [
            "algorithm.adv_estimator=gae", "algorithm.use_kl_in_reward=false",
            f"algorithm.gamma={cfg.gae_gamma}", f"algorithm.lam={cfg.gae_lambda}",
            f"{A}.policy_loss.loss_mode=vanilla", f"{A}.clip_ratio={cfg.clip_eps}",
            f"{A}.clip_ratio_low={cfg.clip_eps}", f"{A}.clip_ratio_high={cfg.clip_eps}",
            f"{A}.use_kl_loss={_b(cfg.kl_coef > 0)}", f"{A}.kl_loss_coef={cfg.kl_coef}",
            f"{A}.kl_loss_type=low_var_kl", f"{A}.entropy_coeff={cfg.entropy_coef}",
            f"{A}.loss_agg_mode={cfg.loss_agg}",
            "critic.enable=true", f"{C}.strategy=fsdp2",
            f"{C}.optim.lr={cfg.critic_lr}", f"{C}.optim.weight_decay={cfg.weight_decay}",
            f"{C}.cliprange_value={cfg.value_clip}", f"{C}.ppo_micro_batch_size_per_gpu={mb}",
            f"{C}.grad_clip={cfg.grad_clip}",
            f"{C}.model.enable_gradient_checkpointing={_b(cfg.gradient_checkpointing)}",
        ]
    return o


def _policy_gradient_overrides(cfg: TrainConfig, A: str) -> list[str]:
    """RLOO, REINFORCE++(-baseline), DAPO, GSPO: verl's estimator (`VERL_ESTIMATOR`) and loss (GSPO's `gspo`, else
    `vanilla`) with the recipe's clip band and aggregation. REINFORCE++ puts its KL in the reward (k1, fixed
    kl_coef); the others take it as a k3 loss term. DAPO adds verl's group filter (dynamic sampling: up to
    dynamic_sampling_rounds + 1 generation batches per step) and verl's DAPO reward manager for the overlong penalty,
    which scores with this suite's verifier too (it calls the custom reward function)."""
    low = cfg.clip_eps if cfg.clip_eps_low is None else cfg.clip_eps_low
    high = cfg.clip_eps if cfg.clip_eps_high is None else cfg.clip_eps_high
    kl_in_reward = cfg.algorithm == "reinforcepp"
    o = [
        f"algorithm.adv_estimator={VERL_ESTIMATOR[cfg.algorithm]}", f"algorithm.gamma={cfg.gae_gamma}",
        f"algorithm.norm_adv_by_std_in_grpo={_b(cfg.scale_adv_by_std)}",
        f"algorithm.use_kl_in_reward={_b(kl_in_reward and cfg.kl_coef > 0)}", "algorithm.kl_penalty=kl",
        "algorithm.kl_ctrl.type=fixed", f"algorithm.kl_ctrl.kl_coef={cfg.kl_coef if kl_in_reward else 0.0}",
        f"{A}.policy_loss.loss_mode={'gspo' if cfg.algorithm == 'gspo' else 'vanilla'}",
        f"{A}.clip_ratio={low}", f"{A}.clip_ratio_low={low}", f"{A}.clip_ratio_high={high}",
        f"{A}.use_kl_loss={_b(not kl_in_reward and cfg.kl_coef > 0)}",
        f"{A}.kl_loss_coef={0.0 if kl_in_reward else cfg.kl_coef}", f"{A}.kl_loss_type=low_var_kl",
        f"{A}.entropy_coeff=0", f"{A}.loss_agg_mode={cfg.loss_agg}", "critic.enable=false",
    ]
    if cfg.algorithm == "dapo" and cfg.dynamic_sampling:
        # filter on the verifier's verdict (tbrm_verl.reward's `acc`), as the shared loop filters on the reward before
        # the overlong penalty and DAPO filters on accuracy; verl's "reward" would include that penalty
        o += ["algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=acc",
              f"algorithm.filter_groups.max_num_gen_batches={cfg.dynamic_sampling_rounds + 1}"]
    if cfg.algorithm == "dapo" and cfg.overlong_buffer:
        o += ["reward.reward_manager.name=dapo", f"+reward.reward_kwargs.max_resp_len={cfg.max_new_tokens}",
              "+reward.reward_kwargs.overlong_buffer_cfg.enable=true",
              f"+reward.reward_kwargs.overlong_buffer_cfg.len={cfg.overlong_buffer}",
              f"+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor={cfg.overlong_penalty_factor}",
              "+reward.reward_kwargs.overlong_buffer_cfg.log=false"]
    return o


def _b(x: bool) -> str:
    return "true" if x else "false"


def verl_config_dir() -> Path:
    import verl.trainer.main_ppo as main_ppo

    return Path(main_ppo.__file__).parent / "config"


def compose(overrides: list[str]):
    """verl's ``ppo_trainer`` config with `overrides`, as ``python -m verl.trainer.main_ppo`` would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(verl_config_dir()), version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=list(overrides))


def check(config, stand_in_model: str | None = None) -> dict:
    """Build the config's parts with verl's own config classes and run verl's own start-up validation (plus the
    TBRM plugin's checks for TBRM runs). Returns the built dataclasses by section name.

    verl's model config loads the model's config and tokenizer files. Offline (tests, a login node without hub
    access) pass `stand_in_model`, a local HF folder used in their place for this check only; every other value
    is checked as it will run.
    """
    from omegaconf import OmegaConf

    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    if stand_in_model is not None:
        if not Path(stand_in_model).is_dir():
            raise ConfigError(f"stand-in model {stand_in_model!r}: not a local folder")
        config = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
        config.actor_rollout_ref.model.path = str(stand_in_model)
        config.critic.model.path = str(stand_in_model)
    use_critic = need_critic(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=use_critic)
    built = {
        "actor": omega_conf_to_dataclass(config.actor_rollout_ref.actor),
        "rollout": omega_conf_to_dataclass(config.actor_rollout_ref.rollout),
        "model": omega_conf_to_dataclass(config.actor_rollout_ref.model),
        "algorithm": omega_conf_to_dataclass(config.algorithm),
        # verl's own loader of the reward hook: imports tbrm_verl.reward through its pkg:// path
        "reward_fn": get_custom_reward_fn(config),
    }
    if use_critic:
        built["critic"] = omega_conf_to_dataclass(config.critic)
    if config.algorithm.adv_estimator == "tbrm":
        from tbrm_verl.plugin import check_actor_settings, tbrm_beta

        tbrm_beta(built["algorithm"])
        check_actor_settings(built["actor"], temperature=built["rollout"].temperature,
                             use_fused_kernels=built["model"].use_fused_kernels)
    return built
