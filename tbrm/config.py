"""Training configuration: one documented dataclass, YAML recipes beside it, `key=value` overrides.

Every field's comment says what it trades off and where the paper's value comes from (TBRM: Yuan et al.,
"Trajectory Bellman Residual Minimization: A Simple Value-Based Method for LLM Reasoning", arXiv 2505.15311).
`load_config` merges recipe + overrides through OmegaConf's structured config (an unknown field is an error)
and `validate` rejects inconsistent settings before any model is loaded.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

RECIPES_DIR = Path(__file__).parent / "recipes"
# The policy-gradient losses' reductions (baselines.grpo_loss): every token weighs the same (verl's and DAPO's
# token-mean), Dr. GRPO's per-sequence token sums divided by the constant max_new_tokens, or every sequence the same
# with its tokens averaged (GSPO's seq-mean-token-mean)
LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum-norm", "seq-mean-token-mean")


class ConfigError(ValueError):
    """A bad configuration; raised at start-up, before any model is loaded."""


# Every TrainConfig field is declared with one of these two, so each says whether a run may resume with another
# value (tests/test_config_metadata.py refuses an unclassified field). What may change is what changes speed,
# memory, logging or how long the run goes on, never what a step computes: `RESUMABLE_CHANGES` (the trainer's
# resume check) and `reports.seed_tables.NOT_METHOD` (which settings make two runs different methods) are both
# read off this metadata.
def fixed(default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A setting that shapes what each step computes: a resumed run must keep it."""
    return field(default=default, default_factory=default_factory, metadata={"resumable": False})


