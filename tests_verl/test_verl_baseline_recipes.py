"""`tbrm verl` recipes of the newer baselines (tbrm/recipes/verl-*.yaml): each method maps onto verl's own advantage
estimator and policy loss with the recipe's settings, composed with verl's Hydra config and built with verl's own
config classes and start-up validation (as tests_verl/test_recipes.py does for the paper's recipes)."""

from __future__ import annotations

import pytest

from tbrm.config import RECIPES_DIR, ConfigError, load_config

VERL_RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("verl-*.yaml"))


def test_every_newer_baseline_has_a_verl_recipe():
    assert {load_config(r).algorithm for r in VERL_RECIPES} == {"rloo", "reinforcepp", "dapo", "gspo"}


@pytest.mark.parametrize("recipe", VERL_RECIPES)
def test_verl_recipe_maps_the_method_onto_verls_estimator_and_loss(recipe, tiny_chat_model_dir):
    from verl.trainer.ppo import core_algos
    from verl.trainer.ppo.utils import need_critic
    from verl.utils.config import omega_conf_to_dataclass

    from tbrm_verl.recipes import check, compose, verl_overrides

    cfg = load_config(recipe)
    config = compose(verl_overrides(cfg, recipe))
    built = check(config, stand_in_model=tiny_chat_model_dir)
    actor, algo, rollout = built["actor"], built["algorithm"], built["rollout"]
    assert not need_critic(config) and rollout.n == cfg.rollouts_per_prompt == 4
    assert config.data.train_batch_size == cfg.prompts_per_step and actor.optim.lr == cfg.lr
    low = cfg.clip_eps if cfg.clip_eps_low is None else cfg.clip_eps_low
    high = cfg.clip_eps if cfg.clip_eps_high is None else cfg.clip_eps_high
    assert (actor.clip_ratio_low, actor.clip_ratio_high) == (low, high)
    assert actor.loss_agg_mode == cfg.loss_agg and actor.entropy_coeff == 0
    # verl resolves the names to its own functions
    estimator = core_algos.get_adv_estimator_fn(algo.adv_estimator)
    loss_fn = core_algos.get_policy_loss_fn(actor.policy_loss.loss_mode)
    expected = {"rloo": ("compute_rloo_outcome_advantage", "compute_policy_loss_vanilla"),
                "reinforcepp": ("compute_reinforce_plus_plus_outcome_advantage", "compute_policy_loss_vanilla"),
                "dapo": ("compute_grpo_outcome_advantage", "compute_policy_loss_vanilla"),
                "gspo": ("compute_grpo_outcome_advantage", "compute_policy_loss_gspo")}[cfg.algorithm]
    assert (estimator.__name__, loss_fn.__name__) == expected
    if cfg.algorithm == "reinforcepp":  # KL in the reward (k1, fixed), never also in the loss
        assert algo.use_kl_in_reward and algo.kl_penalty == "kl" and algo.kl_ctrl.kl_coef == cfg.kl_coef
        assert not actor.use_kl_loss
    else:
        assert not algo.use_kl_in_reward and actor.use_kl_loss == (cfg.kl_coef > 0)
    if cfg.algorithm == "dapo":
        fg = omega_conf_to_dataclass(config.algorithm.filter_groups)
        assert fg.enable == cfg.dynamic_sampling and fg.max_num_gen_batches == cfg.dynamic_sampling_rounds + 1
        assert fg.metric == "acc"  # the verifier's verdict, which the reward hook logs under that name
        assert config.reward.reward_manager.name == "dapo"
        ob = config.reward.reward_kwargs.overlong_buffer_cfg
        assert ob.enable and ob.len == cfg.overlong_buffer and ob.penalty_factor == cfg.overlong_penalty_factor
        assert config.reward.reward_kwargs.max_resp_len == cfg.max_new_tokens
        # verl's own DAPO reward manager reads them from this config, around this suite's verifier
        from transformers import AutoTokenizer

        from verl.experimental.reward_loop.reward_manager.dapo import DAPORewardManager

        manager = DAPORewardManager(config, AutoTokenizer.from_pretrained(tiny_chat_model_dir), built["reward_fn"])
        assert manager.overlong_buffer_cfg.len == cfg.overlong_buffer and manager.max_resp_len == cfg.max_new_tokens
        assert "acc" in built["reward_fn"](data_source="t", solution_str="\\boxed{2}", ground_truth="2", extra_info={})


def test_verl_refuses_dapo_overlong_filtering():
    """verl 0.9.1 has no overlong filtering of truncated responses: the setting is refused, never dropped."""
    from tbrm_verl.recipes import verl_overrides

    with pytest.raises(ConfigError, match="mask_truncated"):
        verl_overrides(load_config("verl-dapo-n4-qwen1.5b", ["mask_truncated=true"]), "x")
