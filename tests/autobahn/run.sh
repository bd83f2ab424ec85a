#!/usr/bin/env bash
# Autobahn|Testsuite conformance of wsgate as a transparent relay.
#
#   tests/autobahn/run.sh [--all] [--self-test | --direct-only]
#
# Runs the Autobahn fuzzing client twice, in parallel, against the reference
# echo server (node `ws` 8.23, ../shared/autobahn/echo_ws.js): once directly and
# once through `wsgate serve` (ws://127.0.0.1:PORT/echo/ws/v1/), then compares
# the two reports case by case (behavior, behaviorClose, remote close code).
# A transparent relay must score exactly what the server scores directly.
#
#   --all          all 517 cases (["*"]) instead of the CI set
#   --self-test    negative control: the "through" side is ../shared/autobahn/bad_echo.py
#                  instead of wsgate; passes only if the comparison finds differences
#   --direct-only  plumbing check: run the direct side only (no gateway needed)
#
# Environment:
#   AUTOBAHN_CASES          JSON list of case patterns (default, the CI set: 1.* to 10.*,
#                           12.1.*, 13.1.*, i.e. 337 cases; --all wins over it)
#   AUTOBAHN_EXCLUDE        passed to ../shared/autobahn/run.sh
#   AUTOBAHN_OUT            output dir (default <repo>/target/autobahn): autobahn-env/ (venv),
#                           direct/ and through/ (reports), wsgate.yaml, *.log
#   WSGATE_BIN_DIR          where `wsgate` is (default <repo>/target/release)
#   AUTOBAHN_TOTAL_TIMEOUT  overall limit in seconds (default 1200; 3600 with --all)
#
# Output: both run summaries, then `autobahn: through wsgate identical to direct on N cases`
# (exit 0) or the differing cases with both verdicts (exit 1). Exit 2: setup problem or the
# direct run produced no usable report; 124: overall timeout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

ALL=0 MODE=gateway
for arg in "$@"; do
  case "$arg" in
    --all) ALL=1 ;;
    --self-test) MODE=self-test ;;
    --direct-only) MODE=direct-only ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

# Overall bound: re-run this script under `timeout`; the EXIT trap below cleans up.
if [ -z "${WSGATE_AUTOBAHN_INNER:-}" ]; then
  total="${AUTOBAHN_TOTAL_TIMEOUT:-$([ "$ALL" = 1 ] && echo 3600 || echo 1200)}"
  set +e
  WSGATE_AUTOBAHN_INNER=1 AUTOBAHN_TOTAL_TIMEOUT="$total" timeout -k 20 "$total" "$0" "$@"
  rc=$?
  set -e
  [ "$rc" -eq 124 ] && echo "autobahn: overall timeout after ${total}s (AUTOBAHN_TOTAL_TIMEOUT)"
  exit "$rc"
fi

SHARED="$(cd "$REPO/../shared" 2>/dev/null && pwd)" || { echo "run.sh: $REPO/../shared not found" >&2; exit 2; }
AB="$SHARED/autobahn"
OUT="${AUTOBAHN_OUT:-$REPO/target/autobahn}"
BIN_DIR="${WSGATE_BIN_DIR:-$REPO/target/release}"
DEFAULT_CASES='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","8.*","9.*","10.*","12.1.*","13.1.*"]'
if [ "$ALL" = 1 ]; then CASES='["*"]'; else CASES="${AUTOBAHN_CASES:-$DEFAULT_CASES}"; fi
# Each wstest run gets the overall budget less a margin for setup and comparison.
RUN_TIMEOUT=$(( ${AUTOBAHN_TOTAL_TIMEOUT:-1200} - 90 ))
[ "$RUN_TIMEOUT" -ge 60 ] || RUN_TIMEOUT=60

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
START=$(date +%s)

# ---- child processes: each in its own session/process group, killed on exit ----
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
  done
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "run.sh: $*" >&2; exit 2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_accepting PORT PID SECONDS: until 127.0.0.1:PORT accepts; fails if PID died.
wait_accepting() {
  local port="$1" pid="$2" deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# start_on_free_port NAME LOG CMD...: CMD gets the port appended; retries if it cannot
# bind. Sets PORT and LAST_PID.
start_on_free_port() {
  local name="$1" log="$2" attempt pid port
  shift 2
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    setsid "$@" "$port" >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if wait_accepting "$port" "$pid" 15; then
      PORT="$port" LAST_PID="$pid"
      return 0
    fi
    kill -TERM -- "-$pid" 2>/dev/null || true
    echo "run.sh: $name did not come up on port $port (attempt $attempt): $(tail -n 3 "$log" | tr '\n' ' ')" >&2
  done
  die "$name could not be started; see $log"
}

# ---- setup (idempotent) ----
command -v node >/dev/null || die "node not found"
command -v python3 >/dev/null || die "python3 not found"
if [ ! -f "$HERE/node_modules/ws/package.json" ]; then
  command -v npm >/dev/null || die "npm not found"
  echo "==> npm ci (ws) in $HERE" >&2
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm ci failed"
fi
VENV="$OUT/autobahn-env/venv"
if [ ! -x "$VENV/bin/wstest" ]; then
  echo "==> building the Autobahn venv in $OUT/autobahn-env" >&2
  "$AB/setup.sh" "$OUT/autobahn-env" >"$OUT/autobahn-setup.log" 2>&1 \
    || { tail -n 20 "$OUT/autobahn-setup.log" >&2; die "autobahn setup failed; see $OUT/autobahn-setup.log"; }
fi

# ---- reference echo server ----
NODE_PATH="$HERE/node_modules" start_on_free_port "echo server (node ws)" "$OUT/echo_ws.log" \
  node "$AB/echo_ws.js"
ECHO_PORT="$PORT"
DIRECT_URL="ws://127.0.0.1:$ECHO_PORT/"

# ---- the "through" side ----
THROUGH_URL=""
case "$MODE" in
  gateway)
    WSGATE="$BIN_DIR/wsgate"
    [ -x "$WSGATE" ] || die "$WSGATE not found (cargo build --release, or set WSGATE_BIN_DIR)"
    CFG="$OUT/wsgate.yaml"
    cat >"$CFG" <<EOF
