"""The storage interface (pmops/service/storage.py) on file:// and on s3:// against a real
S3-compatible server on loopback (moto's, tests/s3server.py): keys in, bytes out, the same
behaviour on both; the run's scratch copy; the streamed results zip."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pmops.service.results import results_zip
from pmops.service.storage import RunFiles, Storage, open_storage, storage_for
from pmops.settings import Settings
from tests.s3server import S3


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "file":
        yield open_storage(f"file://{tmp_path / 'store'}")
        return
    s3: S3 = request.getfixturevalue("s3")
    prefix = f"unit/{tmp_path.name}"
    yield s3.storage(prefix)


def test_keys_in_bytes_out(storage: Storage, tmp_path: Path) -> None:
    local = tmp_path / "log.csv"
    local.write_bytes(b"case,activity\n" * 1000)
    storage.put_file(local, "datasets/t/d/log.csv")
    with storage.open("operations/op/state/1.pkl", "wb") as fh:
        fh.write(b"checkpoint")
    assert storage.exists("datasets/t/d/log.csv") and storage.size("datasets/t/d/log.csv") == 14000
    assert b"".join(storage.iter_bytes("datasets/t/d/log.csv", chunk=4096)) == local.read_bytes()
    assert len(list(storage.iter_bytes("datasets/t/d/log.csv", chunk=4096))) == 4  # streamed
    assert storage.files("operations/op") == ["state/1.pkl"]
    assert not storage.exists("datasets/t/d/other.csv") and storage.files("nothing") == []
    # what is no key never reaches the storage
    assert not storage.exists("datasets/../../etc/passwd")
    with pytest.raises(ValueError):
        storage.open("a//b")
    copy = storage.get_tree("operations/op", tmp_path / "copy")
    assert (copy / "state" / "1.pkl").read_bytes() == b"checkpoint"
    storage.delete_tree("operations/op")
    storage.delete_tree("operations/never-there")
    assert storage.files("operations") == [] and storage.exists("datasets/t/d/log.csv")


def test_local_paths_and_presigned_urls(storage: Storage, tmp_path: Path) -> None:
    local = tmp_path / "map.svg"
    local.write_text("<svg/>")
    storage.put_file(local, "operations/op/map.svg")
    url = storage.presigned_url("operations/op/map.svg", 60)
    if storage.local:
        assert storage.local_path("operations/op/map.svg") == Path(
            storage.root, "operations/op/map.svg"
        )
        assert url is None
    else:
        assert storage.local_path("operations/op/map.svg") is None
        assert url is not None and httpx.get(url).content == b"<svg/>"
    # a row kept before keys (an absolute path) is read from this machine's disk on either
    assert storage.exists(str(local)) and storage.local_path(str(local)) == local
    assert b"".join(storage.iter_bytes(str(local))) == b"<svg/>"


def test_a_run_on_s3_works_on_a_scratch_copy_removed_after(s3: S3, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", storage_url=s3.url("runs"))
    storage = storage_for(settings)
    (tmp_path / "log.csv").write_text("case,activity\n1,a\n")
    storage.put_file(tmp_path / "log.csv", "datasets/t/d/log.csv")
    with storage.open("operations/orig/state/1.pkl", "wb") as fh:
        fh.write(b"phase one")
    with RunFiles(storage, settings, "op-1") as files:
        assert files.scratch is not None and files.scratch.is_dir()
        assert files.out_dir.is_relative_to(files.scratch)
        source = files.source("datasets/t/d/log.csv")
        assert source.is_relative_to(files.scratch) and source.read_text().startswith("case")
        resume = files.resume_dir("operations/orig")
        assert (resume / "state" / "1.pkl").read_bytes() == b"phase one"
        (files.out_dir / "state").mkdir()
        (files.out_dir / "state" / "1.pkl").write_bytes(b"mine")
        (files.out_dir / "state" / "2.tmp").write_bytes(b"half written")
        (files.out_dir / "report.pdf").write_bytes(b"%PDF")
        files.sync()
        assert storage.files("operations/op-1") == ["report.pdf", "state/1.pkl"]
        files.sync()  # nothing changed: nothing sent again
        files.drop_checkpoints()
        assert storage.files("operations/op-1") == ["report.pdf"]
        scratch = files.scratch
    assert not scratch.exists()
    assert list((tmp_path / "data" / "scratch").iterdir()) == []


def test_a_run_on_file_works_in_place(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    storage = storage_for(settings)
    assert storage.local and storage.root == str((tmp_path / "data").resolve())
    with RunFiles(storage, settings, "op-1") as files:
        assert files.scratch is None
        assert files.out_dir == (tmp_path / "data" / "operations" / "op-1").resolve()
        assert files.source("datasets/t/d/log.csv") == storage.local_path("datasets/t/d/log.csv")


def test_the_results_zip_streams_from_the_storage(storage: Storage, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_bytes(b"x,y\n" * 1_000_000)  # 4 MB: several chunks
    storage.put_file(big, "operations/op/anomalies.csv")
    with storage.open("operations/op/results.json", "wb") as fh:
        fh.write(b'{"from": "the file"}')
    row = {
        "operation_id": "op",
        "result_dir": "operations/op",
        "results": {"artifacts": [{"path": "anomalies.csv"}, {"path": "gone.pdf"}]},
    }
    parts = list(results_zip(row, storage))
    assert len(parts) > 2 and max(len(p) for p in parts) < 2 << 20  # never one whole buffer
    with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as zf:
        assert zf.namelist() == ["results.json", "anomalies.csv"]
        assert zf.read("results.json") == b'{"from": "the file"}'
        assert zf.read("anomalies.csv") == big.read_bytes()
    # no results.json stored (a run killed early): the store's document instead
    row["result_dir"] = "operations/other"
    with zipfile.ZipFile(io.BytesIO(b"".join(results_zip(row, storage)))) as zf:
        assert zf.namelist() == ["results.json"]
