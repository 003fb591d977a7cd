"""pyarrow as an independent reader (and writer) of what `spillpool store` keeps."""

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from test_interop import sample_table


@pytest.mark.parametrize("ext", ["arrow", "parquet", "csv"])
def test_store_read_output_equals_pyarrow_slicing(run, uri, tmp_path, ext):
    table = sample_table()
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    # Small segments so the selection spans several of them.
    run("store", uri, "--rows-per-segment", "7", "write", "lib", "sym", src)
    extra = table.slice(0, 5)
    more = tmp_path / "more.arrow"
    feather.write_feather(extra, more, compression="uncompressed")
    assert run("store", uri, "write", "lib", "sym", more, "--append").stdout == b"1\n"

    out = tmp_path / f"out.{ext}"
    cols = [table.column_names[2], table.column_names[0]]
    run("store", uri, "read", "lib", "sym", "-o", out, "--columns", ",".join(cols), "--rows", "3..40")
    expected = pa.concat_tables([table, extra]).select(cols).slice(3, 37)
    if ext == "arrow":
        got = feather.read_table(out)
        assert got.equals(expected)
    elif ext == "parquet":
        got = pq.read_table(out)
        assert got.equals(expected)
    else:
        got = pacsv.read_csv(out)
        assert got.num_rows == expected.num_rows
        assert got.column_names == cols


def test_store_as_of_reads_the_first_version(run, uri, tmp_path):
    table = sample_table()
    src = tmp_path / "in.arrow"
    feather.write_feather(table, src, compression="uncompressed")
    run("store", uri, "write", "lib", "s", src)
    run("store", uri, "write", "lib", "s", src, "--append")
    out = tmp_path / "v0.arrow"
    run("store", uri, "read", "lib", "s", "--as-of", "0", "-o", out)
    assert feather.read_table(out).equals(table)
    assert run("store", uri, "ls", "lib").stdout == b"s\n"
