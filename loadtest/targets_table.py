"""Prints the issue-4 targets table (markdown) from the JSON results of loadtest/targets.sh."""
import json
import os
import sys

out = sys.argv[1]


def load(name):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def lat(d):
    w = d["window"]["latency"]
    return "p50 %.0f / p99 %.0f ms" % (w["p50_ms"], w["p99_ms"])


def ws(d):
    i = d["integrity"]
    return "%.1fk frames/s, %s, %.2f µs/frame, lost %d, dup %d, conflated %d" % (
        d["window"]["frames_per_s"] / 1000,
        lat(d),
        d["server"]["cpu_us_per_frame"],
        i["lost_clients"],
        i["duplicates"],
        i["rounds_skipped"],
    )


def verdict(ok):
    return "✓" if ok else "✗"


rows = []
fan, ceil = load("fanout"), load("ceiling")
if fan and ceil:
    ratio = fan["server"]["cpu_us_per_frame"] / ceil["server"]["cpu_us_per_frame"]
    p99 = fan["window"]["latency"]["p99_ms"]
    lost = fan["integrity"]["lost_clients"] + fan["integrity"]["rounds_skipped"]
    rows.append(("fan-out 9,900 × same 10 ch", ws(fan), ws(ceil),
                 "CPU ratio %.2f %s; p99 %s; every round %s" % (ratio, verdict(ratio <= 1.25), verdict(p99 <= 50), verdict(lost == 0))))
sat, satc = load("saturation"), load("saturation-ceiling")
if sat and satc:
    r = sat["window"]["frames_per_s"] / satc["window"]["frames_per_s"]
    rows.append(("saturation (19k × 10 Hz vs ceiling 9.9k × 20 Hz)", ws(sat), ws(satc), "%.2f of ceiling %s" % (r, verdict(r >= 0.8))))
mixed, ctl = load("mixed"), load("mixed-control")
if mixed and fan:
    rr = mixed["window"]["frames_per_s"] / fan["window"]["frames_per_s"]
    lr = mixed["window"]["latency"]["p99_ms"] / fan["window"]["latency"]["p99_ms"]
    rows.append(("mixed 9,900 × random 10 of 1,000, vs the fan-out run", ws(mixed), "fan-out run above (10 channels written)",
                 "rate %.2f× %s, p99 %.1f× %s" % (rr, verdict(rr >= 0.5), lr, verdict(lr <= 2))))
if mixed and ctl:
    rr = mixed["window"]["frames_per_s"] / ctl["window"]["frames_per_s"]
    lr = mixed["window"]["latency"]["p99_ms"] / ctl["window"]["latency"]["p99_ms"]
    rows.append(("mixed vs its control (same 1,000-channel writes, one shared subscription)", "mixed run above", ws(ctl),
                 "rate %.2f× %s, p99 %.1f× %s" % (rr, verdict(rr >= 0.5), lr, verdict(lr <= 2))))
rh, rr_ = load("rest-health"), load("rest-realtime")
if rh and rr_:
    r = rr_["requests_per_s"] / rh["requests_per_s"]
    p99 = rr_["latency"]["p99_ms"]
    rows.append(("REST 64 conns", "realtime %.0fk req/s, p99 %.1f ms" % (rr_["requests_per_s"] / 1000, p99),
                 "/health %.0fk req/s" % (rh["requests_per_s"] / 1000),
                 "ratio %.2f %s, p99 %s%s" % (r, verdict(r >= 0.5), verdict(p99 <= 5), " (CLIENT-BOUND)" if rr_["client"]["client_bound"] else "")))
sc = load("scale")
if sc:
    kib = sc["server"]["rss_kib_per_connection"]
    errs = sc["connections"]["unexpected_closes"] + sc["connections"]["connect_errors"]
    rows.append(("scale 19,000 × 300 s", "held %d, %.1f KiB/conn, errors %d" % (sc["connections"]["held_at_end"], kib, errs), "—",
                 "%s" % verdict(kib <= 6 and errs == 0)))

print("| target | gateway | ceiling / reference (same run) | verdict |")
print("|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
