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
pairs = []
k = 1
while load("fanout-%d" % k) and load("ceiling-%d" % k):
    pairs.append((load("fanout-%d" % k), load("ceiling-%d" % k)))
    k += 1
fan = pairs[0][0] if pairs else None
for k, (f, c) in enumerate(pairs, 1):
    ratio = f["server"]["cpu_us_per_frame"] / c["server"]["cpu_us_per_frame"]
    p99 = f["window"]["latency"]["p99_ms"]
    lost = f["integrity"]["lost_clients"] + f["integrity"]["rounds_skipped"]
    rows.append(("fan-out 9,900 × same 10 ch (pair %d)" % k, ws(f), ws(c),
                 "CPU ratio %.2f; p99 %s; every round %s" % (ratio, verdict(p99 <= 50), verdict(lost == 0))))
if pairs:
    ratios = [f["server"]["cpu_us_per_frame"] / c["server"]["cpu_us_per_frame"] for f, c in pairs]
    mean = sum(ratios) / len(ratios)
    rows.append(("fan-out CPU per frame vs ceiling", "mean of %d pairs" % len(pairs),
                 ", ".join("%.2f" % r for r in ratios), "%.2f %s (≤ 1.25)" % (mean, verdict(mean <= 1.25))))
sat, satc = load("saturation"), load("saturation-ceiling")
if sat and satc:
    r = sat["window"]["frames_per_s"] / satc["window"]["frames_per_s"]
    rows.append(("saturation (19k × 10 Hz vs ceiling 9.9k × 20 Hz)", ws(sat), ws(satc), "%.2f of ceiling %s" % (r, verdict(r >= 0.8))))
mixed, ctl = load("mixed"), load("mixed-control")
if mixed and fan:
    rr = mixed["window"]["frames_per_s"] / fan["window"]["frames_per_s"]
    lr = mixed["window"]["latency"]["p99_ms"] / fan["window"]["latency"]["p99_ms"]
    rows.append(("mixed 9,900 × random 10 of 1,000, vs the fan-out run", ws(mixed), "fan-out pair 1 above (10 channels written)",
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
