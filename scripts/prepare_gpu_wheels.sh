#!/usr/bin/env bash
# Run on a machine that reaches the package registries: download into gpu-wheels/ the wheels the GPU
# check machine needs (Python 3.12, x86_64 Linux, no network; it has PyTorch, transformers, accelerate,
# numpy, pyyaml, rich, matplotlib, prometheus-client and pytest, and lacks Ray, FastAPI, uvicorn, pydantic
# and cryptography): the HTTP API's stack, cryptography, and the gRPC stack at the versions the generated
# stubs need, with their dependencies, at the versions pyproject.toml asks for. Ray is not carried (79 MB
# alone); the check starts the services as plain processes. gpu-wheels/ is git-ignored: hand it to the
# device tool's `carry`. scripts/gpu_env.py unpacks on that machine what it lacks or has older.
#   GPU_PYTHON_VERSION (default 3.12): the target machine's Python.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-gpu-wheels}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
VERSION="${GPU_PYTHON_VERSION:-3.12}"
ABI="cp${VERSION/./}"
LIMIT_MIB=60  # the device tool carries 64 MiB in all; the working tree needs the rest

# The carried distributions, at pyproject.toml's bounds (one place says the versions).
mapfile -t REQUIREMENTS < <("$PY" - <<'PYTHON'
import re, tomllib
wanted = {"grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf", "fastapi", "uvicorn", "pydantic",
          "cryptography", "prometheus-client"}
for requirement in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower() in wanted:
        print(requirement)
print("pytest-timeout>=2.3")
PYTHON
)

rm -rf "$OUT"
mkdir -p "$OUT"
# with their dependencies (none of these needs torch)
"$PY" -m pip download --quiet --dest "$OUT" --only-binary=:all: --python-version "$VERSION" \
  --implementation cp --abi "$ABI" --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform linux_x86_64 --platform any "${REQUIREMENTS[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
SIZE_MIB=$(( $(du -sk "$OUT" | cut -f1) / 1024 ))
ls "$OUT"
echo "prepare_gpu_wheels: $(ls "$OUT" | wc -l) wheels, ${SIZE_MIB} MiB in $OUT (for Python $VERSION)"
if [ "$SIZE_MIB" -gt "$LIMIT_MIB" ]; then
  echo "prepare_gpu_wheels: over ${LIMIT_MIB} MiB: the device tool would not carry them with the tree" >&2
  exit 1
fi
