"""The RL loop every algorithm shares (`tbrm train`).

Each step: draw the step's prompts -> sample n rollouts per prompt with the current policy -> reward each with
the shared verifier (the one evaluation uses) -> reference log-probs (frozen model, no grad) -> the algorithm's
`prepare` (advantages, values, ...) -> micro-batched forward/backward of its loss -> clip -> AdamW step.

Crash safety: metrics go to RUN_DIR/metrics.jsonl (one appended line per step) and TensorBoard; checkpoints
(`checkpoint-N/`: a model folder in HF format that every engine loads, with the optimizer/scheduler/RNG/critic state
in safetensors and JSON in its `trainer_state/` subfolder, tbrm/state.py) are written to a temp folder and renamed.
Rerunning with the same RUN_DIR resumes from the last checkpoint; the prompts and sampling seeds are functions
of the step, and metrics lines after that checkpoint are dropped, so the resumed run retraces the same steps.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tbrm.algorithm import Algorithm, adamw
from tbrm.config import RESUMABLE_CHANGES, ConfigError, TrainConfig, to_dict
from tbrm.state import LEGACY_STATE, capture_rng, has_trainer_state, load_trainer_state, restore_rng, save_trainer_state
from evals.io import append_jsonl, atomic_write_json, atomic_write_jsonl, atomic_write_text, read_json, read_jsonl



def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints in `run_dir`, oldest first. One whose trainer state is a pickle
    (trainer_state.pt, as earlier versions wrote) is refused rather than skipped: unpickling a file from someone
    else can run code, and skipping it would silently restart the run."""
    out = []
    for p in run_dir.glob("checkpoint-*"):
        if not (p.is_dir() and p.name.split("-")[-1].isdigit()):
            continue
        if has_trainer_state(p):
            out.append((int(p.name.split("-")[-1]), p))
        elif (p / LEGACY_STATE).exists():
            raise ConfigError(f"{p / LEGACY_STATE}: trainer state stored as a pickle, which is never loaded (it can "
                              f"run code); resume only from checkpoints this version wrote, or use a new run directory")
    return sorted(out)


def config_changes(old: dict, cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Settings of `cfg` that differ from a run's saved train_config.json and may not change on resume. A field
    the saved config lacks (added to TrainConfig after that run) counts as its default, which the run used."""
    defaults = to_dict(TrainConfig())
    return {k: (old.get(k, defaults[k]), v) for k, v in to_dict(cfg).items()
            if k not in RESUMABLE_CHANGES and old.get(k, defaults[k]) != v}


def check_run_config(run_dir: Path, cfg: TrainConfig, hint: str = "use a new run directory") -> None:
    """Refuse to resume a run in `run_dir` whose saved settings differ from `cfg` beyond RESUMABLE_CHANGES."""
    path = run_dir / "train_config.json"
    if not path.exists():
        return
    diff = config_changes(read_json(path), cfg)
    if diff:
        details = "; ".join(f"{k}: on disk {a!r}, now {b!r}" for k, (a, b) in list(diff.items())[:6])
        raise ConfigError(f"{path} belongs to a run with other settings ({details}); {hint}")


def check_resumed_sampler(run_dir: Path, cfg: TrainConfig, engine: str) -> None:
    """Refuse to resume a run with a sampler that would draw other rollouts than the uninterrupted run: another
    engine, or, with the hf engine, another generation_batch_size (it seeds each batch, where vLLM seeds each
    sequence). `engine` is what cfg.engine resolves to here; runs that predate the record used hf."""
    path = run_dir / "train_config.json"
    if not path.exists():
        return
    saved = read_json(path)
    old_engine = (saved.get("engine_used") or {}).get("name", "hf")
    old_size = saved.get("generation_batch_size", cfg.generation_batch_size)
    why = None
    if engine != old_engine:
        why = f"it sampled with the {old_engine} engine, this resume would use {engine}"
    elif engine == "hf" and cfg.generation_batch_size != old_size:
        why = (f"the hf engine seeds each generation batch, so generation_batch_size={cfg.generation_batch_size} "
               f"instead of {old_size} would change the rollouts")
    if why:
        raise ConfigError(f"{path}: cannot resume this run exactly: {why}; resume with engine={old_engine} "
                          f"generation_batch_size={old_size}, or use a new run directory")


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of a run folder: its name and a random suffix drawn once and kept in the folder (wandb_id),
    so a resumed run continues its W&B run and two folders of the same name (other --out) never share one."""
    import re
    import secrets

    path = Path(run_dir) / "wandb_id"
    if not path.is_file():
        name = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(run_dir).name)[:48]  # the characters W&B takes in an id
        atomic_write_text(path, f"{name}-{secrets.token_hex(4)}\n")
    return path.read_text().strip()


