#!/usr/bin/env bash
# Installs what the gateway's demo, tests or CI need on Debian/Ubuntu — only what is missing,
# so a machine that already has Node from elsewhere (nodesource, nvm) keeps it: a plain
# `apt-get install nodejs npm` there fails with "held broken packages".
#
#   ./setup.sh demo   redis-server, influxd (the demo's private Redis and InfluxDB)
#   ./setup.sh test   + chromium, node/npm, python3 with venv, nftables, redis-sentinel, haproxy
#                     (the test command)
#   ./setup.sh ci     + g++ (libFuzzer for fuzz/run.sh)
#
# As root it runs apt-get itself; otherwise through sudo when there is one. Exits 1, naming
# what is missing, when it cannot install. README's two commands and .ci/run call it.
set -euo pipefail

what=${1:-test}
case "$what" in demo | test | ci) ;; *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

have() { command -v "$1" >/dev/null 2>&1; }

# Debian package -> the command that shows it is there.
need=()
want() { have "$2" || need+=("$1"); }
want redis-server redis-server
want redis-tools redis-cli
want influxdb influxd
if [ "$what" != demo ]; then
    have chromium || have chromium-browser || need+=(chromium)
    # Node from any source will do; Debian's only when there is none.
    if ! have node || ! have npm; then
        have node || need+=(nodejs)
        have npm || need+=(npm)
    fi
    # The Autobahn and schemathesis runners make venvs: python3 with ensurepip.
    if ! have python3; then
        need+=(python3 python3-venv)
    elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        need+=(python3-venv)
    fi
    # The half-open TCP fault test cuts a connection with nft (it skips without).
    want nftables nft
    # The redundancy tests: a Sentinel-watched Redis, gateways behind HAProxy.
    want redis-sentinel redis-sentinel
    want haproxy haproxy
fi
if [ "$what" = ci ]; then
    want g++ c++
fi

if [ ${#need[@]} -eq 0 ]; then
    echo "setup: everything for '$what' is installed"
    exit 0
fi

if [ "$(id -u)" = 0 ]; then
    as_root=()
elif have sudo; then
    as_root=(sudo)
else
    echo "setup: missing ${need[*]}; run as root or install sudo" >&2
    exit 1
fi
if ! have apt-get; then
    echo "setup: missing ${need[*]}; this script installs with apt-get (Debian/Ubuntu)" >&2
    exit 1
fi

echo "setup: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
if ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/tmp/voltage-setup-apt.log 2>&1; then
    tail -n 20 /tmp/voltage-setup-apt.log >&2
    # Ubuntu ships the browser as chromium-browser.
    if [[ " ${need[*]} " == *" chromium "* ]]; then
        need=("${need[@]/chromium/chromium-browser}")
        echo "setup: retrying with ${need[*]}"
        "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" \
            >/tmp/voltage-setup-apt.log 2>&1 || { tail -n 20 /tmp/voltage-setup-apt.log >&2; exit 1; }
    else
        exit 1
    fi
fi
echo "setup: installed ${need[*]}"
