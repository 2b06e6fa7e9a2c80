#!/usr/bin/env python3
"""Summarise an Autobahn-format report (index.json written by kosoku).

Usage: summarize.py REPORT_DIR [--expected FILE] [--url URL]

Prints one line per behaviour (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED,
FAILED), the closing-handshake breakdown, every failed case with the reason the
tool gave, and a closing "autobahn: N passed, M failed" line.

A case is FAILED when its `behavior` is not one of OK / NON-STRICT /
INFORMATIONAL / UNIMPLEMENTED (so FAILED, and kosoku's ERROR = could not run
the case), or its `behaviorClose` is not OK / INFORMATIONAL (FAILED, UNCLEAN,
WRONG CODE, FAILED BY CLIENT). That is the same rule kosoku itself uses for
its exit status. Every other case is counted under its `behavior`.

Exit status: 0 no failure; 1 at least one FAILED case; 2 the run is unusable
(no report, expected cases missing, or every case errored before running).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

PASSING_BEHAVIOR = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED")
PASSING_CLOSE = ("OK", "INFORMATIONAL")
BUCKETS = PASSING_BEHAVIOR + ("FAILED",)


def case_key(case_id: str) -> list[int]:
    try:
        return [int(p) for p in case_id.split(".")]
    except ValueError:
        return [1 << 30]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("report_dir")
    ap.add_argument("--expected", help="file with the case ids that must be present")
    ap.add_argument("--url", default="", help="target, for the header line only")
    args = ap.parse_args()

    index_path = os.path.join(args.report_dir, "index.json")
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print(f"autobahn: ERROR: no usable report at {index_path}: {e}")
        return 2

    cases: dict[str, dict] = {}
    agents = sorted(index)
    for agent in agents:
        for case_id, entry in index[agent].items():
            cases[case_id] = dict(entry, agent=agent)
    if not cases:
        print(f"autobahn: ERROR: report {index_path} holds no case")
        return 2

    def detail(entry: dict) -> dict:
        try:
            with open(os.path.join(args.report_dir, entry["reportfile"])) as f:
                return json.load(f)
        except (OSError, ValueError, KeyError):
            return {}

    counts: Counter[str] = Counter()
    close_counts: Counter[str] = Counter()
    failed: list[str] = []
    for case_id in sorted(cases, key=case_key):
        e = cases[case_id]
        close_counts[e["behaviorClose"]] += 1
        if e["behavior"] in PASSING_BEHAVIOR and e["behaviorClose"] in PASSING_CLOSE:
            counts[e["behavior"]] += 1
        else:
            counts["FAILED"] += 1
            failed.append(case_id)

    url = f" against {args.url}" if args.url else ""
    print(
        f"autobahn: {len(cases)} cases{url} (server agent: {', '.join(agents)}); "
        f"report: {os.path.join(args.report_dir, 'index.html')}"
    )
    for b in BUCKETS:
        print(f"{b}: {counts[b]}")
    print(
        "closing handshake (behaviorClose): "
        + ", ".join(f"{k}={v}" for k, v in sorted(close_counts.items()))
    )

    status = 0
    errored = [c for c in cases if cases[c]["behavior"] == "ERROR"]
    all_errored = len(errored) == len(cases)
    if failed:
        status = 1
        print(f"FAILED cases ({len(failed)}):")
        for n, case_id in enumerate(failed):
            if all_errored and n == 3:
                print(f"  ... and {len(failed) - n} more, all ERROR")
                break
            e = cases[case_id]
            d = detail(e)
            reason = d.get("result") or ""
            if e["behaviorClose"] not in PASSING_CLOSE and d.get("resultClose"):
                if d["resultClose"] != reason:
                    reason = f"{reason}; close: {d['resultClose']}" if reason else d["resultClose"]
            print(
                f"  {case_id}: behavior={e['behavior']} behaviorClose={e['behaviorClose']} "
                f"remoteCloseCode={e.get('remoteCloseCode')} -- {reason}"
            )

    if all_errored:
        print(
            "autobahn: ERROR: every case errored before running "
            "(endpoint unreachable or handshake refused?)"
        )
        status = 2

    if args.expected:
        with open(args.expected) as f:
            expected = {
                line.strip() for line in f if line.strip() and not line.startswith("#")
            }
        missing = sorted(expected - set(cases), key=case_key)
        extra = sorted(set(cases) - expected, key=case_key)
        if extra:
            print(f"note: {len(extra)} case(s) not in {args.expected}: {' '.join(extra)}")
        if missing:
            print(
                f"autobahn: ERROR: {len(missing)} expected case(s) missing from the report: "
                + " ".join(missing[:40])
                + (" ..." if len(missing) > 40 else "")
            )
            status = 2

    print(f"autobahn: {len(cases) - len(failed)} passed, {len(failed)} failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