def resumable(default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A setting a run may resume with another value of: speed, memory, logging, length or evaluation only."""
    return field(default=default, default_factory=default_factory, metadata={"resumable": True})


@dataclass
class TrainConfig:
    # --- what to train -------------------------------------------------------------------------------------
    algorithm: str = fixed("tbrm")  # tbrm | grpo | ppo: all share the loop in tbrm/trainer.py, so comparisons are fair
    model: str = fixed("smollm2-135m-instruct")  # hub id, local HF dir, or bundled short name
    ref_model: Optional[str] = fixed(None)  # frozen reference pi_ref; None = the initial policy (paper); "none" = no
    # reference at all (GRPO/PPO with kl_coef=0 only: saves a model copy and a forward pass)
    template: str = fixed("qwen-math")  # prompt template (evals/prompts.py); recorded with every checkpoint's evals

    # --- data --------------------------------------------------------------------------------------------------
    # "arithmetic" = the built-in generator (CPU-scale experiments); "file" = JSONL/Parquet with problem/answer
    # fields (MATH train: ../shared/data/math_train/train.jsonl); "hub" = an HF dataset (DAPO-Math-17k in the paper)
    data: str = fixed("arithmetic")
    data_path: Optional[str] = fixed(None)  # file path or hub id for data=file|hub
    data_config: Optional[str] = fixed(None)  # hub dataset config name (data=hub)
    problem_field: str = fixed("problem")
    answer_field: str = fixed("answer")
    arith_digits: list[int] = fixed(default_factory=lambda: [1])  # operand sizes mixed uniformly
    arith_ops: list[str] = fixed(default_factory=lambda: ["+"])
    heldout_size: int = fixed(100)  # fixed held-out arithmetic problems, never seen in training
    # Off-policy TBRM: train from a fixed file of (prompt, response, reward) trajectories written by any model.
    # The paper proves convergence from arbitrary off-policy data (Sec. 4) but trains on-policy only.
    offline_trajectories: Optional[str] = fixed(None)

    # --- rollouts ----------------------------------------------------------------------------------------------
    prompts_per_step: int = fixed(8)  # paper: 128. More prompts = lower-variance gradient, linearly more time per step
    rollouts_per_prompt: int = fixed(1)  # n. TBRM works with n=1 (paper: n=1 and n=4); GRPO needs n>=2 for a baseline
    max_new_tokens: int = fixed(64)  # paper: 2048. Truncated responses get the reward of whatever answer they hold
    temperature: float = fixed(1.0)  # paper: 1.0. Lower = denser reward for a weak model, but less exploration.
    # GRPO/PPO also compute their log-probs from logits / temperature (verl, TRL); TBRM from raw logits.
    top_p: float = fixed(1.0)

    # --- optimisation --------------------------------------------------------------------------------------------
    steps: int = resumable(20)  # paper: 760 steps
    lr: float = fixed(2.5e-6)  # paper: 2.5e-6 (TBRM, GRPO); 2e-6 for TBRM n=1 on 7B; PPO actor 1e-6
    weight_decay: float = fixed(0.0)
    warmup_steps: int = fixed(0)  # linear warm-up, then constant (verl's default schedule)
    grad_clip: float = fixed(1.0)  # TBRM residuals start near r/beta = 500: clipping keeps the first steps sane
    micro_batch_size: int = fixed(4)  # sequences per forward/backward; gradients accumulate to the full batch
    gradient_checkpointing: bool = fixed(False)  # ~halves activation memory at little time cost on CPU
    dtype: str = fixed("float32")  # master weights; keep fp32: bf16 weights lose lr~1e-6 updates to rounding
    # none | bf16 | auto: forward in bf16 autocast (auto: only where bf16 is native, CUDA or CPUs with AVX512-BF16 /
    # AMX; emulated bf16 is several times slower than fp32); log-probs for the loss are always fp32
    autocast: str = fixed("none")
    ref_dtype: str = fixed("float32")  # the frozen reference may be bf16 to save memory

    # --- TBRM -----------------------------------------------------------------------------------------------------
    beta: float = fixed(0.002)  # paper: 0.002. KL-regularisation strength; the target Q at the end is r/beta
    # ReVal's fix (arXiv 2603.23355, Prop. 1): subtract V_ref(s_1) inside the residual, so that with zero reward
    # the reference policy is a fixed point (plain TBRM's residual there is V_ref(s_1) != 0 and moves the policy).
    # Costs nothing extra (the reference forward already computes V_ref). False = the TBRM paper's objective.
    subtract_ref_value: bool = fixed(False)
    # ReVal's other changes to TBRM (arXiv 2603.23355; its TBRM re-run, Table 1, is below GRPO and the paper
    # attributes part of that to what these fix). Each is off by default, i.e. the TBRM paper's objective. The
    # definitions below follow issue 26's account of the paper; the section each comes from is not cited because
    # the paper's text was not at hand when they were written (a reviewer with it should add the section numbers,
    # and check the exact form of the length-scaled beta, which is this suite's reading).
    # center_rewards: r_i - mean of its prompt's group inside the residual (n >= 2), so a wrong answer in a group
    # that has right ones gets a negative target and pushes its own probability down, instead of only being pulled
    # toward the reference (its target with r = 0 is the reference itself).
    center_rewards: bool = fixed(False)
    # ref_reset_every: K > 0 makes the reference the current policy every K steps (at the start of steps K+1,
    # 2K+1, ...): the KL anchor follows the policy, so later steps are not held back by the initial model (ReVal:
    # every 200 steps worked best). 0 = the initial policy for the whole run (the paper).
    ref_reset_every: int = fixed(0)
    # beta_length_scaled: per-trajectory beta_i = beta * |y_i| / max_new_tokens, so the target r/beta_i grows as the
    # response gets shorter and the summed log-ratio (which grows with length) and the target stay on one scale.
    beta_length_scaled: bool = fixed(False)

    # --- GRPO (Shao et al. 2024, arXiv 2402.03300) / Dr. GRPO (Liu et al. 2025, arXiv 2503.20783) -------------
    clip_eps: float = fixed(0.2)  # paper: 0.2 (GRPO and PPO ratio clip)
    kl_coef: float = fixed(0.001)  # paper: 0.001, k3 estimator to the reference (GRPO, PPO)
    scale_adv_by_std: bool = fixed(True)  # False = Dr. GRPO's unbiased advantage (no per-group std division)
    loss_agg: str = fixed("token-mean")  # token-mean | seq-mean-token-sum-norm (Dr. GRPO: sum / max_new_tokens)
    policy_epochs: int = fixed(1)  # optimiser passes over each rollout batch (GRPO/PPO); >1 makes the ratio clip bite
    # Asymmetric ratio clip [1 - clip_eps_low, 1 + clip_eps_high] of the policy-gradient methods (GRPO, RLOO,
    # REINFORCE++, DAPO, GSPO); None = clip_eps. DAPO's clip-higher (arXiv 2503.14476 Sec. 3.1): 0.2 / 0.28; GSPO's
    # sequence-ratio band (arXiv 2507.18071 Sec. 5.1): 3e-4 / 4e-4.
    clip_eps_low: Optional[float] = fixed(None)
    clip_eps_high: Optional[float] = fixed(None)

    # --- DAPO (Yu et al. 2025, arXiv 2503.14476) ---------------------------------------------------------------
    # Dynamic sampling (Sec. 3.2): drop groups whose rollouts all got the same reward (zero advantage, no gradient)
    # and sample fresh prompts to refill the batch, up to this many extra rounds per step; a batch still short
    # after them trains on the groups it has (logged: dapo/refill_rounds, dapo/refill_prompts, dapo/groups_kept).
    dynamic_sampling: bool = fixed(False)
    dynamic_sampling_rounds: int = fixed(3)
    # Overlong reward shaping (Sec. 3.4): overlong_buffer = L_cache > 0 adds a soft length penalty, 0 up to
    # max_new_tokens - L_cache, then falling linearly to -overlong_penalty_factor at max_new_tokens (0 = off).
    overlong_buffer: int = fixed(0)
    overlong_penalty_factor: float = fixed(1.0)
    # Overlong filtering (Sec. 3.4): truncated responses contribute no loss at all (their reward says nothing
    # about their answer).
    mask_truncated: bool = fixed(False)

    # --- PPO (Schulman et al. 2017; critic + GAE) ----------------------------------------------------------------
    critic_lr: float = fixed(1e-5)  # paper: 1e-5 (actor 1e-6)
    entropy_coef: float = fixed(0.001)  # paper: 0.001
    value_clip: float = fixed(0.2)
    gae_gamma: float = fixed(1.0)
    gae_lambda: float = fixed(1.0)
    # Normalise GAE advantages to zero mean / unit std over the batch's tokens (verl, TRL: always). Keeps the
    # update scale steady at paper scale (128 rollouts/step). With few rollouts and sparse outcome rewards a batch
    # often has no correct answer; its advantages are then pure critic noise (-V_t), and whitening blows that
    # noise up to a full-size update (the CPU recipe turns it off: PPO drifted ~9 nats from the reference in 20
    # steps with it on, while reward fell to 0).
    whiten_advantages: bool = fixed(True)

    # --- rewards (the same verifier as evaluation) -----------------------------------------------------------------
    reward_correct: float = fixed(1.0)
    reward_wrong: float = fixed(0.0)  # also for unparsed / timed-out answers
    # Reward answers Math-Verify cannot find with the "answer is X / last number" fallback. Off by default:
    # the last number of a text is often not its answer, and a reward must not pay for that. The CPU recipes turn
    # it on (SmolLM2-135M never boxes); such rewards are flagged (reward/lenient_fraction in the logs).
    lenient: bool = fixed(False)
    verifier_timeout: float = fixed(5.0)

    # --- evaluation, checkpoints, logging ------------------------------------------------------------------------
    evaluate: bool = resumable(True)  # False skips held-out evaluation entirely (speed benchmarks)
    eval_every: int = resumable(10)  # steps between held-out evaluations (0 = only at the start and the end)
    eval_problems: int = fixed(100)  # held-out problems per evaluation (arithmetic held-out split, or MATH500 slice)
    eval_benchmark: Optional[str] = fixed(None)  # also evaluate on this registry benchmark's first eval_problems
    eval_max_new_tokens: Optional[int] = fixed(None)  # default: max_new_tokens
    save_every: int = resumable(10)  # steps between checkpoints (HF format, resumable)
    keep_checkpoints: int = resumable(2)  # older checkpoints are deleted (the final one is always kept)
    # What the final checkpoint keeps: "full" (weights + optimizer/scheduler/RNG state, so the run can be trained
    # further) or "weights" (weights and the step only). A comparison of many seeds only evaluates its final
    # weights, and the optimizer state is twice their size (SmolLM2-135M: 0.5 GB of weights, 1 GB of Adam moments).
    final_state: str = resumable("full")
    generation_batch_size: int = resumable(64)

    # --- generation engine (evals/engines/vllm_engine.py) --------------------------------------------------------------
    # hf = transformers generate; vllm = one colocated vLLM engine kept alive for the run, weights loaded in place
    # after every optimizer step (3-7x the rollout tokens/s on CPU); auto = vllm when installed and it supports the
    # model on this device. Rollouts sample from the engine's numerics (`engine_dtype`), so the logs carry
    # rollout/logprob_diff_{mean,max}: |engine log p - trainer log p| of the sampled tokens (off-policy-ness).
    engine: str = resumable("auto")
    engine_compile: bool = resumable(False)  # vllm: torch.compile (+10-25% tokens/s, ~1 min more start-up on CPU)
    # vllm: dtype the engine samples in. auto = bfloat16 under autocast=bf16 where bf16 is native (CUDA, CPUs with
    # AVX512-BF16/AMX), else the master weights' dtype: emulated bf16 is several times slower than fp32 in vLLM.
    engine_dtype: str = fixed("auto")
    # vllm on CPU: KV-cache size (rollouts x (prompt + max_new_tokens) must fit)
    engine_kv_cache_gb: float = resumable(2.0)
    # vllm on CUDA: share of GPU memory the engine takes while awake; it sleeps (frees it) while the policy trains
    engine_gpu_memory_utilization: float = resumable(0.5)
    seed: int = fixed(0)
    device: str = resumable("auto")
    threads: Optional[int] = resumable(None)
    tensorboard: bool = resumable(True)
    wandb: bool = resumable(False)
    wandb_project: str = resumable("tbrm-bench")


RESUMABLE_CHANGES = frozenset(f.name for f in fields(TrainConfig) if f.metadata.get("resumable"))


def recipe_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    candidate = RECIPES_DIR / f"{name}.yaml"
    if candidate.exists():
        return candidate
    known = ", ".join(sorted(x.stem for x in RECIPES_DIR.glob("*.yaml")))
    raise ConfigError(f"recipe {name!r} not found: give a YAML path or one of: {known}")


def load_config(recipe: str | None = None, overrides: list[str] | None = None,
                settings: Mapping[str, Any] | None = None,
                check_algorithm: Callable[[TrainConfig], Any] | None = None) -> TrainConfig:
    """Recipe YAML (optional) + `key=value` overrides + `settings` ({field: value}, from the Python API; applied
    last) -> a validated TrainConfig. `check_algorithm` (the registry's `baselines.registry.validate`, passed by the
    layers above the algorithms) checks the settings against the algorithm first, then `validate` the rest."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    base = OmegaConf.structured(TrainConfig)
    layers = []
    try:
        if recipe:
            path = recipe_path(recipe)
            loaded = OmegaConf.load(path)
            loaded.pop("description", None)
            layers.append((str(path), loaded))
        if overrides:
            layers.append(("command line", OmegaConf.from_dotlist(list(overrides))))
        if settings:
            layers.append(("keyword arguments", OmegaConf.create(dict(settings))))
        merged = base
        for where, layer in layers:
            try:
                merged = OmegaConf.merge(merged, layer)
            except OmegaConfBaseException as e:
                raise ConfigError(f"{where}: {_omegaconf_message(e)}") from None
        cfg = OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        raise ConfigError(_omegaconf_message(e)) from None
    if check_algorithm is not None:
        check_algorithm(cfg)
    validate(cfg)
    return cfg


def _omegaconf_message(e: Exception) -> str:
    msg = str(e).splitlines()[0]
    key = getattr(e, "full_key", None)
    if "not in struct" in msg or "Key '" in msg and "not" in msg:
        names = ", ".join(f.name for f in fields(TrainConfig))
        return f"unknown config field {key!r}; known fields: {names}"
    return f"field {key!r}: {msg}" if key else msg


def validate(cfg: TrainConfig) -> None:
    """The checks every algorithm shares. What one algorithm needs (its rollouts per prompt, its reference, the
    settings only it reads) is declared with its class and checked by the registry (`baselines.registry.validate`,
    which `tbrm.api.train` runs), since the algorithms are built on this module."""
    def bad(msg):
        raise ConfigError(msg)

    if cfg.data not in ("arithmetic", "file", "hub"):
        bad(f"unknown data source {cfg.data!r}; choose arithmetic, file or hub")
    if cfg.data in ("file", "hub") and not cfg.data_path and not cfg.offline_trajectories:
        bad(f"data={cfg.data} needs data_path (a JSONL/Parquet file or an HF dataset id)")
    if cfg.data == "file" and cfg.data_path and not Path(cfg.data_path).exists():
        bad(f"data_path {cfg.data_path!r}: no such file")
    if cfg.offline_trajectories and not Path(cfg.offline_trajectories).exists():
        bad(f"offline_trajectories {cfg.offline_trajectories!r}: no such file")
    for name in ("prompts_per_step", "rollouts_per_prompt", "max_new_tokens", "steps", "micro_batch_size",
                 "policy_epochs", "generation_batch_size", "keep_checkpoints", "eval_problems"):
        if getattr(cfg, name) < 1:
            bad(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("lr", "beta", "grad_clip"):
        if getattr(cfg, name) <= 0:
            bad(f"{name} must be > 0, got {getattr(cfg, name)}")
    if cfg.temperature <= 0:
        bad("temperature must be > 0 for RL rollouts (greedy rollouts make every group identical)")
    if cfg.engine not in ("hf", "vllm", "auto"):
        bad(f"engine must be hf, vllm or auto, got {cfg.engine!r}")
    if cfg.engine_dtype not in ("auto", "float32", "bfloat16"):
        bad(f"engine_dtype must be auto, float32 or bfloat16, got {cfg.engine_dtype!r}")
    if cfg.engine_kv_cache_gb <= 0 or not 0 < cfg.engine_gpu_memory_utilization <= 1:
        bad("engine_kv_cache_gb must be > 0 and engine_gpu_memory_utilization in (0, 1]")
    if cfg.autocast not in ("none", "bf16", "auto"):
        bad(f"autocast must be none, bf16 or auto, got {cfg.autocast!r}")
    if cfg.dtype not in ("float32", "bfloat16"):
        bad(f"dtype must be float32 or bfloat16, got {cfg.dtype!r}")
    if cfg.loss_agg not in LOSS_AGG_MODES:
        bad(f"loss_agg must be one of {', '.join(LOSS_AGG_MODES)}, got {cfg.loss_agg!r}")
    if cfg.kl_coef < 0 or cfg.entropy_coef < 0:
        bad("kl_coef and entropy_coef must be >= 0")
    for name in ("clip_eps_low", "clip_eps_high"):
        if getattr(cfg, name) is not None and not 0 <= getattr(cfg, name) < 1:
            bad(f"{name} must be in [0, 1) (or null: clip_eps), got {getattr(cfg, name)}")
    if cfg.ref_reset_every < 0 or cfg.overlong_buffer < 0 or cfg.dynamic_sampling_rounds < 0:
        bad("ref_reset_every, overlong_buffer and dynamic_sampling_rounds must be >= 0")
    if cfg.overlong_buffer > cfg.max_new_tokens:
        bad(f"overlong_buffer={cfg.overlong_buffer} must be <= max_new_tokens={cfg.max_new_tokens}")
    if cfg.save_every < 0 or cfg.eval_every < 0:
        bad("save_every and eval_every must be >= 0")
    if cfg.final_state not in ("full", "weights"):
        bad(f"final_state must be full or weights, got {cfg.final_state!r}")
    if cfg.eval_benchmark is not None:
        from evals.benchmarks import BENCHMARKS

        if cfg.eval_benchmark not in BENCHMARKS:
            bad(f"eval_benchmark {cfg.eval_benchmark!r} unknown; known: {', '.join(BENCHMARKS)}")
    bad_digits = [d for d in cfg.arith_digits if not 1 <= d <= 6]
    if bad_digits or not cfg.arith_digits:
        bad(f"arith_digits must be a non-empty list of sizes in 1..6, got {cfg.arith_digits}")
    bad_ops = [o for o in cfg.arith_ops if o not in ("+", "-", "*")]
    if bad_ops or not cfg.arith_ops:
        bad(f"arith_ops must be a non-empty list of +, -, *; got {cfg.arith_ops}")


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(cfg)
