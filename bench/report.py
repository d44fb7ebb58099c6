#!/usr/bin/env python3
"""Turns Google Benchmark JSON into the ratio tables of bench/README.md.

    ./build/bench/bench_elementwise --benchmark_format=json --benchmark_repetitions=5 \
        --benchmark_report_aggregates_only=true > bench/results/elementwise.json
    python3 bench/report.py bench/results/elementwise.json

For every case it prints bytes/s of each implementation and its ratio to the `triad/hand` yardstick and to
the case's baseline implementations measured in the same run. Standard library only.
"""
import json
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        doc = json.load(f)
    rows = {}
    for b in doc["benchmarks"]:
        # With repetitions, keep the median aggregate; without, the single run.
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b["name"])
        parts = name.split("/")
        if len(parts) < 3 or "bytes_per_second" not in b:
            continue
        case, impl, threads = parts[0], parts[1], parts[2].split(":")[-1]
        rows[(case, impl, threads)] = b["bytes_per_second"]
    return doc.get("context", {}), rows


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ctx, rows = load(sys.argv[1])
    print(f"Host: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs, "
          f"{ctx.get('mhz_per_cpu', '?')} MHz, date {ctx.get('date', '?')}\n")
    cases = defaultdict(dict)
    for (case, impl, threads), bps in rows.items():
        cases[(case, threads)][impl] = bps
    print("| case | threads | impl | GB/s | / triad | / hand | / eigen |")
    print("|---|---|---|---|---|---|---|")
    for (case, threads) in sorted(cases):
        if case == "triad":
            continue
        impls = cases[(case, threads)]
        triad = rows.get(("triad", "hand", threads))
        for impl in sorted(impls, key=lambda i: (i != "metagrad", i)):
            bps = impls[impl]
            def ratio(ref):
                return f"{bps / ref:.2f}" if ref else "–"
            print(f"| {case} | {threads} | {impl} | {bps / 1e9:.1f} | {ratio(triad)} | "
                  f"{ratio(impls.get('hand'))} | {ratio(impls.get('eigen'))} |")
    for threads in sorted({t for (_, _, t) in rows}):
        t = rows.get(("triad", "hand", threads))
        if t:
            print(f"| triad | {threads} | hand | {t / 1e9:.1f} | 1.00 | | |")


if __name__ == "__main__":
    main()
