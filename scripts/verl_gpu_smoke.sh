#!/usr/bin/env bash
# GPU smoke test of the verl integration: a few TBRM n=1 steps of Qwen2.5-Math-1.5B on ONE CUDA GPU with small
# batches, through `tbrm verl` (exact TBRM plugin, vLLM rollouts, this suite's verifier as reward), then the
# checkpoint export and a `tbrm eval` of the exported checkpoint. Needs tbrm-bench[verl] plus verl's GPU
# dependencies (vllm, flash-attn) in the current Python, and the model from the hub or the HF cache.
#
#   bash scripts/verl_gpu_smoke.sh [RUN_DIR]          (default runs/verl-smoke; rerun = fresh run folder)
#
# Training data: $TBRM_DATA_DIR/math_train/train.jsonl when TBRM_DATA_DIR is set and has it (MATH train, field
# `answer`), else DAPO-Math-17k from the hub (the paper's data). Set SMOKE_STEPS / SMOKE_PROMPTS to change the size.
# Pass: every command exits 0, the log shows the TBRM residual metrics, checkpoint-N is scored.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/verl-smoke}
STEPS=${SMOKE_STEPS:-3}
PROMPTS=${SMOKE_PROMPTS:-8}
PY=${PYTHON:-python}
command -v nvidia-smi >/dev/null && nvidia-smi -L || { echo "verl_gpu_smoke: no CUDA GPU (nvidia-smi)" >&2; exit 1; }

DATA=()
if [ -n "${TBRM_DATA_DIR:-}" ] && [ -f "$TBRM_DATA_DIR/math_train/train.jsonl" ]; then
  DATA=(data=file data_path="$(cd "$TBRM_DATA_DIR/math_train" && pwd)/train.jsonl" problem_field=problem answer_field=answer)
fi
rm -rf "$RUN" && mkdir -p "$(dirname "$RUN")"
t0=$(date +%s)
"$PY" -m tbrm.cli verl paper-tbrm-n1-qwen1.5b "${DATA[@]}" \
  prompts_per_step="$PROMPTS" steps="$STEPS" max_new_tokens=512 micro_batch_size=4 \
  save_every="$STEPS" keep_checkpoints=1 eval_every=0 evaluate=false eval_problems=8 \
  --gpus 1 --rollout-tp 1 --gpu-memory-utilization 0.4 --out "$RUN" --launch 2>&1 | tee "$RUN.log"
echo "verl_gpu_smoke: training finished in $(( $(date +%s) - t0 ))s"
grep -q "tbrm/residual_mean" "$RUN.log" || { echo "verl_gpu_smoke: no TBRM metrics in the log" >&2; exit 1; }
grep -E "step:[0-9]+ .*tbrm/residual_abs_mean" "$RUN.log" | tail -n "$STEPS" | \
  sed -E 's/.*(step:[0-9]+).*(tbrm\/residual_abs_mean:[^ ]+).*(critic\/score\/mean:[^ ]+).*/\1 \2 \3/' || true

"$PY" -m tbrm.cli verl export "$RUN" --step "$STEPS"
"$PY" -m tbrm.cli eval --model "$RUN/checkpoint-$STEPS" --benchmarks math500 --limit 8 --max-new-tokens 512 \
  --dtype bfloat16 --out "$RUN/eval-math500"
echo "verl_gpu_smoke: passed; scores in $RUN/eval-math500/summary.json"
