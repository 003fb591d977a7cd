"""ArcticDB on the workload of `spillpool bench store`: the profiling script of
ArcticDB's LMDB tutorial (10 float64 columns of random values, 200-1000 MB,
write and read on lmdb on disk, lmdb on /dev/shm and mem://), plus the
small-symbol workload, writing the same CSV columns as spillpool:
suite,storage,op,bytes,repeat,seconds,mb_per_s.

Run through bench/peers/compare.sh, which creates the virtual environment.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from arcticdb import Arctic
from arcticdb.version_store.library import ReadRequest, WritePayload

from common import parse_size, write_rows


def fresh(storage: str, disk: str):
    """A new, empty Arctic instance of `storage`, and its directory (or None)."""
    if storage == "mem":
        return Arctic("mem://"), None
    root = "/dev/shm" if storage == "lmdb-tmpfs" else disk
    path = tempfile.mkdtemp(prefix="arcticdb-bench-", dir=root)
    return Arctic(f"lmdb://{path}"), path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="200MB,600MB,1000MB")
    p.add_argument("--storages", default="lmdb,lmdb-tmpfs,mem")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--symbols", type=int, default=10000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--dir", default=os.getcwd())
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rows_out = []

    def record(suite, storage, op, nbytes, repeat, seconds):
        rows_out.append((suite, storage, op, nbytes, repeat, seconds, nbytes / 1e6 / seconds))

    rng = np.random.default_rng(1)
    storages = a.storages.split(",")
    for size in [parse_size(s) for s in a.sizes.split(",")]:
        n = size // 80
        df = pd.DataFrame(rng.random((n, 10)), columns=[f"c{i}" for i in range(10)])
        nbytes = n * 80
        for repeat in range(1, a.repeats + 1):
            for storage in storages:
                ac, path = fresh(storage, a.dir)
                lib = ac.get_library("bench", create_if_missing=True)
                t = time.perf_counter()
                lib.write("sym", df)
                record("store", storage, "write", nbytes, repeat, time.perf_counter() - t)
                t = time.perf_counter()
                back = lib.read("sym").data
                record("store", storage, "read", nbytes, repeat, time.perf_counter() - t)
                total = float(back.to_numpy().sum())
                record("store", storage, "read+scan", nbytes, repeat, time.perf_counter() - t)
                if len(back) != n or not np.isfinite(total):
                    print(f"{storage}: read back {len(back)} rows of {n}", file=sys.stderr)
                    return 1
                del back, lib, ac
                if path:
                    shutil.rmtree(path, ignore_errors=True)
            print(f"arcticdb: {size // 10**6} MB repeat {repeat} done", file=sys.stderr)

    if a.symbols > 0:
        small = [pd.DataFrame(rng.random((100, 3)), columns=["c0", "c1", "c2"]) for _ in range(1000)]
        names = [f"sym{i:06d}" for i in range(a.symbols)]
        nbytes = lambda count: count * 2400  # noqa: E731
        for storage in storages:
            one = min(a.symbols, 2000)
            ac, path = fresh(storage, a.dir)
            lib = ac.get_library("small", create_if_missing=True)
            t = time.perf_counter()
            for i, s in enumerate(names[:one]):
                lib.write(s, small[i % len(small)])
            record("store-small", storage, "small-write-one", nbytes(one), 0, time.perf_counter() - t)
            t = time.perf_counter()
            for s in names[:one]:
                lib.read(s)
            record("store-small", storage, "small-read-one", nbytes(one), 0, time.perf_counter() - t)
            del lib, ac
            if path:
                shutil.rmtree(path, ignore_errors=True)
            ac, path = fresh(storage, a.dir)
            lib = ac.get_library("small", create_if_missing=True)
            t = time.perf_counter()
            for c in range(0, a.symbols, a.batch):
                lib.write_batch([WritePayload(s, small[(c + i) % len(small)]) for i, s in enumerate(names[c : c + a.batch])])
            record("store-small", storage, "small-write-batch", nbytes(a.symbols), 0, time.perf_counter() - t)
            t = time.perf_counter()
            for c in range(0, a.symbols, a.batch):
                lib.read_batch([ReadRequest(s) for s in names[c : c + a.batch]])
            record("store-small", storage, "small-read-batch", nbytes(a.symbols), 0, time.perf_counter() - t)
            del lib, ac
            if path:
                shutil.rmtree(path, ignore_errors=True)
            print(f"arcticdb: small symbols on {storage} done", file=sys.stderr)

    write_rows(a.out, rows_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
