import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def spillpool_bin() -> str:
    path = os.environ.get("SPILLPOOL_BIN") or shutil.which("spillpool")
    if not path or not Path(path).exists():
        pytest.fail("set SPILLPOOL_BIN to the spillpool binary (scripts/test.sh does)")
    return path


@pytest.fixture
def run(spillpool_bin):
    def _run(*args, check=True, input=None):
        proc = subprocess.run([spillpool_bin, *map(str, args)], capture_output=True, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"spillpool {args} failed: {proc.stderr.decode()}")
        return proc

    return _run


# mem:// lives only within one process; these tests need values to outlive a CLI call.
@pytest.fixture(params=["file", "lmdb", "shm"])
def uri(request, tmp_path):
    """A fresh backend URI of each kind that outlives a process."""
    kind = request.param
    if kind == "shm":
        name = f"pytest-{uuid.uuid4().hex}"
        yield f"shm://{name}"
        shutil.rmtree(f"/dev/shm/spillpool-{name}", ignore_errors=True)
        return
    yield f"{kind}://{tmp_path / kind}"
