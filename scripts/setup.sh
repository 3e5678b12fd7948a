#!/usr/bin/env bash
# Create .venv and install specdec into it, with the PyTorch build that fits this machine:
# a CUDA build where an NVIDIA GPU is visible, the CPU-only build everywhere else (never CUDA wheels
# on a machine without a GPU). Safe to run again; it reuses .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PYTHON="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }

if .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: torch $(.venv/bin/python -c 'import torch; print(torch.__version__)') already installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found; installing the CUDA build of torch ${TORCH_VERSION}"
  pip install -q "torch==${TORCH_VERSION}"
else
  echo "setup: no GPU; installing the CPU-only build of torch ${TORCH_VERSION}"
  # A local or mirrored +cpu wheel first (pip's find-links / index); else PyTorch's CPU index.
  pip install -q "torch==${TORCH_VERSION}+cpu" 2>/dev/null \
    || pip install -q "torch==${TORCH_VERSION}" --index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
fi

pip install -q -e ".[dev,ray]"
echo "setup: done; the specdec command is .venv/bin/specdec"
