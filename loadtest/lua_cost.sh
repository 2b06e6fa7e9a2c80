#!/usr/bin/env bash
# Cost of comsrv_write_data (20 points) inside Redis: the library at git rev BASE (default
# the commit before alarms; 0cfd1f9 is the one before models, rules and forwarding) vs this
# tree's library when the points feed nothing, one alarm rule per point, and 5 models + 5 rules (thresholds never crossed: the steady state), driven by redis-benchmark
# on a private redis-server on loopback and timed by Redis itself; ROUNDS
# alternating rounds (default 5), medians and ratios printed. Usage: loadtest/lua_cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-d2c51fc}
ROUNDS=${ROUNDS:-5}
N=${N:-200000}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)
trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" --daemonize yes >/dev/null
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
git show "$BASE:lua/voltage.lua" > "$DIR/base.lua"
R="redis-cli -p $PORT"
VALUES=$(python3 -c 'import json; print(json.dumps({str(i): 20.5 + i for i in range(1, 21)}))')
load() { $R FLUSHALL >/dev/null; $R -x FUNCTION LOAD REPLACE < "$1" >/dev/null; }
rules() {
  for i in $(seq 1 20); do
    $R FCALL alarmsrv_rule_save 1 "alarm:rule:r$i" "{\"channel_id\":1001,\"data_type\":\"T\",\"point_id\":$i,\"operator\":\">\",\"threshold\":1e9}" >/dev/null
  done
}
# µs per call as Redis measures it (INFO commandstats, time inside FCALL): round trips and
# the client are left out.
bench() {
  $R CONFIG RESETSTAT >/dev/null
  redis-benchmark -p "$PORT" -n "$N" -c 4 -q FCALL comsrv_write_data 1 comsrv:1001:T "$VALUES" >/dev/null
  $R INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_fcall:.*usec_per_call=\([0-9.]*\).*/\1/p'
}
automation() {
  # Definitions may only read known channels.
  $R FCALL comsrv_write_data 1 comsrv:1001:T "$VALUES" >/dev/null
  for i in $(seq 1 5); do
    $R FCALL modsrv_model_save 1 "model:m$i" "{\"output\":{\"channel_id\":9100,\"point_id\":$i},\"op\":\"sum\",\"inputs\":[{\"channel_id\":1001,\"point_id\":$i},{\"channel_id\":1001,\"point_id\":$((i+5))}]}" >/dev/null
    $R FCALL rulesrv_rule_save 1 "rule:r$i" "{\"conditions\":[{\"channel_id\":1001,\"point_id\":$((i+10)),\"operator\":\">\",\"threshold\":1e9}],\"action\":{\"type\":\"event\"}}" >/dev/null
  done
}
declare -a B NR WR AU
for r in $(seq 1 "$ROUNDS"); do
  load "$DIR/base.lua"; B+=("$(bench)")
  load lua/voltage.lua; NR+=("$(bench)")
  load lua/voltage.lua; rules; WR+=("$(bench)")
  load lua/voltage.lua; automation; AU+=("$(bench)")
  echo "round $r: base ${B[-1]} us, none ${NR[-1]} us, 20 alarm rules ${WR[-1]} us, 5 models + 5 rules ${AU[-1]} us" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
mb=$(median "${B[@]}"); mn=$(median "${NR[@]}"); mw=$(median "${WR[@]}"); ma=$(median "${AU[@]}")
echo "comsrv_write_data, 20 points (median of $ROUNDS alternating rounds, $N calls each, Redis's own time per call):"
echo "  library at $BASE:                             $mb us/call"
echo "  this library, the points feed nothing:          $mn us/call   ratio $(ratio $mn $mb)"
echo "  this library, one alarm rule per point:         $mw us/call   ratio $(ratio $mw $mb)"
echo "  this library, 5 models + 5 rules read them:     $ma us/call   ratio $(ratio $ma $mb)"
