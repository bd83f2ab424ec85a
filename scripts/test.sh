#!/usr/bin/env bash
# Runs every test of wsgate on a fresh machine (Rust, Python 3.11 and Node 20 present):
#   1. builds the workspace once (release), then runs the Rust unit and crate tests;
#   2. runs, in parallel, the end-to-end suite (tests/integration: real binaries, Python `websockets`)
#      and the Autobahn|Testsuite comparison (tests/autobahn: node `ws` echo, direct vs through wsgate);
#   3. then a seconds-long smoke of the benchmark comparison (scripts/bench-compare.py --quick: nginx,
#      HAProxy, wsgate and the direct echo backend), which checks the tooling, never a timing.
# Each suite installs what it needs itself, idempotently. Logs: target/test-logs/.
#   scripts/test.sh            CI set (Autobahn cases 1-10, 12.1, 13.1)
#   AUTOBAHN_ALL=1 scripts/test.sh   all 517 Autobahn cases
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
logs="$repo/target/test-logs"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need patch; then
    echo "==> installing Debian package: patch (Autobahn's setup applies a patch)"
    apt-get update -qq && apt-get install -y -qq patch >/dev/null
fi
if ! need openssl || ! need keytool || ! need curl; then
    echo "==> installing Debian packages: openssl, default-jre-headless (the TLS tests make PKCS#12 keystores with them), curl (a real client of the login, limit and registry tests)"
    apt-get update -qq && apt-get install -y -qq openssl default-jre-headless curl >/dev/null
fi

echo "==> cargo build --release"
cargo build --release --workspace --locked
echo "==> cargo test --release"
cargo test --release --workspace --locked

mkdir -p "$logs"
autobahn_args=()
[ "${AUTOBAHN_ALL:-0}" = 1 ] && autobahn_args+=(--all)

echo "==> end-to-end suite and Autobahn conformance, in parallel (logs in $logs)"
tests/integration/run.sh >"$logs/integration.log" 2>&1 &
integration=$!
tests/autobahn/run.sh "${autobahn_args[@]}" >"$logs/autobahn.log" 2>&1 &
autobahn=$!

status=0
wait "$integration" || status=$?
autobahn_status=0
wait "$autobahn" || autobahn_status=$?

echo "==> benchmark smoke (scripts/bench-compare.py --quick)"
bench_status=0
python3 scripts/bench-compare.py --quick --rounds 1 --no-build >"$logs/bench-smoke.log" 2>&1 || bench_status=$?

echo "==> benchmark smoke (exit $bench_status)"
cat "$logs/bench-smoke.log"
echo "==> Autobahn conformance (exit $autobahn_status)"
cat "$logs/autobahn.log"
echo "==> end-to-end suite (exit $status)"
cat "$logs/integration.log"

if [ "$status" -ne 0 ] || [ "$autobahn_status" -ne 0 ] || [ "$bench_status" -ne 0 ]; then
    echo "==> FAILED: end-to-end exit $status, Autobahn exit $autobahn_status, benchmark smoke exit $bench_status"
    exit 1
fi
echo "==> all tests passed"
