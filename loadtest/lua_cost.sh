#!/usr/bin/env bash
# Cost of comsrv_write_data (20 points) inside Redis: the library at git rev BASE (default
# 0cfd1f9, the one before models, rules and forwarding) vs this tree's library when the
# points feed nothing, one alarm rule per point, and 5 models + 5 rules (thresholds never
# crossed: the steady state). Each variant has its own private redis-server on loopback
# (pinned to CPU 1, redis-benchmark to CPU 0); the variants are driven in short interleaved
# slices (SLICES rounds of N calls each), so that the host's slow drifts, which dominate
# on a shared VM, hit every variant alike. Redis times the calls itself (INFO commandstats:
# time inside FCALL, round trips and the client left out). Usage: loadtest/lua_cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-0cfd1f9}
SLICES=${SLICES:-20}
N=${N:-4000}
VALUES=$(python3 -c 'import json; print(json.dumps({str(i): 20.5 + i for i in range(1, 21)}))')
DIR=$(mktemp -d)
git show "$BASE:lua/voltage.lua" > "$DIR/base.lua"
NAMES=(base none alarms automation)
declare -A PORT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  for v in "${NAMES[@]}"; do
    [ -n "${PORT[$v]:-}" ] && redis-cli -p "${PORT[$v]}" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$DIR"
}
trap cleanup EXIT
pin() { if [ "$(nproc)" -ge 2 ]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
for v in "${NAMES[@]}"; do
  PORT[$v]=$(free_port)
  pin 1 redis-server --port "${PORT[$v]}" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$DIR" --daemonize yes >/dev/null
done
for v in "${NAMES[@]}"; do
  R="redis-cli -p ${PORT[$v]}"
  for _ in $(seq 50); do $R ping >/dev/null 2>&1 && break; sleep 0.1; done
  if [ "$v" = base ]; then lib="$DIR/base.lua"; else lib=lua/voltage.lua; fi
  $R -x FUNCTION LOAD REPLACE < "$lib" >/dev/null
  # Definitions may only read known channels.
  $R FCALL comsrv_write_data 1 comsrv:1001:T "$VALUES" >/dev/null
  case $v in
    alarms)
      for i in $(seq 1 20); do
        $R FCALL alarmsrv_rule_save 1 "alarm:rule:r$i" "{\"channel_id\":1001,\"data_type\":\"T\",\"point_id\":$i,\"operator\":\">\",\"threshold\":1e9}" >/dev/null
      done ;;
    automation)
      for i in $(seq 1 5); do
        $R FCALL modsrv_model_save 1 "model:m$i" "{\"output\":{\"channel_id\":9100,\"point_id\":$i},\"op\":\"sum\",\"inputs\":[{\"channel_id\":1001,\"point_id\":$i},{\"channel_id\":1001,\"point_id\":$((i+5))}]}" >/dev/null
        $R FCALL rulesrv_rule_save 1 "rule:r$i" "{\"conditions\":[{\"channel_id\":1001,\"point_id\":$((i+10)),\"operator\":\">\",\"threshold\":1e9}],\"action\":{\"type\":\"event\"}}" >/dev/null
      done ;;
  esac
  $R CONFIG RESETSTAT >/dev/null
done
for s in $(seq 1 "$SLICES"); do
  for v in "${NAMES[@]}"; do
    pin 0 redis-benchmark -p "${PORT[$v]}" -n "$N" -c 2 -q \
      FCALL comsrv_write_data 1 comsrv:1001:T "$VALUES" >/dev/null
  done
done
declare -A US
for v in "${NAMES[@]}"; do
  US[$v]=$(redis-cli -p "${PORT[$v]}" INFO commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_fcall:.*usec_per_call=\([0-9.]*\).*/\1/p')
done
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo "comsrv_write_data, 20 points ($SLICES interleaved slices of $N calls per variant, Redis's own time per call):"
echo "  library at $BASE:                              ${US[base]} us/call"
echo "  this library, the points feed nothing:          ${US[none]} us/call   ratio $(ratio "${US[none]}" "${US[base]}")"
echo "  this library, one alarm rule per point:         ${US[alarms]} us/call   ratio $(ratio "${US[alarms]}" "${US[base]}")"
echo "  this library, 5 models + 5 rules read them:     ${US[automation]} us/call   ratio $(ratio "${US[automation]}" "${US[base]}")"