def take_groups(kept: list, rows: list, keep: list[bool], n: int, want: int) -> None:
    """Dynamic sampling's refill: append to `kept` the rows of the groups `keep` marks (group g is rows
    [g*n, (g+1)*n), the rollouts of one prompt), in order, until `kept` holds `want` groups."""
    if len(rows) != n * len(keep):
        raise ValueError(f"{len(rows)} rows are not {len(keep)} groups of {n}")
    for g, k in enumerate(keep):
        if k and len(kept) < want * n:
            kept += rows[g * n:(g + 1) * n]


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux; process peak so far


class Trainer:
    """`algorithm`: the class of the algorithm `cfg.algorithm` names (`tbrm.api.algorithms()`); it is
    built once the policy is loaded, as `algorithm(cfg, policy, device)`."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, progress: bool = True, *,
                 algorithm: type[Algorithm]):
        if algorithm.name != cfg.algorithm:
            raise ConfigError(f"the config trains algorithm={cfg.algorithm!r} but the trainer was given "
                              f"{algorithm.__name__} ({algorithm.name!r})")
        problems = algorithm.check(cfg)
        if problems:
            raise ConfigError("; ".join(problems))
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.algorithm_class = algorithm
        self._refill_sources: dict = {}

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        from evals.prompts import render_prompt
        from evals.grading.verifier import Verifier
        from tbrm.data import heldout_sets, load_trajectories, prompt_source
        from evals.models import load_model, load_tokenizer, resolve_device, resolve_model, set_threads
        from evals.engines.base import engine_record
        from evals.engines.vllm_engine import resolve_engine

        cfg, run_dir = self.cfg, self.run_dir
        check_run_config(run_dir, cfg)
        # Data first: bad files fail before minutes of model loading.
        self.offline = load_trajectories(cfg.offline_trajectories) if cfg.offline_trajectories else None
        self.source = None if self.offline else prompt_source(cfg)
        self.heldout = heldout_sets(cfg) if cfg.evaluate else {}
        set_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.model_path = resolve_model(cfg.model)
        done = checkpoints(run_dir)
        self.start_step = done[-1][0] if done else 0
        self.engine = resolve_engine(cfg.engine, self.model_path, self.device)
        if done and self.offline is None:  # off-policy runs read their trajectories, they sample none
            check_resumed_sampler(run_dir, cfg, self.engine)
        if self.start_step > cfg.steps:
            raise ConfigError(f"{run_dir} already holds {done[-1][1].name}, beyond steps={cfg.steps}; train with "
                              f"steps>={self.start_step} to continue it, or use a new run folder")
        load_from = str(done[-1][1]) if done else self.model_path
        self.tokenizer = load_tokenizer(self.model_path)
        self.policy = load_model(load_from, dtype=cfg.dtype, device=self.device, trainable=True)
        self.policy.config.use_cache = False  # training forward; generate() turns the cache on by itself
        if cfg.gradient_checkpointing:
            self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.algo = self.algorithm_class(cfg, self.policy, self.device)
        self.ref = None
        if self.algo.needs_reference:
            ref_path = resolve_model(cfg.ref_model) if cfg.ref_model else self.model_path
            self.ref = load_model(ref_path, dtype=cfg.ref_dtype, device=self.device)
        self.opt = adamw(self.policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = max(cfg.warmup_steps, 0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        if done:
            state = load_trainer_state(done[-1][1])
            if "optimizer" not in state:
                raise ConfigError(f"{done[-1][1]} keeps the final weights only (final_state=weights): it cannot be "
                                  f"trained further; train from its weights in a new run folder")
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.algo.load_state_dict(state.get("algorithm", {}))
            if "reference" in state:  # a reference reset since the start (ref_reset_every)
                self.ref.load_state_dict(state["reference"])
            restore_rng(state["rng"], self.device)
        self.generator = self._make_generator(resumed=bool(done))
        self.verifier = Verifier(timeout_s=cfg.verifier_timeout, lenient=cfg.lenient)
        self.render = lambda text: render_prompt(text, cfg.template, self.tokenizer)
        # Metrics after the checkpoint we resume from belong to steps that will be redone. Without a checkpoint
        # the run starts over, step-0 evaluation included, so no row is kept.
        rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["step"] <= self.start_step] if done else []
        atomic_write_jsonl(run_dir / "metrics.jsonl", rows)
        # So are the held-out evaluations of those steps: evaluate() would read their files back instead of
        # scoring the weights the resumed run trains. A run that starts over keeps its step-0 evaluation only
        # if the same sampler made it: another engine or generation_batch_size batches the problems otherwise,
        # and a batch on disk would be taken for the new batch of that index.
        keep = self.start_step if done or self._same_sampler() else -1
        for d in (run_dir / "evals").glob("step-*"):
            tail = d.name.removeprefix("step-")
            if tail.isdigit() and int(tail) > keep:
                shutil.rmtree(d)
        engine_used = engine_record(self.engine)
        if self.engine == "vllm":
            engine_used["dtype"] = self.generator.settings.dtype
        atomic_write_json(run_dir / "train_config.json", {**to_dict(cfg), "engine_used": engine_used})
        self.writer = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=self.start_step + 1 if done else 0)
        self.wandb = None
        if cfg.wandb:
            import wandb

            self.wandb = wandb.init(project=cfg.wandb_project, dir=str(run_dir), config=to_dict(cfg),
                                    id=wandb_run_id(run_dir), resume="allow")

    def _same_sampler(self) -> bool:
        """The run folder's last training sampled with this engine and generation_batch_size."""
        path = self.run_dir / "train_config.json"
        saved = read_json(path) if path.exists() else {}
        return ((saved.get("engine_used") or {}).get("name", "hf") == self.engine
                and saved.get("generation_batch_size") == self.cfg.generation_batch_size)

    def _make_generator(self, resumed: bool):
        """hf: `generate` on the policy itself. vllm: one engine for the whole run, colocated with the policy; it
        starts from the base weights and, when resuming, gets the checkpoint's weights loaded in place."""
        cfg = self.cfg
        if self.engine == "hf":
            from evals.engines.hf import HFGenerator

            return HFGenerator(self.policy, self.tokenizer, batch_size=cfg.generation_batch_size, autocast=cfg.autocast)
        from evals.models import native_bf16
        from evals.engines.vllm_engine import VLLMGenerator, VLLMSettings, model_max_len, rollout_dtype

        # prompts up to 1024 tokens (a longer one fails with a clear error naming it): the engine then reserves
        # memory for rollout-sized sequences, not for the model's full context
        settings = VLLMSettings(
            dtype=rollout_dtype(cfg.engine_dtype, cfg.autocast, cfg.dtype, native_bf16(self.device)),
            compile=cfg.engine_compile,
            kv_cache_gb=cfg.engine_kv_cache_gb, gpu_memory_utilization=cfg.engine_gpu_memory_utilization,
            # the engine's log-probs of the distribution the trainer's own log-probs refer to (tempered for GRPO/PPO)
            logprobs_mode="raw_logprobs" if self.algo.logit_temperature == 1.0 else "processed_logprobs",
            threads=cfg.threads, seed=cfg.seed,
            max_model_len=model_max_len(self.model_path, max(cfg.max_new_tokens, cfg.eval_max_new_tokens or 0) + 1024))
        generator = VLLMGenerator(self.model_path, self.tokenizer, settings, batch_size=cfg.generation_batch_size,
                                  device=self.device)
        if resumed:
            generator.load_weights(self.policy)
        return generator

    # ------------------------------------------------------------------ one step
    def rollouts(self, step: int, refill: int = 0):
        """Sample (or, off-policy, read) the step's trajectories and reward them with the shared verifier.
        `refill` > 0: the prompts and seeds of the step's refill round of that number (dynamic sampling), drawn
        from a prompt stream seeded apart from the training stream, so they are a function of (step, round)."""
        from evals.engines.base import SamplingParams, generate

        cfg, tok = self.cfg, self.tokenizer
        if self.offline is not None:
            n = len(self.offline)
            trajs = [self.offline[i % n] for i in range((step - 1) * cfg.prompts_per_step, step * cfg.prompts_per_step)]
            prompt_ids = [self.generator.encode(self.render(t.prompt)) for t in trajs]
            response_ids = [tok(t.response, add_special_tokens=False).input_ids + ([tok.eos_token_id] if t.stopped else [])
                            for t in trajs]
            rewards = [t.reward for t in trajs]
            info = {"truncated": [not t.stopped for t in trajs], "correct": [t.reward >= cfg.reward_correct for t in trajs],
                    "lenient": [False] * len(trajs), "gen_tokens": 0, "gen_seconds": 0.0, "engine_logprobs": None}
            return prompt_ids, response_ids, rewards, list(range(len(trajs))), info
        problems = (self.source if not refill else self._refill_source(refill)).batch(step)
        prompts = [self.render(p.problem) for p in problems]
        params = SamplingParams(n=cfg.rollouts_per_prompt, temperature=cfg.temperature, top_p=cfg.top_p,
                                max_new_tokens=cfg.max_new_tokens, seed=cfg.seed * 1_000_003 + step + refill * 10_007)
        t0 = time.perf_counter()
        samples = generate(self.generator, prompts, params)
        gen_seconds = time.perf_counter() - t0
        flat = [s for group in samples for s in group]  # rollouts of a prompt stay consecutive (GRPO groups)
        verdicts = self.verifier.verify_batch([(s.text, problems[s.prompt_index].answer) for s in flat])
        rewards = [cfg.reward_correct if v.correct else cfg.reward_wrong for v in verdicts]
        info = {"truncated": [s.finish_reason == "length" for s in flat], "correct": [v.correct for v in verdicts],
                "lenient": [v.extraction == "lenient" for v in verdicts], "gen_tokens": sum(s.num_tokens for s in flat),
                "gen_seconds": gen_seconds,
                "engine_logprobs": [s.logprobs for s in flat] if all(s.logprobs is not None for s in flat) else None}
        return [s.prompt_ids for s in flat], [s.token_ids for s in flat], rewards, [s.prompt_index for s in flat], info

    def _refill_source(self, refill: int):
        from dataclasses import replace

        from tbrm.data import prompt_source

        if refill not in self._refill_sources:
            self._refill_sources[refill] = prompt_source(replace(self.cfg, seed=self.cfg.seed + 7_919 * refill))
        return self._refill_sources[refill]

    def filtered_rollouts(self, step: int):
        """`rollouts`, then dynamic sampling where the algorithm asks for it (`Algorithm.keep_groups`): groups it
        drops are replaced by groups of fresh prompts, round after round, up to dynamic_sampling_rounds extra
        rounds; the batch is cut to prompts_per_step groups. If no group is kept at all the step trains on the
        first round's batch unchanged (its advantages are all 0)."""
        first = self.rollouts(step)
        if self.algo.keep_groups(torch.tensor(first[2])) is None:
            return first, {}
        n, want = self.cfg.rollouts_per_prompt, self.cfg.prompts_per_step
        kept: list[tuple] = []  # (prompt_ids, response_ids, reward, truncated, correct, lenient, engine_logprobs) rows
        tokens, seconds, rounds, sampled = 0, 0.0, 0, 0
        for refill in range(self.cfg.dynamic_sampling_rounds + 1):
            prompt_ids, response_ids, rewards, _, info = first if refill == 0 else self.rollouts(step, refill)
            rounds, sampled = refill, sampled + len(rewards) // n
            tokens, seconds = tokens + info["gen_tokens"], seconds + info["gen_seconds"]
            lps = info["engine_logprobs"] or [None] * len(rewards)
            rows = list(zip(prompt_ids, response_ids, rewards, info["truncated"], info["correct"], info["lenient"], lps))
            take_groups(kept, rows, self.algo.keep_groups(torch.tensor(rewards)).tolist(), n, want)
            if len(kept) >= want * n:
                break
        stats = {"dapo/refill_rounds": rounds, "dapo/refill_prompts": (sampled - want),
                 "dapo/groups_kept": len(kept) // n}
        if not kept:
            return first, stats
        cols = list(zip(*kept))
        info = {"truncated": list(cols[3]), "correct": list(cols[4]), "lenient": list(cols[5]), "gen_tokens": tokens,
                "gen_seconds": seconds, "engine_logprobs": None if any(x is None for x in cols[6]) else list(cols[6])}
        return (list(cols[0]), list(cols[1]), list(cols[2]), [i // n for i in range(len(kept))], info), stats

    def _micro_batches(self, batch):
        mb = self.cfg.micro_batch_size
        return [batch.select(slice(i, i + mb)) for i in range(0, batch.size, mb)]

    def _forward(self, model, batch):
        from tbrm.rollout import response_forward

        return response_forward(model, batch, self.cfg.autocast, temperature=self.algo.logit_temperature,
                                need_v_start=self.algo.needs_v_start)

    @torch.no_grad()
    def _no_grad_forward(self, model, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Micro-batched no-grad [B, T] response log-probs and [B] V(s_1) of `model` (None where the algorithm
        does not use V(s_1))."""
        parts = [self._forward(model, mb) for mb in self._micro_batches(batch)]
        T = batch.response_ids.shape[1]
        return (torch.cat([torch.nn.functional.pad(p.logprobs, (0, T - p.logprobs.shape[1])) for p in parts]),
                torch.cat([p.v_start for p in parts]) if self.algo.needs_v_start else None)

    def _no_grad_logprobs(self, model, batch) -> torch.Tensor:
        return self._no_grad_forward(model, batch)[0]

    def step(self, step: int) -> dict:
        from tbrm.rollout import collate

        cfg = self.cfg
        t_start = time.perf_counter()
        if self.algo.reset_reference(step):  # ReVal: the reference becomes the current policy
            self.ref.load_state_dict(self.policy.state_dict())
        (prompt_ids, response_ids, rewards, group, info), sampling = self.filtered_rollouts(step)
        t_gen = time.perf_counter()
        self.generator.sleep()  # CUDA: hand the engine's GPU memory to training until the weights are synced
        batch = collate(prompt_ids, response_ids, rewards, group, self.tokenizer.pad_token_id, self.device)
        batch.extra["truncated"] = torch.tensor(info["truncated"], dtype=torch.bool, device=self.device)
        if info["engine_logprobs"] is not None:
            T = batch.response_ids.shape[1]
            batch.extra["engine_logprobs"] = torch.tensor([lp + [0.0] * (T - len(lp)) for lp in info["engine_logprobs"]],
                                                          dtype=torch.float32, device=self.device)
        if self.ref is not None:
            batch.extra["ref_logprobs"], ref_v_start = self._no_grad_forward(self.ref, batch)
            if ref_v_start is not None:
                batch.extra["ref_v_start"] = ref_v_start
        t_ref = time.perf_counter()
        self.policy.train()
        prep = self.algo.prepare(batch, lambda b: self._no_grad_logprobs(self.policy, b))
        sums: dict[str, float] = {}
        log_ratio = []
        mismatch = []  # |engine log p - trainer log p| per sampled token, from the first (pre-update) forward
        for epoch in range(cfg.policy_epochs):
            self.opt.zero_grad(set_to_none=True)
            for mb in self._micro_batches(batch):
                out = self._forward(self.policy, mb)
                loss, m = self.algo.loss(mb, out)
                w = self.algo.weight(mb, batch)
                (loss * w).backward()
                m["loss"] = loss.item()
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + w * v / cfg.policy_epochs
                if epoch == 0 and "engine_logprobs" in mb.extra:
                    diff = (out.logprobs.detach() - mb.extra["engine_logprobs"]).abs()
                    mismatch.append(diff[mb.response_mask.bool()])
                if "ref_logprobs" in mb.extra:
                    log_ratio.append(((out.logprobs.detach() - mb.extra["ref_logprobs"]) * mb.response_mask).sum(-1))
            grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
            self.opt.step()
            sums.update(self.algo.after_backward(step))
        self.sched.step()
        sync_seconds = self.generator.load_weights(self.policy)  # None: the engine samples from the policy itself
        t_train = time.perf_counter()
        lengths = [len(r) for r in response_ids]
        row = {
            "step": step, "reward/mean": float(np.mean(rewards)), "reward/accuracy": float(np.mean(info["correct"])),
            "reward/lenient_fraction": float(np.mean(info["lenient"])), "loss": sums.pop("loss"),
            "response/length_mean": float(np.mean(lengths)), "response/truncation_rate": float(np.mean(info["truncated"])),
            "rollout/tokens_per_second": info["gen_tokens"] / info["gen_seconds"] if info["gen_seconds"] else None,
            "time/generation": t_gen - t_start, "time/reference": t_ref - t_gen, "time/training": t_train - t_ref,
            "time/step": t_train - t_start, "memory/peak_gb": _peak_memory_gb(self.device),
            "optim/grad_norm": float(grad_norm), "optim/lr": self.sched.get_last_lr()[0],
            "rollouts": len(rewards) * step,
        }
        if sync_seconds is not None:
            row["time/weight_sync"] = sync_seconds
        if mismatch:
            diffs = torch.cat(mismatch)
            row["rollout/logprob_diff_mean"] = float(diffs.mean()) if diffs.numel() else 0.0
            row["rollout/logprob_diff_max"] = float(diffs.max()) if diffs.numel() else 0.0
        if log_ratio:
            row["kl/seq_log_ratio_mean"] = float(torch.cat(log_ratio).mean())
        row.update(sampling)
        row.update(prep)
        row.update(sums)
        return row

    # ------------------------------------------------------------------ evaluation and checkpoints
    def evaluate(self, step: int) -> dict:
        from evals.runner import evaluate_problems, summarize_rows
        from evals.engines.base import SamplingParams

        cfg = self.cfg
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.eval_max_new_tokens or cfg.max_new_tokens)
        out = {}
        for name, problems in self.heldout.items():
            prompts = [self.render(p.problem) for p in problems]
            rows = evaluate_problems(f"eval {name} @ step {step}", problems, prompts, params, self.generator,
                                     self.verifier, self.run_dir / "evals" / f"step-{step}" / f"{name}.jsonl",
                                     progress=False)
            s = summarize_rows(rows)
            out[f"eval/{name}/accuracy"] = s["avg@1"]["value"]
            out[f"eval/{name}/truncation_rate"] = s["lengths"]["truncation_rate"]
            out[f"eval/{name}/length_mean"] = s["lengths"]["mean_tokens"]
        return out

    def save(self, step: int) -> Path:
        cfg, run_dir = self.cfg, self.run_dir
        final = run_dir / f"checkpoint-{step}"
        tmp = run_dir / f".checkpoint-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.policy.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        if step == cfg.steps and cfg.final_state == "weights":
            state = {"step": step}
        else:
            state = {"step": step, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                     "algorithm": self.algo.state_dict(), "rng": capture_rng(self.device)}
            if self.ref is not None and self.cfg.ref_reset_every and step >= self.cfg.ref_reset_every:
                state["reference"] = self.ref.state_dict()  # no longer the initial policy: a resume needs it
        save_trainer_state(tmp, state)
        atomic_write_json(tmp / "train_config.json", to_dict(cfg))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for s, p in checkpoints(run_dir)[: -cfg.keep_checkpoints]:
            shutil.rmtree(p, ignore_errors=True)
        return final

    def log(self, row: dict) -> None:
        # NaN (e.g. explained variance of constant returns) is not JSON: store null
        row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        append_jsonl(self.run_dir / "metrics.jsonl", [row])
        if self.writer:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and v is not None:
                    self.writer.add_scalar(k, v, row["step"])
            self.writer.flush()
        if self.wandb:
            self.wandb.log(row, step=row["step"])

    # ------------------------------------------------------------------ the loop
    def run(self) -> list[dict]:
        from tqdm.auto import tqdm

        self.setup()
        cfg = self.cfg
        try:
            if self.start_step == 0 and cfg.evaluate:
                self.log({"step": 0, "rollouts": 0, **self.evaluate(0)})
            bar = tqdm(total=cfg.steps, initial=self.start_step, desc=f"{cfg.algorithm} train", unit="step",
                       disable=not self.progress, dynamic_ncols=True)
            for step in range(self.start_step + 1, cfg.steps + 1):
                row = self.step(step)
                last = step == cfg.steps
                if cfg.evaluate and (last or (cfg.eval_every and step % cfg.eval_every == 0)):
                    t_eval = time.perf_counter()
                    row.update(self.evaluate(step))
                    row["time/eval"] = time.perf_counter() - t_eval
                self.log(row)
                if last or (cfg.save_every and step % cfg.save_every == 0):
                    self.save(step)
                bar.update(1)
                bar.set_postfix({"reward": f"{row['reward/mean']:.3f}", "loss": f"{row['loss']:.3g}",
                                 **{k.split("/")[1]: f"{v:.3f}" for k, v in row.items() if k.endswith("/accuracy")
                                    and k.startswith("eval/")}})
            bar.close()
            from tbrm.plots import plot_training_curves

            plot_training_curves(read_jsonl(self.run_dir / "metrics.jsonl"), self.run_dir / "curves.png",
                                 title=f"{cfg.algorithm} n={cfg.rollouts_per_prompt} on {cfg.model}")
        finally:
            self.verifier.close()
            self.generator.close()  # the vLLM engine's KV cache is freed now, not at some later garbage collection
            if self.writer:
                self.writer.close()
        return read_jsonl(self.run_dir / "metrics.jsonl")


def train(cfg: TrainConfig, run_dir: str | Path, progress: bool = True, *,
          algorithm: type[Algorithm]) -> list[dict]:
    return Trainer(cfg, run_dir, progress, algorithm=algorithm).run()
