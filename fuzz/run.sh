#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECS seconds (default 30; 9 targets = 4.5 min) from the
# committed seeds (fuzz/seeds/<target>, read-only) with a scratch corpus. Installs the nightly
# toolchain and cargo-fuzz when missing. A crash leaves its input in fuzz/artifacts/<target>/
# and fails the run. Usage: fuzz/run.sh [target ...]
set -euo pipefail
cd "$(dirname "$0")"
SECS=${FUZZ_SECS:-30}
# No sanitizer by default: the targets are safe Rust (the few unsafe blocks are covered by
# unit tests), and an uninstrumented build is minutes faster in CI. FUZZ_SANITIZER=address
# for a local run with ASan.
SAN=${FUZZ_SANITIZER:-none}
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(http_request query ws_message collect_reply value alarm_record auth_input history redis_url)
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
cargo +nightly fuzz build -s "$SAN"
for t in "${TARGETS[@]}"; do
    mkdir -p "$SCRATCH/$t"
    echo "== fuzz $t for ${SECS}s" >&2
    if ! cargo +nightly fuzz run -s "$SAN" "$t" "$SCRATCH/$t" "seeds/$t" -- \
        -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$SCRATCH/$t.log" 2>&1; then
        tail -60 "$SCRATCH/$t.log" >&2
        echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$SCRATCH/$t.log" >&2 || true
done
