"""What the peer benchmarks share: sizes as spillpool spells them, and its CSV columns."""


def parse_size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def write_rows(path: str, rows) -> None:
    """Rows of (suite, storage, op, bytes, repeat, seconds, mb_per_s), as `spillpool bench --out` writes them."""
    with open(path, "w") as f:
        f.write("suite,storage,op,bytes,repeat,seconds,mb_per_s\n")
        for r in rows:
            f.write(f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]:.6f},{r[6]:.1f}\n")
