#!/usr/bin/env bash
# The GPU check from the repository root, without installing the package (see gpu_check.py):
#   bash benchmarks/perf/gpu_check.sh                       # on the GPU machine → results/perf/gpu/
#   bash benchmarks/perf/gpu_check.sh --device cpu --smoke --out /tmp/gpu-smoke
# PYTHON picks the interpreter (default: python3); the check keeps to its --budget-s (8 min), and this
# wrapper stops it for good 60 s after that.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 540 "${PYTHON:-python3}" benchmarks/perf/gpu_check.py "$@"
