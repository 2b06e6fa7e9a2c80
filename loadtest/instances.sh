#!/usr/bin/env bash
# One gateway vs two gateways of one site on this box, serving the same clients (issue 24):
# fan-out CPU per frame (both processes counted), per-instance figures, and the Redis CPU
# each additional gateway costs (each runs its own collect). Loopback only; every run is
# bounded; everything it starts is stopped on exit. Usage (after `cargo build --release
# --workspace`):
#   loadtest/instances.sh        # PAIRS (default 2) of one-instance / two-instance runs
# CLIENTS (default 9900), DURATION (default 15 s). The single gateway runs 2 shards, each of
# the two runs 1 (SHARDS_EACH): the same shard threads on the box's 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release
LT=$BIN/voltage-loadtest
GW=$BIN/voltage-gateway
OUT=${OUT:-$(mktemp -d /tmp/voltage-instances.XXXXXX)}
DUR=${DURATION:-15}
mkdir -p "$OUT"
CLIENTS=${CLIENTS:-9900}
SHARDS_EACH=${SHARDS_EACH:-1}
[ -x "$LT" ] && [ -x "$GW" ] || { echo "build first: cargo build --release --workspace" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(free_port)
RDIR=$(mktemp -d)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$RDIR" --daemonize yes --pidfile "$RDIR/redis.pid" >/dev/null
for _ in $(seq 1 50); do [ -s "$RDIR/redis.pid" ] && break; sleep 0.1; done
RPID=$(cat "$RDIR/redis.pid")
PIDS=()
stop_gateways() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_gateways
    redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$RDIR"
}
trap cleanup EXIT

# gateways N SHARDS: N fresh gateways on one Redis (instance ids {host}:{port}: distinct); sets ADDRS, PIDLIST.
gateways() {
    stop_gateways
    ADDRS=; PIDLIST=
    for i in $(seq 1 "$1"); do
        local port; port=$(free_port)
        "$GW" --listen "127.0.0.1:$port" --redis "redis://127.0.0.1:$RPORT" \
            --shards "$2" --max-connections-per-ip 20000 >"$OUT/gateway-$i.log" 2>&1 &
        PIDS+=($!)
        ADDRS+="${ADDRS:+,}127.0.0.1:$port"; PIDLIST+="${PIDLIST:+,}$!"
        for _ in $(seq 1 100); do
            curl -sf "http://127.0.0.1:$port/health/detailed" | grep -q '"status":"healthy"' && break
            sleep 0.1
        done
    done
}
run() {
    local name=$1; shift; echo "== $name: $*" >&2
    "$LT" ws-fanout --addr "$ADDRS" --server-pid "$PIDLIST" --redis "redis://127.0.0.1:$RPORT" \
        --redis-pid "$RPID" --clients "$CLIENTS" --channels 10 --interval 100 --rate-hz 10 \
        --duration "$DUR" --json "$@" >"$OUT/$name.json" 2>"$OUT/$name.progress"
}

for k in $(seq 1 "${PAIRS:-2}"); do
    gateways 1 2; run "one-$k"
    gateways 2 "$SHARDS_EACH"; run "two-$k"
done
stop_gateways
python3 - "$OUT" "${PAIRS:-2}" <<'EOF'
import json, sys
out, pairs = sys.argv[1], int(sys.argv[2])
def load(n): return json.load(open(f"{out}/{n}.json"))
print("| run | instances | held | frames/s | CPU µs/frame (all gateways) | p99 ms | Redis CPU % | per instance (held, cpu %, RSS MiB) |")
print("|---|---|---|---|---|---|---|---|")
ratios, redis_extra = [], []
for k in range(1, pairs + 1):
    one, two = load(f"one-{k}"), load(f"two-{k}")
    for name, r in ((f"one-{k}", one), (f"two-{k}", two)):
        inst = "; ".join(f"{i['held_at_end']}, {i['cpu_pct']}, {(i['rss_kib'] or 0)/1024:.0f}" for i in r["instances"]) if len(r["instances"]) > 1 else "—"
        print(f"| {name} | {len(r['instances']) or 1} | {r['connections']['held_at_end']} | {r['window']['frames_per_s']:.0f} | "
              f"{r['server']['cpu_us_per_frame']:.2f} | {r['window']['latency']['p99_ms']} | {r['redis']['cpu_pct']} | {inst} |")
    ratios.append(two["server"]["cpu_us_per_frame"] / one["server"]["cpu_us_per_frame"])
    redis_extra.append(two["redis"]["cpu_pct"] - one["redis"]["cpu_pct"])
print()
print(f"CPU per frame, two instances / one (per pair): {', '.join(f'{r:.2f}' for r in ratios)}; mean {sum(ratios)/len(ratios):.2f}")
print(f"Redis CPU added by the second gateway (percentage points of one core, per pair): {', '.join(f'{d:+.1f}' for d in redis_extra)}")
EOF
echo "raw results: $OUT" >&2
