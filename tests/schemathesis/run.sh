#!/usr/bin/env bash
# Schemathesis (PyPI) against the gateway's OpenAPI document.
#
#   tests/schemathesis/run.sh http://HOST:PORT
#
# Reads http://HOST:PORT/api/openapi.json and runs every phase (coverage, fuzzing, stateful)
# against it with tests/schemathesis/schemathesis.toml: no server error, no response the
# document does not declare, no schema-valid request refused, no schema-violating request
# accepted (the exceptions the document cannot express are listed in that file, each with
# its reason). The server should run with an admin principal (e.g. auth.anonymous_role =
# "admin") so that every route is reached.
#
# Exit status: 0 nothing found, 1 schemathesis found a failure or an error,
#              2 the tool could not run (usage, install, endpoint, timeout).
#
# Environment (all optional):
#   SCHEMATHESIS_HOME      tool cache (default ~/.cache/voltage-schemathesis)
#   SCHEMATHESIS_PYTHON    Python >= 3.10 to build the venv with
#   SCHEMATHESIS_EXAMPLES  examples per operation and phase (default 25)
#   SCHEMATHESIS_SEED      a seed to reproduce a run (default: random, printed)
#   SCHEMATHESIS_TIMEOUT   seconds for the whole run (default 300; about 30 s are needed)
#   SCHEMATHESIS_VERSION   pinned tool version (default 4.32.5)
set -euo pipefail

die() { echo "schemathesis: ERROR: $*" >&2; exit 2; }

if [ $# -ne 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
BASE=${1%/}
[[ "$BASE" =~ ^http://(127\.[0-9.]+|\[::1\]|localhost):[0-9]+$ ]] \
    || die "give http://HOST:PORT on a loopback address (got '$1')"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=${SCHEMATHESIS_VERSION:-4.32.5}
HOME_DIR=${SCHEMATHESIS_HOME:-${HOME:-/root}/.cache/voltage-schemathesis}
VENV=$HOME_DIR/venv-$VERSION
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-25}
RUN_TIMEOUT=${SCHEMATHESIS_TIMEOUT:-300}
[[ "$EXAMPLES" =~ ^[1-9][0-9]*$ ]] || die "SCHEMATHESIS_EXAMPLES must be a positive integer"
[[ "$RUN_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "SCHEMATHESIS_TIMEOUT must be a positive number of seconds"

# shellcheck source=../tools/pyvenv.sh
. "$HERE/../tools/pyvenv.sh"
pyvenv_ensure schemathesis "$HOME_DIR" "$VENV" "schemathesis==$VERSION" schemathesis "${SCHEMATHESIS_PYTHON:-}"

"$VENV/bin/python" - "$BASE/api/openapi.json" <<'PY' || die "cannot read $BASE/api/openapi.json"
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    assert json.load(r)["openapi"].startswith("3.")
PY

args=(run "$BASE/api/openapi.json" --max-examples "$EXAMPLES" --no-color
      --request-timeout 10 --workers 1)
# One worker: with several, hypothesis 6's lambda-source cache races and reports
# "Runtime Error" for operations the server answered correctly.
[ -n "${SCHEMATHESIS_SEED:-}" ] && args+=(--seed "$SCHEMATHESIS_SEED")

echo "schemathesis: $VERSION against $BASE ($EXAMPLES examples per operation)" >&2
rc=0
timeout --kill-after=10 "$RUN_TIMEOUT" \
    "$VENV/bin/st" --config-file "$HERE/schemathesis.toml" "${args[@]}" || rc=$?
case "$rc" in
    0) exit 0 ;;
    124|137) die "run did not finish within ${RUN_TIMEOUT}s" ;;
    *) exit 1 ;;
esac
