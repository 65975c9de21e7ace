"""Data-parallel evaluation: N vLLM engine replicas, each in its own process, sharing one plan of batches
(`tbrm eval --data-parallel-size N`).

vLLM's offline `LLM` refuses `data_parallel_size > 1` in one process and points at its multi-process example
(one engine per process, each on its own GPUs); this is that pattern behind the `Generator` protocol. Replica r
gets GPUs [r*tp, (r+1)*tp) of the visible ones on CUDA (tp = tensor_parallel_size), or its share of the cores on
CPU. Replicas pull batches from one queue as they free up, so a replica that draws short answers takes more
batches. Sampling is seeded per sequence (`evals.seeding.stable_seed(seed, prompt, sample)`), so which replica
generates a sequence does not change it: a data-parallel run gives the samples of a single engine, and a run may
resume with another replica count. Batches come back in completion order; the evaluation runner writes each one as it
arrives, so a crash loses only batches in flight.

A replica that fails or dies (the OOM killer, a CUDA error) stops the run with an EngineError naming it; the
others are stopped too, nothing hangs, and rerunning the command resumes.

This module imports no torch or vLLM at its top: a replica process sets its device environment
(CUDA_VISIBLE_DEVICES, vLLM's CPU core binding) before either is imported.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from typing import Iterator, Sequence

from evals.engines.base import EngineError
from evals.engines.vllm_plan import VLLMPlanning
from evals.runlock import kill_with_parent

POLL_S = 0.5  # how often the parent checks that its replicas are alive while waiting for a batch


def replica_devices(replicas: int, tensor_parallel_size: int, device_type: str) -> list[dict[str, str]]:
    """The environment of each replica: its GPUs on CUDA, its cores on CPU. Raises ValueError if there are too few."""
    if replicas < 1:
        raise ValueError(f"data_parallel_size must be a positive integer, got {replicas!r}")
    if device_type == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            gpus = [g.strip() for g in visible.split(",") if g.strip()]
        else:
            import torch

            gpus = [str(i) for i in range(torch.cuda.device_count())]
        need = replicas * tensor_parallel_size
        if need > len(gpus):
            raise ValueError(f"data_parallel_size={replicas} x tensor_parallel_size={tensor_parallel_size} needs "
                             f"{need} GPUs; {len(gpus)} are visible")
        return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[r * tensor_parallel_size : (r + 1) * tensor_parallel_size])}
                for r in range(replicas)]
    cpus = sorted(os.sched_getaffinity(0))
    if replicas > len(cpus):
        raise ValueError(f"data_parallel_size={replicas} on CPU needs a core per replica; this process may use "
                         f"{len(cpus)}")
    share = len(cpus) // replicas
    return [{"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus[r * share : (r + 1) * share])),
             "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "OMP_NUM_THREADS": str(share)} for r in range(replicas)]


def _replica(rank: int, env: dict[str, str], model_path: str, settings, batch_size: int, device_type: str,
             tasks, results, parent_pid: int) -> None:
    """Replica process: start an engine on this replica's devices, then generate batches until told to stop."""
    kill_with_parent(parent_pid)  # a killed `tbrm eval` leaves no engine holding GPUs or cores behind
    os.environ.update(env)  # before torch and vLLM are imported: they read it once
    try:
        from evals.models import load_tokenizer
        from evals.engines.vllm_engine import VLLMGenerator

        if device_type == "cpu":
            settings.threads = len(env["VLLM_CPU_OMP_THREADS_BIND"].split(","))
        generator = VLLMGenerator(model_path, load_tokenizer(model_path), settings, batch_size=batch_size,
                                  device=device_type)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("failed", rank, None, f"{type(e).__name__}: {e}"))
        return
    results.put(("ready", rank, None, generator.max_model_len))
    while (task := tasks.get()) is not None:
        batch_index, prompts, batch, params = task
        try:
            samples = generator.run_batch(prompts, batch, batch_index, params)
        except BaseException as e:  # noqa: BLE001
            results.put(("failed", rank, batch_index, f"{type(e).__name__}: {e}"))
            return
        results.put(("done", rank, batch_index, samples))


class DataParallelVLLM(VLLMPlanning):
    """`replicas` VLLMGenerator engines in child processes, behind the Generator protocol plus `run_batches`.
    Close it (or use it as a context manager) to stop them."""

    def __init__(self, model_path: str, tokenizer, settings, replicas: int, batch_size: int = 256,
                 device: str = "cpu"):
        self.tokenizer, self.batch_size, self.replicas = tokenizer, int(batch_size), replicas
        device_type = str(device).split(":")[0]
        envs = replica_devices(replicas, settings.tensor_parallel_size, device_type)
        ctx = mp.get_context("spawn")  # never fork a parent that holds torch threads or a CUDA context
        self._tasks, self._results = ctx.Queue(), ctx.Queue()
        self._procs = [ctx.Process(target=_replica, name=f"vllm-replica-{r}", daemon=True,
                                   args=(r, envs[r], str(model_path), settings, self.batch_size, device_type,
                                         self._tasks, self._results, os.getpid()))
                       for r in range(replicas)]
        self._closed = False
        self._in_flight = 0  # batches sent and not yet returned
        for p in self._procs:
            p.start()
        lengths = [self._next("starting")[3] for _ in self._procs]
        self.max_model_len = min(lengths)

    # ------------------------------------------------------------------ the Generator protocol (+ VLLMPlanning)
    def run_batch(self, prompts: Sequence[str], batch, batch_index: int, params):
        return next(self.run_batches(prompts, [(batch_index, batch)], params))[1]

    def run_batches(self, prompts: Sequence[str], batches, params) -> Iterator[tuple[int, list]]:
        """(batch index, samples) for every (index, batch), in the order the replicas finish them."""

        if self._closed:
            raise EngineError("the data-parallel engine is closed")
        if self._in_flight:
            raise EngineError("a previous run_batches was abandoned with batches in flight; close this engine")
        batches = list(batches)
        self._in_flight = len(batches)
        for bi, batch in batches:  # each task carries only its own prompts
            self._tasks.put((bi, {pi: prompts[pi] for pi, _ in batch}, batch, params))
        for _ in batches:
            _, _, bi, samples = self._next(f"generating ({len(batches)} batches)")
            self._in_flight -= 1
            yield bi, samples

    # ------------------------------------------------------------------ replica supervision
    def _next(self, doing: str) -> tuple:
        """The next message from a replica; an EngineError (and every replica stopped) if one failed or died."""

        while True:
            try:
                msg = self._results.get(timeout=POLL_S)
            except queue.Empty:
                dead = [(r, p.exitcode) for r, p in enumerate(self._procs) if not p.is_alive()]
                if dead:
                    r, code = dead[0]
                    self.close()
                    raise EngineError(f"vLLM replica {r} of {self.replicas} died while {doing} (exit code {code}); "
                                      f"finished batches are saved, rerun the same command to resume") from None
                continue
            if msg[0] == "failed":
                self.close()
                where = "at start-up" if msg[2] is None else f"on batch {msg[2]}"
                raise EngineError(f"vLLM replica {msg[1]} of {self.replicas} failed {where}: {msg[3]}; finished "
                                  f"batches are saved, rerun the same command to resume")
            return msg

    def close(self) -> None:
        """Stop the replicas: politely when idle, by terminate() after a grace period otherwise. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for _ in self._procs:
            self._tasks.put(None)
        deadline = time.monotonic() + 10
        for p in self._procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        for q in (self._tasks, self._results):
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> DataParallelVLLM:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