server:
  address: 127.0.0.1
  port: 0
  ssl: { enabled: false }
  webSocket:
    supportedProtocols: "*"
    maxFrameSize: 64MiB
discovery:
  embedded: { enabled: false }
services:
  - serviceId: echo
    instances:
      - { host: 127.0.0.1, port: $ECHO_PORT }
    metadata:
      apiml.routes.ws_v1.gatewayUrl: ws/v1
      apiml.routes.ws_v1.serviceUrl: /
EOF
    setsid "$WSGATE" serve --config "$CFG" >"$OUT/wsgate.stdout" 2>"$OUT/wsgate.log" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_PORT=""
    deadline=$(( $(date +%s) + 30 ))
    while [ -z "$GW_PORT" ] && [ "$(date +%s)" -lt "$deadline" ]; do
      GW_PORT="$(sed -n 's/^wsgate listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$OUT/wsgate.stdout" | head -n 1)"
      [ -n "$GW_PORT" ] && break
      kill -0 "$GW_PID" 2>/dev/null || { tail -n 20 "$OUT/wsgate.log" >&2; die "wsgate exited before listening; see $OUT/wsgate.log"; }
      sleep 0.1
    done
    [ -n "$GW_PORT" ] || die "wsgate printed no 'wsgate listening on 127.0.0.1:PORT' line within 30s; see $OUT/wsgate.stdout, $OUT/wsgate.log"
    THROUGH_URL="ws://127.0.0.1:$GW_PORT/echo/ws/v1/"
    ;;
  self-test)
    start_on_free_port "bad_echo.py" "$OUT/bad_echo.log" python3 "$AB/bad_echo.py"
    THROUGH_URL="ws://127.0.0.1:$PORT/"
    ;;
esac

# ---- the two runs, in parallel ----
# run_side NAME URL: reports in $OUT/NAME; summary on $OUT/NAME.summary, details on $OUT/NAME.stderr
run_side() {
  local name="$1" url="$2"
  rm -rf "${OUT:?}/$name" "$OUT/$name.summary" "$OUT/$name.stderr"
  AUTOBAHN_VENV="$VENV" AUTOBAHN_CASES="$CASES" AUTOBAHN_AGENT="$name" AUTOBAHN_TIMEOUT="$RUN_TIMEOUT" \
    setsid "$AB/run.sh" "$url" "$OUT/$name" >"$OUT/$name.summary" 2>"$OUT/$name.stderr" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

echo "==> cases $CASES" >&2
echo "==> direct:  $DIRECT_URL" >&2
run_side direct "$DIRECT_URL"
DIRECT_PID=$LAST_PID
if [ -n "$THROUGH_URL" ]; then
  echo "==> through: $THROUGH_URL ($MODE)" >&2
  run_side through "$THROUGH_URL"
  THROUGH_PID=$LAST_PID
fi

# run.sh exits 1 when a case FAILED, which may be legitimate for the direct run:
# only "no report" (2) matters here, and compare.py checks for that itself.
direct_rc=0
wait "$DIRECT_PID" || direct_rc=$?
through_rc=0
if [ -n "$THROUGH_URL" ]; then wait "$THROUGH_PID" || through_rc=$?; fi

show_side() {
  local label="$1" name="$2"
  echo "$label $(cat "$OUT/$name.summary" 2>/dev/null || true)"
  sed 's/^/    /' "$OUT/$name.stderr" 2>/dev/null || true
}
show_side "direct: " direct
if [ "$MODE" = direct-only ]; then
  echo "autobahn: direct only, $(( $(date +%s) - START ))s"
  [ "$direct_rc" -le 1 ] || exit 2
  exit 0
fi
show_side "through:" through

set +e
if [ "$MODE" = self-test ]; then
  "$VENV/bin/python" "$HERE/compare.py" "$OUT/direct" "$OUT/through" --expect-differences
  rc=$?
  [ "$rc" -eq 0 ] && echo "autobahn: self-test OK: the comparison detects a non-conformant server"
  [ "$rc" -eq 1 ] && echo "autobahn: self-test FAILED: bad_echo.py compared identical to the reference"
else
  "$VENV/bin/python" "$HERE/compare.py" "$OUT/direct" "$OUT/through"
  rc=$?
fi
set -e
echo "autobahn: done in $(( $(date +%s) - START ))s (reports: $OUT/direct/reports/servers/index.html, $OUT/through/reports/servers/index.html)" >&2
exit "$rc"
