#!/usr/bin/env bash
# The first thing to run on a GPU machine: at most about 9 minutes on one H200 (each step has a time limit;
# they add up to 540 s). Runs the CUDA tests and the
# greedy-equality tests on the GPU, `specdec demo`, `specdec bench --compare-hf` with draft and target
# sharing the GPU (plain processes: no Ray needed), and the verify-time curve of the demo target and of a
# random ~1B Llama; then prints one summary and writes it to $OUT/gpu_check.json. Everything it runs
# leaves its log in $OUT (default gpu-check/; on the device tool, its $OUT comes back).
#
# Where `specdec` is not installed (a machine without network, with its own PyTorch and transformers), it
# unpacks what is missing from gpu-wheels/ (scripts/prepare_gpu_wheels.sh makes it; carry it along) and
# runs from this tree. Without a CUDA device it runs as a dry run on the CPU (the CUDA tests skip, and the
# 1B model is left out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
: > "$OUT/steps.txt"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"

if ! "$PY" -c "import specdec.orchestrator.cli" 2>/dev/null; then
  eval "$("$PY" scripts/gpu_env.py --wheels "${GPU_WHEELS:-gpu-wheels}" --into .gpu-env)"
fi
"$PY" - <<'PYTHON' 2>&1 | tee "$OUT/versions.txt"
import platform, torch, transformers, grpc, google.protobuf
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"transformers {transformers.__version__}, grpcio {grpc.__version__}, protobuf {google.protobuf.__version__}")
print(f"CUDA devices: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
PYTHON
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, record rc and seconds
  local name=$1 limit=$2 started=$SECONDS rc
  shift 2
  echo "gpu_check: $name (at most ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $((SECONDS - started))s" >> "$OUT/steps.txt"
  tail -3 "$OUT/$name.log"
}

"$PY" -m specdec.orchestrator.measure.gpu_report sample "$OUT/gpu-memory.json" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null' EXIT

step tests 210 "$PY" -m pytest tests/cuda tests/service/test_lossless_through_services.py tests/unit/services \
  -q -rs -p no:cacheprovider --import-mode=append
step demo 70 "$PY" -m specdec.orchestrator.cli demo --launcher processes --prompts 4 --max-new-tokens 64
step bench 150 "$PY" -m specdec.orchestrator.cli bench --compare-hf --launcher processes --prompts 6 \
  --max-new-tokens 64 --out "$OUT/bench"
if [ "$CUDA" = 1 ]; then
  step verify-curve 110 "$PY" -m specdec.orchestrator.cli verify-curve --random-llama-1b --compile off,reduce-overhead \
    --json "$OUT/verify_curve.json"
else
  step verify-curve 80 "$PY" -m specdec.orchestrator.cli verify-curve --repeats 5 --json "$OUT/verify_curve.json"
fi

kill $SAMPLER 2>/dev/null
"$PY" -m specdec.orchestrator.measure.gpu_report summarize "$OUT"
