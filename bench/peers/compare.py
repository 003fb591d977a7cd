"""Ratios spillpool / ArcticDB from two CSV files of `spillpool bench store`
columns: median throughput per storage, size and operation."""

import csv
import statistics
import sys
from collections import defaultdict


def load(path):
    out = defaultdict(list)
    with open(path) as f:
        for r in csv.DictReader(f):
            size = round(int(r["bytes"]) / 1e6) if r["suite"] == "store" else None
            out[(r["suite"], r["storage"], r["op"], size)].append(float(r["mb_per_s"]))
    return {k: statistics.median(v) for k, v in out.items()}


def main(ours_path, theirs_path):
    ours, theirs = load(ours_path), load(theirs_path)
    print(f"{'storage':<11} {'size':>7} {'op':<18} {'spillpool':>12} {'ArcticDB':>12} {'ratio':>7}")
    for key in sorted(k for k in theirs if k in ours):
        suite, storage, op, size = key
        a, b = ours[key], theirs[key]
        if suite == "store-small":  # MB/s of 2,400-byte symbols → symbols per second
            a, b, unit, size_s = a * 1e6 / 2400, b * 1e6 / 2400, "/s", "small"
        else:
            unit, size_s = " MB/s", f"{size} MB"
        print(f"{storage:<11} {size_s:>7} {op:<18} {a:>9.0f}{unit:<3} {b:>9.0f}{unit:<3} {a / b:>6.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
