"""Ray's object store spilling on the workload of `spillpool bench pool`:
COUNT numpy arrays of SIZE bytes (default 40 x 100 MB) put through an object
store of MEMORY bytes (default 1 GB) that spills to a directory, then read
back in put order and in random order. Writes the same CSV columns as
spillpool: suite,storage,op,bytes,repeat,seconds,mb_per_s.

Each repeat starts a fresh Ray instance (one untimed round first, as spillpool
does). `put` keeps every ObjectRef alive, so what exceeds the store must
spill; `get` of a spilled object restores it into shared memory.

Run through bench/peers/compare_pool.sh, which creates the virtual environment.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

import numpy as np
import ray

from common import parse_size, write_rows


def values(count: int, size: int):
    """Random, incompressible arrays, made once (not timed)."""
    rng = np.random.default_rng(1)
    block = rng.integers(0, 2**63, size=(size * 2) // 8, dtype=np.uint64).view(np.uint8)
    return [block[(i * 4099 * 8) % size:][:size].copy() for i in range(count)]


def one_round(vals, memory: int, spill_dir: str, seed: int):
    ray.init(
        num_cpus=2,
        object_store_memory=memory,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        _system_config={
            # Ray refuses to spill once the disk is 95 % full; the shared disk
            # here sits near 85 % with ~15 GB free, ample for 4 GB of spill.
            "local_fs_capacity_threshold": 0.99,
            "object_spilling_config": json.dumps(
                {"type": "filesystem", "params": {"directory_path": spill_dir}}
            ),
        },
    )
    try:
        os.sync()
        start = time.perf_counter()
        refs = [ray.put(v) for v in vals]
        put = time.perf_counter() - start
        start = time.perf_counter()
        for r in refs:
            a = ray.get(r)
            del a
        get_seq = time.perf_counter() - start
        order = list(range(len(refs)))
        random.Random(seed).shuffle(order)
        start = time.perf_counter()
        for i in order:
            a = ray.get(refs[i])
            del a
        get_rand = time.perf_counter() - start
        # Verify what came back (untimed): a wrong answer is no result.
        for i in (0, len(refs) // 2, len(refs) - 1):
            if not np.array_equal(ray.get(refs[i]), vals[i]):
                raise SystemExit(f"ray returned different bytes for value {i}")
        del refs
    finally:
        ray.shutdown()
    return put, get_seq, get_rand


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--memory-limit", default="1GB")
    p.add_argument("--data", default="4000MB")
    p.add_argument("--value-size", default="100MB")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=tempfile.gettempdir())
    p.add_argument("--out", required=True)
    a = p.parse_args()
    memory, size = parse_size(a.memory_limit), parse_size(a.value_size)
    count = max(1, -(-parse_size(a.data) // size))
    vals = values(count, size)
    total = count * size
    print(f"ray: {count} arrays of {size / 1e6:.0f} MB through a {memory / 1e6:.0f} MB object store, "
          f"{a.repeats} repeats, spilling in {a.dir}", file=sys.stderr)
    rows = []
    for repeat in range(a.repeats + 1):
        spill = tempfile.mkdtemp(prefix="ray-spill-", dir=a.dir)
        try:
            put, get_seq, get_rand = one_round(vals, memory, spill, repeat + 1)
        finally:
            shutil.rmtree(spill, ignore_errors=True)
        if repeat == 0:
            continue  # untimed warm-up
        for op, seconds in (("put", put), ("get-seq", get_seq), ("get-random", get_rand)):
            rows.append(("pool", "ray", op, total, repeat, seconds, total / seconds / 1e6))
            print(f"repeat {repeat}: ray {op} {total / seconds / 1e6:.0f} MB/s", file=sys.stderr)
    write_rows(a.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
