"""Ratios spillpool / a peer (ArcticDB, Ray) from two CSV files of
`spillpool bench` columns: median throughput per storage, size and operation.

    compare.py OURS.csv THEIRS.csv [PEER-NAME]
"""

import csv
import statistics
import sys
from collections import defaultdict


def load(path):
    out = defaultdict(list)
    with open(path) as f:
        for r in csv.DictReader(f):
            size = round(int(r["bytes"]) / 1e6) if r["suite"] in ("store", "pool") else None
            storage = r["storage"]
            if r["suite"] == "pool" and storage == "ray":
                storage = "pool"  # the peer's pool: compared with ours
            out[(r["suite"], storage, r["op"], size)].append(float(r["mb_per_s"]))
    return {k: statistics.median(v) for k, v in out.items()}


def main(ours_path, theirs_path, peer="ArcticDB"):
    ours, theirs = load(ours_path), load(theirs_path)
    print(f"{'storage':<11} {'size':>7} {'op':<18} {'spillpool':>12} {peer:>12} {'ratio':>7}")
    for key in sorted(k for k in theirs if k in ours):
        suite, storage, op, size = key
        a, b = ours[key], theirs[key]
        if suite == "store-small":  # MB/s of 2,400-byte symbols → symbols per second
            a, b, unit, size_s = a * 1e6 / 2400, b * 1e6 / 2400, "/s", "small"
        else:
            unit, size_s = " MB/s", f"{size} MB"
        print(f"{storage:<11} {size_s:>7} {op:<18} {a:>9.0f}{unit:<3} {b:>9.0f}{unit:<3} {a / b:>6.2f}×")
        # The machine's limit for a store write, measured by spillpool's run:
        # if the peer is near it, twice the peer is out of reach.
        limit_key = {"lmdb": ("hw-disk", "write+fsync"), "lmdb-tmpfs": ("hw-tmpfs", "write"),
                     "mem": ("hw-memcpy", "copy")}.get(storage)
        limit = ours.get((suite, *limit_key, size)) if limit_key else None
        if suite == "store" and op == "write" and limit:
            print(f"{'':<11} {'':>7} {'  ÷ ' + ' '.join(limit_key):<18} {a / limit:>12.2f} {b / limit:>12.2f}")
        # The pool's machine limit from the same run: raw write for put, raw read for gets.
        limit = ours.get((suite, "hw-disk", "write" if op == "put" else "read", size))
        if suite == "pool" and limit:
            print(f"{'':<11} {'':>7} {'  ÷ raw ' + ('write' if op == 'put' else 'read'):<18} {a / limit:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
