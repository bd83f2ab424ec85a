#!/usr/bin/env bash
# Runs the wsgate end-to-end suite against target/release (or $WSGATE_BIN_DIR).
# Extra arguments go to pytest, e.g. `tests/integration/run.sh -k relay -x`, or
# `tests/integration/run.sh tests/integration/test_relay.py` for one file.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${WSGATE_VENV:-$repo/.venv-test}"

"$here/setup.sh" || exit $?

cd "$repo"
export PYTHONDONTWRITEBYTECODE=1
# A first argument naming a test file or node id selects it instead of the whole suite.
if [ $# -gt 0 ] && [ -e "${1%%::*}" ]; then
    exec "$venv/bin/python" -m pytest -q "$@"
fi
exec "$venv/bin/python" -m pytest -q "$here" "$@"
