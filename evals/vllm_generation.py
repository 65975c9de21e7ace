"""The vLLM engine behind the `Generator` protocol (`--engine vllm`), for evaluation and for training rollouts.

Same contract as `HFGenerator`: a deterministic plan of batches, `run_batch` per batch, `Sample` records with the
response token ids (final EOS included), finish reason and, here, vLLM's per-token log-probs. Sampling is seeded
per sequence from (seed, prompt index, sample index), so a sample does not depend on which batch it lands in: a
killed run that resumes regenerates exactly what it had not finished and gets the same samples.

Settings that matter on CPU (docs/vllm-cpu.md says why each is needed):
- In-process engine (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, `distributed_executor_backend="uni"`): the model runs on
  all cores (vLLM otherwise reserves one core for its busy-looping engine process), and the trainer reaches the
  worker directly to load new weights in place.
- Eager mode by default: start-up in seconds instead of a minute or more of torch.compile, for a modest loss of
  throughput.
- Chunked prefill off: a per-request seed plus a prompt split across steps crashes vLLM 0.32 on CPU
  ("CPU Generator does not use offset"); whole-prompt prefills avoid it for any batch size.
- Weight updates: `reload_weights` with the full `state_dict()` (which holds the tied `lm_head.weight`; without
  it the tie silently breaks), then a prefix-cache reset (else prompt KV computed by the old weights is reused).

Nothing else in the suite imports vLLM; `resolve_engine` decides what `--engine auto` means on this machine.
"""

from __future__ import annotations

import json
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from evals.seeding import stable_seed
from evals.generation import Sample, SamplingParams, WorkItem, encode_prompt, eos_token_ids, finish_response

ENGINES = ("hf", "vllm", "auto")
# Head sizes vLLM 0.32's CPU attention kernels support (vllm/v1/attention/backends/cpu_attn.py).
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
INSTALL_HINT = "install it with `bash scripts/install.sh` (vllm-cpu on CPU-only machines, vllm on CUDA)"


class EngineError(RuntimeError):
    """The vLLM engine failed or died mid-run; the message says what to do (runs resume when rerun)."""


def vllm_version() -> str | None:
    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def engine_record(engine: str) -> dict:
    """What a run's config.json records about the engine that generated its samples."""
    if engine == "vllm":
        return {"name": "vllm", "version": vllm_version()}
    return {"name": "hf", "version": f"transformers=={metadata.version('transformers')}"}


