#!/usr/bin/env bash
# Autobahn WebSocket conformance (fuzzing client) against an echo endpoint.
#
#   tests/autobahn/run.sh HOST:PORT PATH        e.g.  run.sh 127.0.0.1:8080 /ws/echo
#
# Runs Autobahn cases 1.* 2.* 3.* 4.* 5.* 6.* 7.* 10.* (no 9.* performance,
# no 12/13 compression) against ws://HOST:PORT/PATH with kosoku (PyPI), which
# drives Autobahn's own case files from a Rust runner under Python 3. The
# server at PATH must echo every text/binary message back.
#
# Exit status: 0 all cases passed, 1 at least one case FAILED,
#              2 the tool could not run (usage, install, endpoint, timeout).
#
# Environment (all optional):
#   AUTOBAHN_HOME         tool cache (default ~/.cache/voltage-autobahn); the
#                         venv is installed there once and reused
#   AUTOBAHN_OUT          report directory (default: a new mktemp dir)
#   AUTOBAHN_PYTHON       Python >= 3.10 to build the venv with
#   AUTOBAHN_CASES        case globs, space-separated (default: the set above;
#                         with any other value the expected-cases check is off)
#   AUTOBAHN_PARALLELISM  cases run at once (default 1)
#   AUTOBAHN_TIMEOUT      seconds for the whole run (default 300; a correct
#                         server needs about 10 s)
#   KOSOKU_VERSION        pinned tool version (default 0.1.0)
set -euo pipefail

die() { echo "autobahn: ERROR: $*" >&2; exit 2; }

if [ $# -lt 1 ] || [ $# -gt 2 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

ADDR=$1
WSPATH=${2:-/}
WSPATH=/${WSPATH#/}
case "$ADDR" in
    *://*) die "give HOST:PORT, not a URL (got '$ADDR')" ;;
    *:*) ;;
    *) die "give HOST:PORT (got '$ADDR')" ;;
esac
PORT=${ADDR##*:}
HOST=${ADDR%:*}
HOST=${HOST#[}
HOST=${HOST%]}
[[ "$PORT" =~ ^[0-9]+$ ]] || die "bad port in '$ADDR'"
URL="ws://$ADDR$WSPATH"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEFAULT_CASES="1.* 2.* 3.* 4.* 5.* 6.* 7.* 10.*"
CASES=${AUTOBAHN_CASES:-$DEFAULT_CASES}
KOSOKU_VERSION=${KOSOKU_VERSION:-0.1.0}
AUTOBAHN_HOME=${AUTOBAHN_HOME:-${HOME:-/root}/.cache/voltage-autobahn}
VENV=$AUTOBAHN_HOME/venv-kosoku-$KOSOKU_VERSION
PARALLELISM=${AUTOBAHN_PARALLELISM:-1}
RUN_TIMEOUT=${AUTOBAHN_TIMEOUT:-300}
[[ "$RUN_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "AUTOBAHN_TIMEOUT must be a positive number of seconds"
[[ "$PARALLELISM" =~ ^[1-9][0-9]*$ ]] || die "AUTOBAHN_PARALLELISM must be a positive integer"

# ---------------------------------------------------------------- install ---

# shellcheck source=../tools/pyvenv.sh
. "$HERE/../tools/pyvenv.sh"
pyvenv_ensure autobahn "$AUTOBAHN_HOME" "$VENV" "kosoku==$KOSOKU_VERSION" kosoku "${AUTOBAHN_PYTHON:-}"
[ -x "$VENV/bin/kosoku" ] || die "$VENV/bin/kosoku missing after install"

# -------------------------------------------------------------------- run ---

# shellcheck disable=SC2016  # $1/$2 expand in the inner shell
if ! timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$HOST" "$PORT" 2>/dev/null; then
    die "cannot connect to $HOST:$PORT"
fi

if [ -n "${AUTOBAHN_OUT:-}" ]; then
    OUT=$AUTOBAHN_OUT
    mkdir -p "$OUT"
else
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/autobahn.XXXXXX")
fi
REPORT=$OUT/report
rm -rf "$REPORT" "$OUT/precheck"

# Precheck: one trivial case (1.1.1, empty text echo), bounded, so that a
# wrong PATH or a server that never completes the opening handshake fails fast
# with a clear message (kosoku itself has no opening-handshake timeout). Only
# a case that could not run (ERROR) stops here; a wrong echo is left to the
# full run, which reports it as FAILED.
PRE_TIMEOUT=$(( RUN_TIMEOUT < 30 ? RUN_TIMEOUT : 30 ))
rc=0
timeout --kill-after=5 "$PRE_TIMEOUT" \
    "$VENV/bin/kosoku" "$URL" -i 1.1.1 -o "$OUT/precheck" >"$OUT/precheck.log" 2>&1 || rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    die "no WebSocket opening handshake from $URL within ${PRE_TIMEOUT}s"
fi
if [ ! -f "$OUT/precheck/index.json" ] || grep -q '"behavior": "ERROR"' "$OUT/precheck/index.json"; then
    cat "$OUT/precheck.log" >&2
    die "precheck (case 1.1.1) could not run against $URL"
fi

args=()
set -f
for c in $CASES; do args+=(-i "$c"); done
set +f

echo "autobahn: running cases [$CASES] against $URL (kosoku $KOSOKU_VERSION, log: $OUT/kosoku.log)" >&2
start=$(date +%s)
rc=0
timeout --kill-after=10 "$RUN_TIMEOUT" \
    "$VENV/bin/kosoku" "$URL" "${args[@]}" -p "$PARALLELISM" -o "$REPORT" \
    >"$OUT/kosoku.log" 2>&1 || rc=$?
echo "autobahn: kosoku exited $rc after $(( $(date +%s) - start ))s" >&2
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    tail -n 20 "$OUT/kosoku.log" >&2
    die "run did not finish within ${RUN_TIMEOUT}s"
fi
if [ ! -f "$REPORT/index.json" ]; then
    tail -n 40 "$OUT/kosoku.log" >&2
    die "kosoku wrote no report (exit $rc)"
fi

sum_args=("$REPORT" --url "$URL")
if [ "$CASES" = "$DEFAULT_CASES" ]; then
    sum_args+=(--expected "$HERE/expected-cases.txt")
fi
status=0
"$VENV/bin/python" "$HERE/summarize.py" "${sum_args[@]}" || status=$?

# kosoku exits 1 when a case did not pass, 0 otherwise; anything else is a crash.
if [ "$status" = 0 ] && [ "$rc" != 0 ]; then
    tail -n 40 "$OUT/kosoku.log" >&2
    die "kosoku exited $rc although the report shows no failure"
fi
exit "$status"
