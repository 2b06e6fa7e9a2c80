#!/usr/bin/env bash
# The operator page in Debian's chromium, headless, driven by playwright-core (npm; no browser
# download) — tests/browser/run.mjs does the steps.
#
#   tests/browser/run.sh OPEN_URL LOCKED_URL OUT_DIR DEAD_URL
#
# Exit status: 0 every step passed, 1 a step failed, 2 the tool could not run (no node/npm
# or chromium, install failed). Installs playwright-core (pinned) into
# ~/.cache/voltage-playwright once; on a fresh Debian as root, apt-get installs nodejs, npm
# and chromium when missing.
#
# Environment: PLAYWRIGHT_VERSION (default 1.57.0), VOLTAGE_PLAYWRIGHT_HOME, CHROMIUM.
set -euo pipefail

die() { echo "browser: ERROR: $*" >&2; exit 2; }
[ $# -eq 4 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=${PLAYWRIGHT_VERSION:-1.57.0}
HOME_DIR=${VOLTAGE_PLAYWRIGHT_HOME:-${HOME:-/root}/.cache/voltage-playwright}/$VERSION
mkdir -p "$HOME_DIR"

apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    echo "browser: apt-get install $* (log: $HOME_DIR/apt.log)" >&2
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
        >"$HOME_DIR/apt.log" 2>&1 || { tail -n 20 "$HOME_DIR/apt.log" >&2; return 1; }
}

CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ]; then
    apt_install chromium || die "chromium not found (apt-get install chromium)"
    CHROMIUM=$(command -v chromium) || die "chromium not found after apt-get"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm || die "node and npm not found (apt-get install nodejs npm)"
fi

# One install, shared by concurrent runs.
exec 9>"$HOME_DIR/.install.lock"
flock 9
if [ ! -f "$HOME_DIR/.ok" ]; then
    echo "browser: installing playwright-core@$VERSION into $HOME_DIR" >&2
    (cd "$HOME_DIR" && npm install --no-audit --no-fund --silent "playwright-core@$VERSION" >&2) \
        || die "npm install playwright-core@$VERSION failed"
    touch "$HOME_DIR/.ok"
fi
exec 9>&-

# run.mjs resolves playwright-core from next to it: run a copy inside the install.
cp "$HERE/run.mjs" "$HOME_DIR/run.mjs"
CHROMIUM="$CHROMIUM" timeout --kill-after=10 300 node "$HOME_DIR/run.mjs" "$@"
