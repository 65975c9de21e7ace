"""The eight paper recipes as verl launches: built with verl's own config classes, hyperparameters equal to the
recipe's, and the files `tbrm verl` writes beside a run (config, data) are what verl reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tbrm.config import ConfigError, RECIPES_DIR, load_config

PAPER_RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("paper-*.yaml"))


def test_there_are_eight_paper_recipes():
    assert len(PAPER_RECIPES) == 8
    assert {load_config(r).algorithm for r in PAPER_RECIPES} == {"tbrm", "grpo", "ppo"}


@pytest.mark.parametrize("recipe", PAPER_RECIPES)
def test_recipe_builds_with_verls_config_classes_and_keeps_its_hyperparameters(recipe, tiny_chat_model_dir):
    from verl.trainer.ppo.utils import need_critic
    from verl.workers.config import FSDPActorConfig, FSDPCriticConfig, RolloutConfig

    from tbrm_verl.recipes import compose, check, verl_overrides

    cfg = load_config(recipe)
    config = compose(verl_overrides(cfg, recipe))
    built = check(config, stand_in_model=tiny_chat_model_dir)
    actor, rollout, algo = built["actor"], built["rollout"], built["algorithm"]
    assert isinstance(actor, FSDPActorConfig) and isinstance(rollout, RolloutConfig)

    # what every method shares
    assert config.actor_rollout_ref.model.path == cfg.model
    assert config.data.train_batch_size == cfg.prompts_per_step == actor.ppo_mini_batch_size
    assert config.data.max_response_length == cfg.max_new_tokens == rollout.response_length
    assert rollout.n == cfg.rollouts_per_prompt
    assert rollout.temperature == cfg.temperature and rollout.top_p == cfg.top_p
    assert rollout.name == "vllm"
    assert config.trainer.total_training_steps == cfg.steps
    assert actor.optim.lr == cfg.lr and actor.optim.weight_decay == cfg.weight_decay
    assert actor.optim.lr_scheduler_type == "constant" and actor.optim.lr_warmup_steps == cfg.warmup_steps
    assert actor.grad_clip == cfg.grad_clip == actor.optim.clip_grad
    assert actor.ppo_micro_batch_size_per_gpu == cfg.micro_batch_size
    assert actor.ppo_epochs == cfg.policy_epochs
    assert built["model"].enable_gradient_checkpointing == cfg.gradient_checkpointing
    assert config.trainer.test_freq == cfg.eval_every and config.trainer.save_freq == cfg.save_every
    assert config.trainer.max_actor_ckpt_to_keep == cfg.keep_checkpoints

    if cfg.algorithm == "tbrm":
        assert algo.adv_estimator == "tbrm" and actor.policy_loss.loss_mode == "tbrm"
        assert algo.use_kl_in_reward and algo.kl_penalty == "kl"
        assert algo.kl_ctrl.type == "fixed" and algo.kl_ctrl.kl_coef == cfg.beta
        assert not actor.use_kl_loss and actor.entropy_coeff == 0
        assert not need_critic(config)
    elif cfg.algorithm == "grpo":
        assert algo.adv_estimator == "grpo" and actor.policy_loss.loss_mode == "vanilla"
        assert algo.norm_adv_by_std_in_grpo == cfg.scale_adv_by_std and not algo.use_kl_in_reward
        assert actor.clip_ratio_low == actor.clip_ratio_high == cfg.clip_eps
        assert actor.use_kl_loss and actor.kl_loss_coef == cfg.kl_coef and actor.kl_loss_type == "low_var_kl"
        assert actor.loss_agg_mode == cfg.loss_agg and actor.entropy_coeff == 0
        assert not need_critic(config)
    else:
        critic = built["critic"]
        assert isinstance(critic, FSDPCriticConfig) and need_critic(config)
        assert algo.adv_estimator == "gae" and (algo.gamma, algo.lam) == (cfg.gae_gamma, cfg.gae_lambda)
        assert actor.clip_ratio_low == actor.clip_ratio_high == cfg.clip_eps
        assert actor.use_kl_loss and actor.kl_loss_coef == cfg.kl_coef and actor.kl_loss_type == "low_var_kl"
        assert actor.entropy_coeff == cfg.entropy_coef
        assert critic.optim.lr == cfg.critic_lr and critic.cliprange_value == cfg.value_clip
        assert config.critic.model.path == cfg.model

    # one reward for all three: verl's own loader resolves the hook to this suite's verifier
    reward = built["reward_fn"]
    right = reward(data_source="t", solution_str="so \\boxed{\\frac{1}{2}}", ground_truth="0.5", extra_info={})
    wrong = reward(data_source="t", solution_str="so \\boxed{3}", ground_truth="0.5", extra_info={})
    assert (right["score"], wrong["score"]) == (cfg.reward_correct, cfg.reward_wrong)


def test_tbrm_recipe_with_another_temperature_is_refused():
    from tbrm_verl.recipes import verl_overrides

    with pytest.raises(ConfigError, match="temperature=0.7"):
        verl_overrides(load_config("paper-tbrm-n1-qwen1.5b", ["temperature=0.7"]), "x")
    with pytest.raises(ConfigError, match="data=arithmetic"):
        verl_overrides(load_config("cpu-tbrm-n1"), "cpu-tbrm-n1")


@pytest.mark.parametrize("extra, message", [
    (["actor_rollout_ref.model.use_fused_kernels=true"], "use_fused_kernels"),
    (["actor_rollout_ref.actor.ulysses_sequence_parallel_size=2"], "ulysses_sequence_parallel_size=2"),
    (["actor_rollout_ref.rollout.temperature=0.6"], "temperature 0.6"),
    (["algorithm.kl_ctrl.type=adaptive"], "kl_ctrl.type must be 'fixed'"),
    (["algorithm.kl_penalty=low_var_kl"], "kl_penalty must be 'kl'"),
    (["actor_rollout_ref.actor.use_kl_loss=true"], "use_kl_loss"),
])
def test_check_refuses_settings_tbrm_cannot_honour(extra, message, tiny_chat_model_dir):
    from tbrm_verl.plugin import TBRMSettingError
    from tbrm_verl.recipes import compose, check, verl_overrides

    config = compose(verl_overrides(load_config("paper-tbrm-n1-qwen1.5b"), "x") + extra)
    with pytest.raises(TBRMSettingError, match=message):
        check(config, stand_in_model=tiny_chat_model_dir)


def _no_machine_paths(folder: Path) -> None:
    home = str(Path.home())
    for f in folder.iterdir():
        if f.suffix in (".yaml", ".json", ".sh"):
            text = f.read_text()
            for bad in (str(folder.resolve()), home, "~/", "/tmp/", "/work/"):
                assert bad not in text, f"{f.name} contains {bad!r}"


def test_tbrm_verl_writes_a_runnable_config_and_data_verl_reads(tmp_path, tiny_chat_model_dir):
    """`tbrm verl RECIPE` end to end (no GPU: no --launch). The written config reloads and passes verl's checks;
    verl's own RLHFDataset reads the parquet and renders exactly the prompt `tbrm eval` renders."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from verl.utils.dataset.rl_dataset import RLHFDataset

    from evals.prompts import render_prompt
    from tests_verl.conftest import run_cli
    from tbrm_verl.recipes import check

    train = tmp_path / "train.jsonl"
    problems = [("What is $1+1$?", "2"), ("Compute $\\frac{6}{4}$.", "\\frac{3}{2}"), ("What is 7*6?", "42")]
    train.write_text("".join(json.dumps({"question": q, "final": a}) + "\n" for q, a in problems))
    bench = tmp_path / "bench" / "math500"
    bench.mkdir(parents=True)
    (bench / "test.jsonl").write_text("".join(
        json.dumps({"problem": q, "answer": a, "unique_id": f"u{i}"}) + "\n" for i, (q, a) in enumerate(problems)))
    run = tmp_path / "run"
    run_cli("verl", "paper-tbrm-n1-qwen1.5b", "data=file", f"data_path={train}", "problem_field=question",
            "answer_field=final", "eval_problems=2", "prompts_per_step=2", "--out", str(run), "--gpus", "1",
            "--data-dir", str(tmp_path / "bench"), "--stand-in-model", tiny_chat_model_dir)

    assert {p.name for p in run.iterdir()} >= {"verl_config.yaml", "recipe.yaml", "verl_run.json", "launch.sh",
                                               "data"}
    _no_machine_paths(run)
    config = OmegaConf.load(run / "verl_config.yaml")
    built = check(config, stand_in_model=tiny_chat_model_dir)  # the file itself passes verl's checks
    assert built["algorithm"].kl_ctrl.kl_coef == 0.002 and config.data.train_batch_size == 2
    assert config.data.train_files == "data/train.parquet"
    # what launch.sh hands to verl's Hydra entry point: this folder's config plus the absolute data/checkpoint paths
    launch = (run / "launch.sh").read_text()
    assert "verl.trainer.main_ppo --config-path=\"$PWD\" --config-name=verl_config" in launch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(run), version_base=None):
        launched = compose(config_name="verl_config", overrides=[
            f"data.train_files={run}/data/train.parquet", f"data.val_files={run}/data/val.parquet",
            f"trainer.default_local_dir={run}/checkpoints"])
    assert OmegaConf.to_container(launched.actor_rollout_ref) == OmegaConf.to_container(config.actor_rollout_ref)
    assert OmegaConf.to_container(launched.algorithm) == OmegaConf.to_container(config.algorithm)
    check(launched, stand_in_model=tiny_chat_model_dir)
    summary = json.loads((run / "verl_run.json").read_text())
    assert summary["data"]["train"]["problems"] == 3 and summary["data"]["val"]["problems"] == 2

    tok = AutoTokenizer.from_pretrained(tiny_chat_model_dir)
    data_cfg = OmegaConf.merge(config.data, {"dataloader_num_workers": 0})
    ds = RLHFDataset(str(run / "data" / "train.parquet"), tok, data_cfg)
    assert len(ds) == 3
    for i, (q, a) in enumerate(problems):
        item = ds[i]
        rendered = tok.apply_chat_template(list(item["raw_prompt"]), tokenize=False, add_generation_prompt=True)
        assert rendered == render_prompt(q, "qwen-math", tok)
        assert item["reward_model"]["ground_truth"] == a
    val = RLHFDataset(str(run / "data" / "val.parquet"), tok, data_cfg)
    assert [val[i]["extra_info"]["split"] for i in range(len(val))] == ["test", "test"]


