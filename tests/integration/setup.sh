#!/usr/bin/env bash
# Creates (idempotently) the virtualenv for the integration suite and installs
# tests/integration/requirements.txt into it, then the node packages of tests/integration/eureka
# (eureka-js-client, from its package-lock.json) when they are missing.
#   WSGATE_VENV   where the venv lives   [<repo>/.venv-test]
#   PYTHON        interpreter to create it with [python3]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${WSGATE_VENV:-$repo/.venv-test}"
req="$here/requirements.txt"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "setup.sh: creating venv at $venv" >&2
    "$python" -m venv "$venv"
fi

# npm ci only when the locked packages are not installed yet (same rule as tests/autobahn/run.sh).
eureka="$here/eureka"
if [ ! -f "$eureka/node_modules/eureka-js-client/package.json" ]; then
    command -v npm >/dev/null || { echo "setup.sh: npm not found (needed for eureka-js-client)" >&2; exit 1; }
    echo "setup.sh: npm ci in $eureka" >&2
    (cd "$eureka" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

# The stamp holds the requirements that were installed last; reinstall only
# when they changed or when the installed set no longer satisfies them.
stamp="$venv/.wsgate-requirements"
if [ -f "$stamp" ] && cmp -s "$stamp" "$req" \
    && "$venv/bin/python" - "$req" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        if version(name.strip()) != want.strip():
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
    exit 0
fi

echo "setup.sh: installing $req into $venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
