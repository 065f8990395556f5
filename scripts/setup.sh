#!/usr/bin/env bash
# Install mixplan and everything its tests need into the current Python (idempotent).
# - keeps an existing torch (e.g. your CUDA build); installs the CPU build torch==2.13.0 where none is present
# - installs Debian's chromium for the browser tests where apt-get is available and it is missing
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] no torch found: installing the CPU build torch==2.13.0"
  "$PY" -m pip install -q "torch==2.13.0"
fi
extras="${MIXPLAN_EXTRAS:-all}"
"$PY" -m pip install -q -e ".[${extras}]"
if [ "${MIXPLAN_SKIP_BROWSER:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "[setup] installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "[setup] could not install chromium: the browser tests will be skipped"
  else
    echo "[setup] chromium not found and apt-get unavailable: the browser tests will be skipped"
  fi
fi
