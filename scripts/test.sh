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
# The slowest tests are listed at the end of each pass, so the run's time budget (25 minutes)
# can be watched.
if [ "$#" -gt 0 ]; then  # chosen tests: one plain pass
  exec "$PY" -m pytest -q -p no:cacheprovider --durations=30 "$@"
fi
# The whole suite in two passes. Most tests wait on the processes they start, so two
# pytest-xdist workers (a test module stays on one worker: its shared cluster is started
# once) halve the time on two cores; each worker takes server ports from its own range
# (tests/cluster.py free_port). The FUSE mount tests then run alone: beside another worker
# their mounts were seen to vanish mid-test, and their timings want the machine to themselves.
WORKERS=${TEST_WORKERS:-2}
status=0
"$PY" -m pytest -q -p no:cacheprovider --durations=20 -n "$WORKERS" --dist loadfile \
  --ignore=tests/mount || status=$?
"$PY" -m pytest -q -p no:cacheprovider --durations=10 tests/mount || status=$?
exit "$status"
