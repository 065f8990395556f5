#!/usr/bin/env bash
# The two commands of the README:
#   ./mixplan.sh app    set up (first time), then open the app on the bundled runs.duckdb
#   ./mixplan.sh test   set up (first time), then run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
case "${1:-}" in
  app)
    shift
    MIXPLAN_SKIP_BROWSER=1 MIXPLAN_EXTRAS="${MIXPLAN_EXTRAS:-cluster}" scripts/setup.sh
    exec "$PY" -m engine.cli app --db runs.duckdb "$@"
    ;;
  test)
    shift
    scripts/setup.sh
    exec "$PY" -m pytest -q "$@"
    ;;
  *)
    echo "usage: ./mixplan.sh app [--port N] | ./mixplan.sh test [pytest args]" >&2
    exit 2
    ;;
esac
