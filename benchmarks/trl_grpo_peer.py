"""TRL's `GRPOTrainer` as a speed peer for our GRPO n=4, with every setting we can match matched.

    python benchmarks/trl_grpo_peer.py --out DIR [--no-progress] key=value ...

The `key=value` overrides are the ones `tbrm train` takes (tbrm/config.py), so `benchmarks/train_speed.py`
passes this script exactly what it passes our GRPO run; from the resulting `TrainConfig` we build TRL's
`GRPOConfig`:

- model: the same local HF directory (`resolve_model(cfg.model)`; for SmolLM2 the cached safetensors dir),
  fp32 master weights (`cfg.dtype`), and our tokenizer object (left padding, pad = EOS), loaded offline;
- prompts: the same problems our loop draws (`prompt_source(cfg).batch(step)` for step 1..steps, in order,
  no shuffling), rendered to the same text by `evals.prompts.render_prompt` (passed to TRL as plain strings,
  which TRL tokenizes to the same ids as our generator: checked below and recorded);
- rewards: OUR verifier (`evals.grading.verifier.Verifier`, lenient fallback as `cfg.lenient`) with
  `cfg.reward_correct` / `cfg.reward_wrong`, so rewards are identical in definition;
- group size, completion length, temperature (top_p, top_k=0), lr (constant, no warm-up), AdamW (non-fused,
  weight decay), grad clip, KL coefficient (k3 estimator in both), clip epsilon, one update per batch,
  micro-batch size with gradient accumulation to the full batch, bf16 autocast over fp32 weights, seed.

Measured: seconds per optimizer step (a TrainerCallback, on_step_begin -> on_step_end), split into
generation (generate + reward), reference (the rest of TRL's batch scoring: tokenisation, reference
log-probs, advantages) and training (forward/backward/optimizer), tokens generated, peak RSS
(`resource.getrusage`, the same figure as our loop's `memory/peak_gb` on CPU), model-loading time and the
whole `trainer.train()` time. Written atomically to DIR/trl_grpo_peer.json after every step. No checkpoints,
no hub access, no reporting integrations.

Heavy modules (torch, transformers, trl) are imported inside functions: the verifier's worker processes
re-import this script as their `__main__` (see evals/grading/verifier.py).
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: no hub access, no telemetry.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

RESULT_NAME = "trl_grpo_peer.json"


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux), as tbrm/trainer.py reports it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class PhaseClock:
    """Seconds and tokens accumulated inside the current optimizer step, by phase."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.rollout = 0.0  # TRL's _generate_and_score_completions: generate + reward + ref log-probs + advantages
        self.generate = 0.0  # model.generate alone
        self.reward = 0.0  # our verifier
        self.tokens = 0  # completion tokens (EOS included, as our loop counts them)
        self.rollouts = 0
        self.rewards: list[float] = []
        self.prompts: list[str] = []  # unique prompts in generation order (TRL repeats each num_generations times)


