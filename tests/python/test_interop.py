"""pyarrow, an independent reader, checks what the spillpool CLI writes."""

import datetime
import decimal

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest


def sample_table() -> pa.Table:
    n = 5000
    tz = "America/New_York"
    return pa.table(
        {
            "i64": pa.array(range(n), pa.int64()),
            "i32_nulls": pa.array([None if i % 7 == 0 else i for i in range(n)], pa.int32()),
            "f64": pa.array([i * 0.25 for i in range(n)], pa.float64()),
            "utf8": pa.array([f"row {i} ü" for i in range(n)], pa.string()),
            "large_utf8": pa.array(["x" * (i % 30) for i in range(n)], pa.large_string()),
            "dict": pa.array([["alpha", "beta", "delta", "eta"][i % 4] for i in range(n)]).dictionary_encode(),
            "ts_tz": pa.array(
                [datetime.datetime(2026, 1, 1) + datetime.timedelta(seconds=i) for i in range(n)],
                pa.timestamp("us", tz=tz),
            ),
            "dec": pa.array([decimal.Decimal(i) / 100 for i in range(n)], pa.decimal128(20, 2)),
            "list": pa.array([list(range(i % 5)) if i % 9 else None for i in range(n)], pa.list_(pa.int32())),
            "struct": pa.array([{"a": i, "b": str(i)} for i in range(n)]),
            "flag": pa.array([i % 3 == 0 for i in range(n)]),
        }
    )


def test_parquet_in_arrow_ipc_out_equals(run, uri, tmp_path):
    table = sample_table()
    src = tmp_path / "in.parquet"
    pq.write_table(table, src, row_group_size=1000)
    run("kv", uri, "put", "--table", "tables/t", src)
    out = tmp_path / "out.arrow"
    run("kv", uri, "get", "--table", "tables/t", "-o", out)
    with ipc.open_file(out) as reader:
        back = reader.read_all()
    want = pq.read_table(src)
    assert back.schema.equals(want.schema, check_metadata=False), (back.schema, want.schema)
    assert back.equals(want)


def test_arrow_ipc_in_and_out(run, uri, tmp_path):
    table = sample_table()
    src = tmp_path / "in.arrow"
    with ipc.new_file(src, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=700):
            writer.write_batch(batch)
    run("kv", uri, "put", "--table", "t", src)
    out = run("kv", uri, "get", "t").stdout  # a table on stdout is an Arrow IPC file too
    back = ipc.open_file(pa.BufferReader(out)).read_all()
    assert back.equals(table)


def test_blobs_are_byte_exact(run, uri, tmp_path):
    data = bytes(range(256)) * 40_000
    run("kv", uri, "put", "blob", "-", input=data)
    assert run("kv", uri, "get", "blob").stdout == data


def test_corrupt_input_file_is_a_clear_error(run, uri, tmp_path):
    bad = tmp_path / "broken.parquet"
    pq.write_table(sample_table(), bad)
    raw = bad.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    proc = run("kv", uri, "put", "--table", "t", bad, check=False)
    assert proc.returncode != 0
    assert "broken.parquet" in proc.stderr.decode()
    assert run("kv", uri, "ls").stdout == b""
