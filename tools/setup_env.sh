#!/usr/bin/env bash
# Idempotent environment set-up: .venv with the torch pair, this project (editable, dev extras) and
# detectron2. A second run checks what is there and returns in seconds.
#
# TORCH_SPEC overrides the torch pair (default: the pair this project's CI machines carry on disk).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
VENV=.venv
PIP="$VENV/bin/python -m pip"
STAMP="$VENV/.byol-bench-setup"
fingerprint=$( (echo "$TORCH_SPEC"; cat pyproject.toml tools/setup_env.sh tools/install_detectron2.py 2>/dev/null || true) | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ] && "$VENV/bin/python" -c "import torch, torchvision, zoo" 2>/dev/null; then
  echo "setup: .venv is up to date ($fingerprint)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
$PIP install -q --upgrade pip setuptools wheel
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  echo "setup: installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  $PIP install -q $TORCH_SPEC
fi
echo "setup: installing byol-bench (editable) with dev, slurm, analysis and perf extras"
$PIP install -q -e ".[dev,slurm,analysis,perf]"
if [ -f tools/install_detectron2.py ]; then
  "$VENV/bin/python" tools/install_detectron2.py
fi
echo "$fingerprint" > "$STAMP"
echo "setup: done"
