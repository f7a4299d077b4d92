#!/usr/bin/env bash
# The prepared device check (one <= 10-minute call on a GPU machine; see benchmarks/README.md):
#   loss speed vs the bare-torchvision limit / lpips / piq (fp32, channels_last, bf16, compile),
#   super-resolution paper-preset s/step (vgg16 E/L, resnet50 L; fp32, bf16), projected GPU-hours
#   of the paper grid, AMP-vs-fp32 validation PSNR after 500 steps.
# Runs from the source tree (no install): PYTHONPATH=src. Results: stdout and $OUT/gpu_check.json.
# Usage: benchmarks/gpu_check.sh [--device cuda|cpu] [--tiny] [--sections env,loss,...]
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export TQDM_DISABLE=1
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || PY=python
# every section has its own cap inside (sum 565 s); this is the outer guard
timeout -k 10 590 "$PY" benchmarks/gpu_check.py "$@"
rc=$?
[ -n "${OUT:-}" ] && [ -f "$OUT/gpu_check.json" ] && echo "results: $OUT/gpu_check.json"
exit $rc
