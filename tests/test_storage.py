"""Storage contract, run against a local folder and S3 (moto over HTTP): same behaviour behind one interface."""

from __future__ import annotations

from pathlib import Path

import pytest

from trailsight.errors import StorageError
from trailsight.storage.store import Storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return Storage(tmp_path / "store")
    return Storage(request.getfixturevalue("s3_bucket") + "/some/prefix")


def test_written_objects_are_listed_and_read_back(storage: Storage) -> None:
    storage.write_bytes("a/b/one.json.gz", b"1")
    storage.write_bytes("a/c/two.json.gz", b"22")
    storage.write_bytes("a/three.txt", b"333")
    assert storage.list_dirs("a") == ["b", "c"]
    assert [(o.key, o.size) for o in storage.list_files("a")] == [
        ("a/b/one.json.gz", 1), ("a/c/two.json.gz", 2), ("a/three.txt", 3)]
    assert [o.key for o in storage.list_files("a", recursive=False)] == ["a/three.txt"]
    assert storage.read_bytes("a/c/two.json.gz") == b"22"


def test_gzip_objects_are_read_as_stored_bytes(storage: Storage) -> None:
    storage.write_bytes("x.json.gz", b"\x1f\x8bnot really gzip")
    assert storage.read_bytes("x.json.gz") == b"\x1f\x8bnot really gzip"


def test_overwrite_replaces_the_whole_object(storage: Storage) -> None:
    storage.write_bytes("k", b"old contents")
    storage.write_bytes("k", b"new")
    assert storage.read_bytes("k") == b"new"


def test_exclusive_create_succeeds_once(storage: Storage) -> None:
    assert storage.create_exclusive("_lock", b"first")
    assert not storage.create_exclusive("_lock", b"second")
    assert storage.read_bytes("_lock") == b"first"
    storage.delete("_lock")
    assert storage.create_exclusive("_lock", b"third")


def test_missing_object_is_a_storage_error(storage: Storage) -> None:
    with pytest.raises(StorageError, match="no such object"):
        storage.read_bytes("nope")
    assert not storage.exists("nope")
    storage.delete("nope")


def test_listing_a_missing_prefix_is_empty(storage: Storage) -> None:
    assert storage.list_dirs("nothing/here") == []
    assert list(storage.list_files("nothing/here")) == []


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/etc/passwd", "a/./b"])
def test_keys_that_would_escape_the_root_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(StorageError, match="refusing object key"):
        storage.write_bytes(key, b"x")