def unsupported_reason(model_path: str, device: str | torch.device) -> str | None:
    """Why vLLM cannot run this model here (None when it can): vLLM missing, or a head size its CPU kernels lack."""
    if vllm_version() is None:
        return f"vLLM is not installed; {INSTALL_HINT}"
    if torch.device(device).type == "cpu":
        cfg_path = Path(model_path) / "config.json"
        if cfg_path.exists():
            cfg = json.loads(cfg_path.read_text())
            heads = cfg.get("num_attention_heads")
            head = cfg.get("head_dim") or (cfg["hidden_size"] // heads if heads and "hidden_size" in cfg else None)
            if head is not None and head not in CPU_HEAD_SIZES:
                return f"its head size {head} is not one vLLM's CPU attention supports ({CPU_HEAD_SIZES})"
    return None


def resolve_engine(engine: str, model_path: str, device: str | torch.device) -> str:
    """`auto` -> vllm when it is installed and supports the model on this device, else hf (saying why)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "hf":
        return "hf"
    reason = unsupported_reason(model_path, device)
    if engine == "vllm":
        if reason:
            raise ValueError(f"--engine vllm: cannot generate with vLLM: {reason}")
        return "vllm"
    if reason:
        print(f"engine auto: using hf ({reason})", flush=True)
        return "hf"
    return "vllm"


ENGINE_DTYPES = ("auto", "float32", "bfloat16")


def rollout_dtype(engine_dtype: str, autocast: str, master_dtype: str, native: bool) -> str:
    """The dtype a training run's vLLM engine samples in.

    auto: bfloat16 when the policy trains under bf16 autocast (autocast=bf16, or autocast=auto where bf16 is
    native) and bf16 is native on the device (`evals.models.native_bf16`), else the master weights' dtype: vLLM's
    CPU kernels emulate bf16 where the CPU lacks AVX512-BF16/AMX, and that is several times slower than fp32,
    while native bf16 is faster (figures: benchmarks/README.md; docs/vllm-cpu.md).
    float32 / bfloat16: as given.
    """
    if engine_dtype not in ENGINE_DTYPES:
        raise ValueError(f"engine_dtype must be one of {', '.join(ENGINE_DTYPES)}, got {engine_dtype!r}")
    if engine_dtype != "auto":
        return engine_dtype
    return "bfloat16" if autocast in ("bf16", "auto") and native else master_dtype


@dataclass
class VLLMSettings:
    """Engine settings. None of them changes what is sampled (only speed and memory), except `dtype`."""

    dtype: str = "float32"  # bfloat16 pays only where bf16 is native; fp32 log-probs match HF's to ~3e-5 nats
    max_model_len: int | None = None  # prompt + response tokens per sequence; None = the model's own limit
    max_num_seqs: int = 256  # sequences decoded together; on CPU tokens/s keeps rising up to ~256
    compile: bool = False  # torch.compile + CUDA graphs: more tokens/s, but about a minute more start-up on CPU
    kv_cache_gb: float = 4.0  # CPU: KV-cache size (SmolLM2 bf16: ~23k tokens per GiB); too small = preemptions
    gpu_memory_utilization: float = 0.85  # CUDA: share of GPU memory for weights + KV cache
    tensor_parallel_size: int = 1  # CUDA: GPUs one model is split across (evaluation of large models)
    sleep_between_steps: bool = True  # CUDA training: free the engine's GPU memory while the policy trains
    logprobs_mode: str = "raw_logprobs"  # raw = before temperature; processed = of the tempered distribution
    threads: int | None = None  # CPU cores the engine binds to; None = every core this process may use
    seed: int = 0


def _cpu_bind_list(threads: int | None) -> str:
    cpus = sorted(os.sched_getaffinity(0))
    return ",".join(str(c) for c in cpus[: threads or len(cpus)])


@contextmanager
def _rng_preserved():
    """An in-process engine reseeds the global RNGs at start-up; the trainer's RNG stream must not notice."""
    state = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(state[0])
        random.setstate(state[1])
        np.random.set_state(state[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def model_max_len(model_path: str, wanted: int) -> int:
    """`wanted` capped at the model's own context length (vLLM refuses a longer max_model_len)."""
    path = Path(model_path) / "config.json"
    limit = json.loads(path.read_text()).get("max_position_embeddings") if path.exists() else None
    return min(wanted, limit) if limit else wanted


def _generation_eos(model_path: str):
    """The EOS id(s) transformers' `generation_config` holds: generation_config.json, else config.json."""
    for name in ("generation_config.json", "config.json"):
        path = Path(model_path) / name
        if path.exists():
            eos = json.loads(path.read_text()).get("eos_token_id")
            if eos is not None:
                return eos
    return None


def plan_batches(prompt_lengths: Sequence[int], params: SamplingParams, max_model_len: int,
                 batch_size: int) -> list[list[WorkItem]]:
    """Batches of `batch_size` sequences in prompt order. vLLM schedules the sequences of a batch itself
    (continuous batching), so no length sorting; batches only bound how much work a crash can lose (and, with
    data parallelism, are what the replicas share)."""
    too_long = [i for i, n in enumerate(prompt_lengths) if n + params.max_new_tokens > max_model_len]
    if too_long:
        i = too_long[0]
        raise ValueError(f"prompt {i} has {prompt_lengths[i]} tokens; with max_new_tokens={params.max_new_tokens} it "
                         f"exceeds the engine's max_model_len={max_model_len} ({len(too_long)} prompts do)")
    items = [(pi, si) for pi in range(len(prompt_lengths)) for si in range(params.n)]
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


class VLLMGenerator:
    """vLLM `LLM` engine, in-process. `model_path` is an HF directory (or hub id) with the policy's weights."""

    def __init__(self, model_path: str, tokenizer, settings: VLLMSettings | None = None, batch_size: int = 256,
                 device: str | torch.device = "cpu"):
        self.settings = s = settings or VLLMSettings()
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.asleep = False
        self.dead: str | None = None
        # Environment read by vLLM at import/start-up; a user's own values win.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        if self.device.type == "cpu":
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_bind_list(s.threads))
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        from vllm import LLM

        kwargs = dict(model=str(model_path), tokenizer=str(model_path), dtype=s.dtype, seed=s.seed,
                      enforce_eager=not s.compile, max_model_len=s.max_model_len, max_num_seqs=s.max_num_seqs,
                      enable_prefix_caching=True, enable_chunked_prefill=False, logprobs_mode=s.logprobs_mode,
                      tensor_parallel_size=s.tensor_parallel_size)
        if s.tensor_parallel_size == 1:
            kwargs["distributed_executor_backend"] = "uni"  # in-process worker: direct access for weight loads
        if self.device.type == "cpu":
            kwargs["kv_cache_memory_bytes"] = int(s.kv_cache_gb * 2**30)
        else:
            kwargs["gpu_memory_utilization"] = s.gpu_memory_utilization
            kwargs["enable_sleep_mode"] = s.sleep_between_steps
        with _rng_preserved():
            self.llm = LLM(**kwargs)
        # With chunked prefill off vLLM sizes its per-step token budget to at least one whole sequence itself.
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.eos_ids = eos_token_ids(tokenizer, _generation_eos(model_path))  # the same ids as HFGenerator's

    # ------------------------------------------------------------------ the Generator protocol
    def encode(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)

    def plan(self, prompts: Sequence[str], params: SamplingParams) -> list[list[WorkItem]]:
        return plan_batches([len(self.encode(p)) for p in prompts], params, self.max_model_len, self.batch_size)

    def run_batch(self, prompts: Sequence[str], batch: list[WorkItem], batch_index: int,
                  params: SamplingParams) -> list[Sample]:
        from vllm import SamplingParams as VLLMParams
        from vllm import TokensPrompt

        if self.dead:
            raise EngineError(self.dead)
        self.wake_up()
        encoded = {pi: self.encode(prompts[pi]) for pi in sorted({pi for pi, _ in batch})}

        def vparams(pi: int, si: int) -> VLLMParams:
            return VLLMParams(
                temperature=params.temperature, top_p=params.top_p, top_k=0, max_tokens=params.max_new_tokens,
                stop=list(params.stop) or None, stop_token_ids=sorted(self.eos_ids), ignore_eos=False,
                logprobs=0, seed=None if params.greedy else stable_seed(params.seed, pi, si),
                skip_special_tokens=True)

        t0 = time.perf_counter()
        try:
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=encoded[pi]) for pi, _ in batch],
                                        [vparams(pi, si) for pi, si in batch], use_tqdm=False)
        except Exception as e:  # an in-process engine raises (it cannot hang); later calls must not retry
            self.dead = (f"the vLLM engine failed on batch {batch_index} ({type(e).__name__}: {e}); finished "
                         f"batches are saved, rerun the same command to resume")
            raise EngineError(self.dead) from e
        dt = time.perf_counter() - t0
        samples = []
        for (pi, si), out in zip(batch, outputs):
            c = out.outputs[0]
            if c.finish_reason not in ("stop", "length"):
                raise EngineError(f"vLLM returned finish_reason={c.finish_reason!r} for prompt {pi} sample {si} "
                                  f"(batch {batch_index}): the request was aborted")
            ids = list(c.token_ids)
            response, text, reason = finish_response(self.tokenizer, ids, self.eos_ids, params.stop)
            if c.finish_reason == "stop" and reason == "length":  # stopped on a stop string vLLM saw first
                reason = "stop"
            logprobs = [float(next(iter(d.values())).logprob) for d in (c.logprobs or [])][: len(response)]
            samples.append(Sample(pi, si, text, encoded[pi], response, reason, dt, logprobs=logprobs))
        return samples

    # ------------------------------------------------------------------ colocated training
    def load_weights(self, model) -> float:
        """Copy `model`'s current weights into the engine in place (no disk), then drop the prefix cache.
        Returns the seconds it took. `state_dict()` includes `lm_head.weight` also when it is tied."""
        t0 = time.perf_counter()
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        state = model.state_dict()
        if "lm_head.weight" not in state and getattr(model.config, "tie_word_embeddings", False):
            state = {**state, "lm_head.weight": model.get_output_embeddings().weight}
        dtype = getattr(torch, self.settings.dtype)
        weights = ((k, v.detach().to(dtype)) for k, v in state.items())
        worker = self.llm.llm_engine.model_executor.driver_worker.worker
        with torch.no_grad(), _rng_preserved():
            worker.reload_weights(weights_iterator=weights)
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()
        return time.perf_counter() - t0

    def sleep(self) -> None:
        """CUDA: release the engine's GPU memory (weights and KV cache) while the policy trains; the next
        `load_weights` brings it back with the new weights. A no-op on CPU (vLLM has no sleep mode there)."""
        if self.device.type == "cuda" and self.settings.sleep_between_steps and not self.asleep:
            self.llm.sleep(level=2)
            self.asleep = True

    def wake_up(self) -> None:
        if self.asleep:  # woken without new weights: level-2 sleep dropped them, so this is a caller's bug
            raise EngineError("the vLLM engine is asleep without weights; call load_weights(policy) first")
