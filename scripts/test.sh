#!/usr/bin/env bash
# The test command (README, `make test`, CI): unit, integration and end-to-end suites on
# SQLite and on PostgreSQL. Uses CLOUDGRPC_TEST_PG_URL if set, otherwise starts a
# throwaway PostgreSQL cluster for the run and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "no virtualenv at $VENV: run 'make install' first" >&2; exit 1; }
"$PY" proto/generate.py --check
"$VENV/bin/ruff" check .
pgdir=""
if [ -z "${CLOUDGRPC_TEST_PG_URL:-}" ]; then
  pgdir=$(mktemp -d /tmp/cloudgrpc-pg.XXXXXX)
  CLOUDGRPC_TEST_PG_URL=$(scripts/postgres-throwaway.sh start "$pgdir")
  export CLOUDGRPC_TEST_PG_URL
  trap 'scripts/postgres-throwaway.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
fi
export CLOUDGRPC_REQUIRE_PG=1
export PYTHON_KEYRING_BACKEND=${PYTHON_KEYRING_BACKEND:-keyrings.alt.file.PlaintextKeyring}
# The slowest tests are listed at the end, so the run's time budget (25 minutes) can be watched.
"$PY" -m pytest -q -p no:cacheprovider --durations=30 "$@"