def build_grpo_config(cfg, out_dir: Path, progress: bool):
    """TRL 1.16 GRPOConfig mirroring our GRPO settings. Returns (GRPOConfig, notes on what is not matched)."""
    from trl import GRPOConfig

    from evals.models import resolve_device

    n = cfg.rollouts_per_prompt
    batch = cfg.prompts_per_step * n  # rollouts per optimizer step
    if batch % cfg.micro_batch_size:
        raise SystemExit(f"prompts_per_step * rollouts_per_prompt = {batch} must be a multiple of micro_batch_size "
                         f"({cfg.micro_batch_size}) for TRL's gradient accumulation to cover exactly one batch")
    accum = batch // cfg.micro_batch_size
    notes = []
    # Loss aggregation. Our GRPO's default is "token-mean": every response token in the whole batch of
    # prompts*n rollouts weighs the same (micro-batches are weighted by their token counts, tbrm/algorithm.py).
    # TRL's "dapo" is exactly that: the token sum of each micro-batch divided by the number of response tokens in
    # the whole generation batch, accumulated over the micro-batches of one step. "bnpo" divides by each
    # micro-batch's own token count (a mean of micro-batch means, which differs whenever micro-batches hold
    # different numbers of tokens) and "grpo" averages per-sequence token means (the length-biased original, which
    # our loop does not offer). Dr. GRPO's constant normaliser maps onto TRL's "dr_grpo".
    loss_type = {"token-mean": "dapo", "seq-mean-token-sum-norm": "dr_grpo"}[cfg.loss_agg]
    if cfg.generation_batch_size < batch:
        notes.append(f"our loop samples in chunks of generation_batch_size={cfg.generation_batch_size} rollouts; "
                     f"TRL samples all {batch} of a step in one generate call")
    if cfg.warmup_steps:
        notes.append(f"warmup_steps={cfg.warmup_steps}: our schedule is linear warm-up then constant; TRL's "
                     "'constant_with_warmup' is the same shape")
    args = GRPOConfig(
        output_dir=str(out_dir / "trl_output"),  # nothing is saved there (save_strategy="no")
        use_cpu=resolve_device(cfg.device).type == "cpu",  # the device our loop would use (here: the CPU)
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        disable_tqdm=not progress,
        seed=cfg.seed,
        data_seed=cfg.seed,
        # --- model / numerics
        model_init_kwargs={"dtype": cfg.dtype},  # master weights (fp32 by default), as our load_model
        bf16=cfg.autocast == "bf16",  # accelerate's bf16 autocast around the fp32 model, like our autocast=bf16
        fp16=False,
        gradient_checkpointing=cfg.gradient_checkpointing,  # TRL's default is True; ours False
        disable_dropout=False,  # our loop trains with the model's own dropout settings (SmolLM2: none)
        # --- batch geometry: one optimizer step per prompts_per_step prompts x n rollouts
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=accum,
        steps_per_generation=accum,  # one generation batch (= prompts*n rollouts) per optimizer step
        num_generations=n,
        num_iterations=cfg.policy_epochs,  # 1 = one update per batch, so pi_old = pi_theta (ratio 1), as ours
        max_steps=cfg.steps,
        shuffle_dataset=False,  # step k sees exactly our step-k prompts
        remove_unused_columns=False,  # the reward function needs the "answer" column
        dataloader_num_workers=0,
        # --- sampling
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=0,  # pure temperature sampling, as evals/engines/base.py
        repetition_penalty=1.0,
        # --- optimisation
        learning_rate=cfg.lr,
        lr_scheduler_type="constant_with_warmup" if cfg.warmup_steps else "constant",
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        optim="adamw_torch",  # torch.optim.AdamW, non-fused, like our loop (TRL's default is the fused one)
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,  # torch.optim.AdamW defaults, which our loop uses
        max_grad_norm=cfg.grad_clip,
        # --- GRPO objective
        beta=cfg.kl_coef,  # k3 KL to the frozen initial policy; 0 = no reference model, as ref_model=none
        epsilon=cfg.clip_eps,
        epsilon_high=cfg.clip_eps,  # symmetric clip, as ours
        loss_type=loss_type,
        scale_rewards="group" if cfg.scale_adv_by_std else "none",  # per-group std division (GRPO) or not (Dr. GRPO)
        mask_truncated_completions=False,  # ours trains on truncated responses too
        log_completions=False,
    )
    notes += [
        "log-probs: TRL divides the logits by the sampling temperature before log-softmax; our loop uses the raw "
        "logits (affects loss/KL values, not the amount of compute)",
        "LM head: our loop applies it in fp32 to the response slice; TRL runs it under bf16 autocast "
        "(cast_lm_head_to_fp32 needs untied embeddings; SmolLM2 ties them)",
        "advantages: TRL divides by (std + 1e-4), ours by (std + 1e-6); both use the unbiased group std",
        "TRL also computes per-token entropies in every policy forward (for logging)",
        "sampling: same distribution and settings but a different random stream, so response lengths differ "
        "run to run (compare response/length_mean)",
        "our loop writes a final checkpoint after the last step (outside the per-step timing); TRL saves nothing",
    ]
    return args, notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder; writes OUT/trl_grpo_peer.json")
    p.add_argument("--recipe", help="optional recipe, as for `tbrm train`")
    p.add_argument("--no-progress", action="store_true", help="no TRL progress bar (a line per step is printed)")
    p.add_argument("overrides", nargs="*", help="key=value TrainConfig overrides, exactly as for `tbrm train`")
    a = p.parse_args(argv)

    from tbrm.config import load_config, to_dict
    from evals.io import atomic_write_json

    cfg = load_config(a.recipe, a.overrides)  # validated before anything heavy is loaded
    if cfg.algorithm != "grpo":
        raise SystemExit(f"the TRL peer mirrors our GRPO: pass algorithm=grpo (got {cfg.algorithm!r})")
    if cfg.ref_model not in (None, "none", ""):
        raise SystemExit("ref_model: TRL's reference is always the initial policy (or none with kl_coef=0)")
    if cfg.offline_trajectories:
        raise SystemExit("offline_trajectories: TRL's GRPOTrainer samples on-policy only")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result_path = out / RESULT_NAME
    t_wall = time.perf_counter()

    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from evals.prompts import render_prompt
    from evals.grading.verifier import Verifier
    from tbrm.data import prompt_source
    from evals.models import load_tokenizer, resolve_model, set_threads

    set_threads(cfg.threads)
    model_path = resolve_model(cfg.model)
    tok = load_tokenizer(model_path)

    # The exact prompts of our run: step k's problems, rendered with our template, in order.
    source = prompt_source(cfg)
    per_step = [source.batch(step) for step in range(1, cfg.steps + 1)]
    rows = [{"prompt": render_prompt(pr.problem, cfg.template, tok), "answer": pr.answer, "step": step}
            for step, problems in enumerate(per_step, start=1) for pr in problems]
    expected_prompts = {step: [r["prompt"] for r in rows if r["step"] == step] for step in range(1, cfg.steps + 1)}
    # TRL tokenizes plain-string prompts with `tokenizer(text=prompts)`; our generator with
    # `tokenizer(prompt, add_special_tokens=not prompt.startswith(bos))` (evals/engines/base.py HFGenerator.encode).
    ours = [tok(r["prompt"], add_special_tokens=not (tok.bos_token and r["prompt"].startswith(tok.bos_token))).input_ids
            for r in rows]
    theirs = tok(text=[r["prompt"] for r in rows])["input_ids"]
    token_ids_identical = ours == theirs
    if not token_ids_identical:
        print("warning: TRL would tokenize the prompts differently from our generator", file=sys.stderr)

    args, notes = build_grpo_config(cfg, out, progress=not a.no_progress)
    clock = PhaseClock()
    verifier = Verifier(timeout_s=cfg.verifier_timeout, lenient=cfg.lenient)

    def verifier_reward(prompts, completions, answer, **_):
        """Our shared verifier, as our training loop rewards rollouts (tbrm/trainer.py Trainer.rollouts)."""
        t0 = time.perf_counter()
        verdicts = verifier.verify_batch(list(zip(completions, answer)))
        clock.reward += time.perf_counter() - t0
        rewards = [cfg.reward_correct if v.correct else cfg.reward_wrong for v in verdicts]
        clock.rewards += rewards
        clock.prompts += prompts[:: cfg.rollouts_per_prompt]  # TRL repeats each prompt n times in a row
        return rewards

    class TimedGRPOTrainer(GRPOTrainer):
        """GRPOTrainer unchanged, with clocks around its rollout phase and its generate call."""

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            try:
                return super()._generate_and_score_completions(inputs)
            finally:
                clock.rollout += time.perf_counter() - t0

        def _generate_single_turn(self, *args, **kwargs):
            t0 = time.perf_counter()
            completion_ids, logprobs = super()._generate_single_turn(*args, **kwargs)
            clock.generate += time.perf_counter() - t0
            clock.tokens += sum(len(c) for c in completion_ids)
            clock.rollouts += len(completion_ids)
            return completion_ids, logprobs

    for name in ("_generate_and_score_completions", "_generate_single_turn"):
        if not hasattr(GRPOTrainer, name):
            raise SystemExit(f"trl {trl.__version__}: GRPOTrainer.{name} is gone; the phase clocks were written "
                             f"for trl 1.16")

    state = {
        "kind": "trl-grpo-peer", "status": "loading", "command": ["python", *sys.argv[1:]],
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "model_path": Path(model_path).name, "train_config": to_dict(cfg),
        "grpo_config": {k: getattr(args, k) for k in (
            "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation",
            "generation_batch_size", "num_generations", "num_iterations", "max_steps", "max_completion_length",
            "temperature", "top_p", "top_k", "learning_rate", "lr_scheduler_type", "weight_decay", "optim",
            "max_grad_norm", "beta", "epsilon", "epsilon_high", "loss_type", "scale_rewards", "bf16",
            "gradient_checkpointing", "use_cpu", "shuffle_dataset", "seed")},
        "not_matched": notes,
        "checks": {"prompt_token_ids_identical": token_ids_identical},
        "steps": [],
    }
    state["grpo_config"]["optim"] = getattr(args.optim, "value", str(args.optim))
    atomic_write_json(result_path, state)

    class StepTimer(TrainerCallback):
        """Seconds from on_step_begin to on_step_end (= one optimizer step: rollouts of the step's prompts,
        rewards, reference log-probs, all micro-batch forward/backward passes, clip, AdamW)."""

        def __init__(self):
            self.t0 = None

        def on_step_begin(self, args_, st, control, **kw):
            clock.reset()
            self.t0 = time.perf_counter()

        def on_step_end(self, args_, st, control, **kw):
            dt = time.perf_counter() - self.t0
            step = st.global_step
            gen = clock.generate + clock.reward
            row = {
                "step": step, "time/step": dt,
                "time/generation": gen,  # generate + reward, as our time/generation (rollouts + verifier)
                "time/reference": clock.rollout - gen,  # the rest of TRL's scoring: mostly ref log-probs
                "time/training": dt - clock.rollout,
                "time/generate_only": clock.generate, "time/reward": clock.reward,
                "rollout/tokens": clock.tokens,
                "rollout/tokens_per_second": clock.tokens / clock.generate if clock.generate else None,
                "response/length_mean": clock.tokens / clock.rollouts if clock.rollouts else None,
                "reward/mean": sum(clock.rewards) / len(clock.rewards) if clock.rewards else None,
                "rollouts": clock.rollouts * step if clock.rollouts else None,  # cumulative, as our metrics.jsonl
                "rollouts_this_step": clock.rollouts,
                "memory/peak_gb": peak_rss_gb(),
                "prompts_match": clock.prompts == expected_prompts.get(step),
            }
            state["steps"].append(row)
            state["status"] = "running"
            atomic_write_json(result_path, state)
            print(f"[trl-grpo] step {step}/{cfg.steps}: {dt:.2f} s (generation {gen:.2f}, reference "
                  f"{row['time/reference']:.2f}, training {row['time/training']:.2f}), {clock.tokens} tokens, "
                  f"peak {row['memory/peak_gb']:.2f} GB, reward {row['reward/mean']}", flush=True)

        def on_log(self, args_, st, control, logs=None, **kw):
            # Called right after on_step_end (logging_steps=1) with TRL's own metrics of that step, and once more
            # at the end with the train() summary.
            numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
            if "train_runtime" in numbers:
                state["trl_train_summary"] = numbers
            elif state["steps"] and numbers:
                state["steps"][-1]["trl_logs"] = numbers

    timer = StepTimer()
    try:
        t_load = time.perf_counter()
        trainer = TimedGRPOTrainer(
            model=model_path, reward_funcs=verifier_reward, args=args, processing_class=tok,
            train_dataset=Dataset.from_list(rows), callbacks=[timer])
        state["load_seconds"] = time.perf_counter() - t_load
        if a.no_progress:  # without a progress bar, Trainer prints every log dict; our line per step is enough
            trainer.remove_callback(PrinterCallback)
        acc = trainer.accelerator
        state["checks"].update({
            "mixed_precision": str(acc.mixed_precision), "native_amp": bool(acc.native_amp),
            "device": str(acc.device), "policy_dtype": str(trainer.model.dtype),
            "reference_model": trainer.ref_model is not None, "torch_threads": torch.get_num_threads(),
        })
        state["status"] = "training"
        atomic_write_json(result_path, state)
        t_train = time.perf_counter()
        trainer.train()
        state["train_seconds"] = time.perf_counter() - t_train
        state["status"] = "done"
    except BaseException as e:
        state["status"] = "failed"
        state["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        verifier.close()
        state["peak_rss_gb"] = peak_rss_gb()
        state["wall_seconds"] = time.perf_counter() - t_wall
        state["checks"]["all_prompts_match"] = bool(state["steps"]) and all(r["prompts_match"] for r in state["steps"])
        atomic_write_json(result_path, state)
    steps = state["steps"]
    later = steps[1:] or steps
    print(f"[trl-grpo] done: {len(steps)} steps, mean {sum(r['time/step'] for r in later) / len(later):.2f} s/step"
          f"{' (after the first)' if len(steps) > 1 else ''}, peak {state['peak_rss_gb']:.2f} GB; {result_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