def test_tbrm_verl_reports_bad_input_clearly(tmp_path, capsys):
    from tbrm_verl.cli import main

    assert main(["paper-tbrm-n1-qwen1.5b", "temperature=0.5", "--out", str(tmp_path / "r")]) == 2
    assert "temperature=0.5" in capsys.readouterr().err
    assert main(["no-such-recipe", "--out", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_reproduce_paper_writes_verl_commands_for_every_recipe(tmp_path):
    """`tbrm reproduce --preset paper` writes commands_verl.sh: each paper recipe launched with `tbrm verl`
    (arguments valid for its parser), exported at its final step and evaluated from that folder."""
    import shlex

    from tests_verl.conftest import run_cli
    from tbrm_verl.cli import _export_parser, _recipe_parser

    run_cli("reproduce", "--preset", "paper", "--out", str(tmp_path))
    script = (tmp_path / "commands_verl.sh").read_text()
    assert str(tmp_path) not in script and 'cd "$(dirname "$0")"' in script
    lines = [shlex.split(x) for x in script.splitlines() if x.startswith("tbrm ")]
    launched = {}
    for i, argv in enumerate(lines):
        if argv[1] == "verl" and argv[2] != "export":
            a = _recipe_parser().parse_args(argv[2:])
            steps = load_config(a.recipe).steps
            assert a.launch and a.gpus == 4
            export, evaluate = _export_parser().parse_args(lines[i + 1][3:]), lines[i + 2]
            assert (export.run, export.step) == (a.out, steps)
            assert evaluate[:2] == ["tbrm", "eval"] and evaluate[evaluate.index("--model") + 1] == \
                f"{a.out}/checkpoint-{steps}"
            launched[a.recipe] = a.out
    assert sorted(launched) == PAPER_RECIPES
    assert lines[-1][:2] == ["tbrm", "report"]
