#!/usr/bin/env bash
# The GPU check (scripts/device_check.py): one table, within 5 minutes. On the GPU machine
# jax with CUDA must be importable (its wheels can travel: /work/.library/device/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout 300 "$PY" scripts/device_check.py "$@"
