#!/usr/bin/env bash
# Run the whole test suite (unit, service over loopback gRPC, end to end on a local Ray cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
