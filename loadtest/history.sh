#!/usr/bin/env bash
# The history targets (issue 13) on this machine, history on vs off in the same run. Loopback
# only; every run is bounded; everything it starts is stopped on exit. Usage (repository root,
# after `cargo build --release --workspace`; needs redis-server and influxd):
#   loadtest/history.sh                 # ~4 min
# DURATION (default 20) sets the seconds per WebSocket run; PAIRS (default 3) the on/off pairs.
#  1. fan-out load of the targets table (9,900 clients × 10 channels × 20 points × 10 Hz):
#     gateway CPU per frame with history on vs off (pairs back to back), the recorder thread's
#     share, and whether it kept up (nothing dropped, nothing left buffered);
#  2. 1,000 channels × 20 points × 1 Hz (100 clients on 10 of them): gateway CPU on vs off;
#  3. a one-hour, 1 s-downsampled trend of one point (3,600 stored points): /history latency.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release
LT=$BIN/voltage-loadtest
GW=$BIN/voltage-gateway
OUT=${OUT:-$(mktemp -d /tmp/voltage-history.XXXXXX)}
DUR=${DURATION:-20}
[ -x "$LT" ] && [ -x "$GW" ] || { echo "build first: cargo build --release --workspace" >&2; exit 2; }
command -v influxd >/dev/null || { echo "influxd not found: apt-get install -y influxdb" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(free_port); GPORT=$(free_port); IPORT=$(free_port); IRPC=$(free_port)
RDIR=$(mktemp -d); IDIR=$(mktemp -d)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$RDIR" --daemonize yes >/dev/null
cat >"$IDIR/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$IRPC"
[meta]
  dir = "$IDIR/meta"
  logging-enabled = false
[data]
  dir = "$IDIR/data"
  wal-dir = "$IDIR/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$IPORT"
  log-enabled = false
[monitor]
  store-enabled = false
[logging]
  level = "warn"
EOF
influxd -config "$IDIR/influxdb.conf" >"$OUT/influxd.log" 2>&1 &
IPID=$!
GWPID=
cleanup() {
    [ -n "$GWPID" ] && kill "$GWPID" 2>/dev/null || true
    kill "$IPID" 2>/dev/null || true
    redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$RDIR" "$IDIR"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$IPORT/ping" && break; sleep 0.2; done
IURL="http://127.0.0.1:$IPORT"
printf '[history]\nurl = "%s"\n' "$IURL" >"$OUT/on.toml"
printf '# history off\n' >"$OUT/off.toml"

# A fresh gateway per run ($1: on|off).
gateway() {
    [ -n "$GWPID" ] && { kill "$GWPID"; wait "$GWPID" 2>/dev/null || true; }
    "$GW" --config "$OUT/$1.toml" --listen "127.0.0.1:$GPORT" --redis "redis://127.0.0.1:$RPORT" --shards 2 --max-connections-per-ip 20000 >"$OUT/gateway-$1.log" 2>&1 &
    GWPID=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$GPORT/health/detailed" | grep -q '"status":"healthy"' && return 0
        sleep 0.1
    done
    echo "gateway did not become healthy" >&2; exit 1
}
A="--addr 127.0.0.1:$GPORT --redis redis://127.0.0.1:$RPORT"
run() { local name=$1; shift; echo "== $name: $*" >&2; "$LT" "$@" --json >"$OUT/$name.json" 2>"$OUT/$name.progress"; }
# The recorder's counters once it has drained (2 s after the load stops).
recorder() { sleep 2; curl -sf "http://127.0.0.1:$GPORT/health/detailed" >"$OUT/$1.health"; }

for k in $(seq 1 "${PAIRS:-3}"); do
    gateway off; run "fanout-off-$k" ws-fanout $A --server-pid "$GWPID" --clients 9900 --channels 10 --interval 100 --rate-hz 10 --duration "$DUR"
    gateway on; run "fanout-on-$k" ws-fanout $A --server-pid "$GWPID" --clients 9900 --channels 10 --interval 100 --rate-hz 10 --duration "$DUR"
    recorder "fanout-on-$k"
done
gateway off; run wide-off ws-fanout $A --server-pid "$GWPID" --clients 100 --channels 10 --same-of 1000 --interval 1000 --rate-hz 1 --duration "$DUR"
gateway on; run wide-on ws-fanout $A --server-pid "$GWPID" --clients 100 --channels 10 --same-of 1000 --interval 1000 --rate-hz 1 --duration "$DUR"
recorder wide-on

# One hour of one point at 1 Hz, ending now, straight into InfluxDB (the recorder's schema).
NOW=$(date +%s)
python3 - "$NOW" >"$OUT/trend.lp" <<'PY'
import math, sys
now = int(sys.argv[1])
for i in range(3600):
    t = now - 3600 + i
    print(f"voltage_points,channel_id=9001,data_type=T 1={20 + 5 * math.sin(i / 60):.3f} {t * 1000 + 123}")
PY
curl -sf -XPOST "$IURL/write?db=voltage&precision=ms" --data-binary @"$OUT/trend.lp"
TREND="/api/channels/9001/history?start_time=$((NOW - 3600))&end_time=$NOW&data_type=T&point_id=1&interval=1&agg=mean"
curl -sf "http://127.0.0.1:$GPORT$TREND" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; assert len(d) == 3600, len(d)'
# One viewer at a time (the target), then four at once (queries share the querier threads).
run trend rest --addr "127.0.0.1:$GPORT" --server-pid "$GWPID" --connections 1 --threads 1 --path "$TREND" --duration 10
run trend-4 rest --addr "127.0.0.1:$GPORT" --server-pid "$GWPID" --connections 4 --threads 1 --path "$TREND" --duration 10

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
load = lambda n: json.load(open(os.path.join(out, n + ".json")))
health = lambda n: json.load(open(os.path.join(out, n + ".health")))["data"]["dependencies"]["history"]
def thread(s, name):
    return sum(t["cpu_pct"] for t in s["server"]["threads"] if t["thread"].startswith(name))
print("| target | history off | history on | ratio on/off | verdict |")
print("|---|---|---|---|---|")
ratios = []
k = 1
while os.path.exists(os.path.join(out, f"fanout-on-{k}.json")):
    off, on, h = load(f"fanout-off-{k}"), load(f"fanout-on-{k}"), health(f"fanout-on-{k}")
    r = on["server"]["cpu_us_per_frame"] / off["server"]["cpu_us_per_frame"]
    ratios.append(r)
    kept = h["dropped_points"] == 0 and h["buffered_points"] == 0
    print(f"| fan-out 9,900 × 10 ch × 20 pts × 10 Hz (pair {k}) | {off['server']['cpu_us_per_frame']:.2f} µs/frame, CPU {off['server']['cpu_pct']:.0f}% | "
          f"{on['server']['cpu_us_per_frame']:.2f} µs/frame, CPU {on['server']['cpu_pct']:.0f}% (recorder {thread(on, 'history-record'):.1f}%), "
          f"written {h['written_points']}, dropped {h['dropped_points']}, buffered {h['buffered_points']} | {r:.2f} | {'kept up ✓' if kept else 'fell behind ✗'} |")
    k += 1
mean = sum(ratios) / len(ratios)
print(f"| fan-out CPU per frame, on vs off | mean of {len(ratios)} pairs | {', '.join(f'{r:.2f}' for r in ratios)} | {mean:.2f} | {'✓' if mean <= 1.05 else '✗'} (≤ 1.05) |")
off, on, h = load("wide-off"), load("wide-on"), health("wide-on")
extra = on["server"]["cpu_pct"] - off["server"]["cpu_pct"]
kept = h["dropped_points"] == 0 and h["buffered_points"] == 0
print(f"| 1,000 ch × 20 pts × 1 Hz | CPU {off['server']['cpu_pct']:.1f}% | CPU {on['server']['cpu_pct']:.1f}% (recorder {thread(on, 'history-record'):.1f}%), written {h['written_points']}, dropped {h['dropped_points']} | +{extra:.1f} points of a core | {'✓' if extra <= 5 and kept else '✗'} (≤ 5, kept up) |")
t = load("trend")
p99 = t["latency"]["p99_ms"]
print(f"| 1 h trend, 1 s buckets (3,600 records), one viewer | — | {t['requests_per_s']:.0f} req/s, p50 {t['latency']['p50_ms']:.1f} / p99 {p99:.1f} ms, errors {t['errors']} | — | {'✓' if p99 <= 50 and t['errors'] == 0 else '✗'} (p99 ≤ 50 ms) |")
t4 = load("trend-4")
print(f"| the same, 4 viewers at once | — | {t4['requests_per_s']:.0f} req/s, p50 {t4['latency']['p50_ms']:.1f} / p99 {t4['latency']['p99_ms']:.1f} ms, errors {t4['errors']} | — | (information) |")
PY
echo "raw results: $OUT" >&2
