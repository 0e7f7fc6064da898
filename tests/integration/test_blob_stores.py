"""Blob stores against real backends: the local directory and S3 (moto in server mode on
loopback, started here). D4: S3 failing for a while is retried with backoff and never leaves a
half-written object; D5: a blob corrupted at rest is never served as valid."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from envstore.errors import NotFound, Unavailable
from envstore.storage.blobstore import CorruptBlob
from envstore.storage.local import LocalBlobStore
from envstore.storage.memory import MemoryBlobStore
from envstore.storage.s3 import S3BlobStore
from tests.support.server import free_port
from tests.support.tcp_proxy import TcpProxy

BUCKET = "envstore-test"


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        client = _client(url)
        client.create_bucket(Bucket=BUCKET)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _client(url: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _s3(url: str, retry_seconds: float = 20.0, prefix: str = "blobs/sha256/") -> S3BlobStore:
    return S3BlobStore(
        BUCKET,
        prefix=prefix,
        endpoint_url=url,
        access_key="test",
        secret_key="test",
        retry_seconds=retry_seconds,
    )


@pytest.fixture(params=["local", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    if request.param == "memory":
        return MemoryBlobStore()
    url = request.getfixturevalue("moto_url")
    return _s3(url, prefix=f"t{time.monotonic_ns()}/")


def test_store_contract(store: LocalBlobStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert store.get_bytes(digest) == b"hello"
    assert b"".join(store.iter_verified(digest)) == b"hello"
    assert store.size(digest) == 5 and store.exists(digest)
    staged = tmp_path / "staged"
    staged.write_bytes(b"x" * 3_000_000)
    big = hashlib.sha256(staged.read_bytes()).hexdigest()
    with pytest.raises(CorruptBlob):
        store.put_file(staged, digest)  # wrong digest: refused, nothing stored under it
    assert store.get_bytes(digest) == b"hello"
    store.put_file(staged, big)
    assert {b.digest for b in store.list_blobs()} == {digest, big}
    store.delete(digest)
    assert not store.exists(digest)
    with pytest.raises(NotFound):
        store.get_bytes(digest)
    with pytest.raises(NotFound):
        store.get_bytes("../../etc/passwd")


def test_hashed_file_is_stored_under_its_digest(store: LocalBlobStore, tmp_path: Path) -> None:
    """A pack job's file, hashed as it was written: stored and served verified by every
    store; the staged file stays where it was (a later restore after a collection uses it)."""
    staged = tmp_path / "layer"
    staged.write_bytes(b"y" * 3_000_000)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    store.put_hashed_file(staged, digest)
    store.put_hashed_file(staged, digest)  # again, as a second pack of the same bytes would
    assert store.get_bytes(digest) == b"y" * 3_000_000
    assert store.size(digest) == 3_000_000 and staged.exists()
    assert [b.digest for b in store.list_blobs()] == [digest]


def test_local_hashed_file_is_linked_not_copied(tmp_path: Path) -> None:
    """The local store does not read or copy 200 MB again that its writer has just hashed:
    the blob is the staged file itself, synced and hard-linked under its digest."""
    store = LocalBlobStore(tmp_path / "blobs")
    staged = tmp_path / "work" / "archive.tar.gz"
    staged.parent.mkdir()
    staged.write_bytes(b"archive" * 1000)
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    store.put_hashed_file(staged, digest)
    blob = tmp_path / "blobs" / digest
    assert blob.stat().st_ino == staged.stat().st_ino
    assert blob.stat().st_mode & 0o777 == 0o600
    staged.unlink()  # the pack job's work directory is removed: the blob stays
    assert store.get_bytes(digest) == b"archive" * 1000


def test_s3_still_verifies_a_hashed_file(moto_url: str, tmp_path: Path) -> None:
    """An upload reads the file anyway, and an S3-compatible server need not check the
    checksum it is sent (moto does not): a wrong digest stores nothing."""
    store = _s3(moto_url, prefix=f"h{time.monotonic_ns()}/")
    staged = tmp_path / "staged"
    staged.write_bytes(b"z" * 100_000)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(CorruptBlob):
        store.put_hashed_file(staged, wrong)
    assert not store.exists(wrong)


def test_s3_download_url_is_presigned_and_short_lived(moto_url: str) -> None:
    store = _s3(moto_url)
    digest = store.put_bytes(b"archive bytes")
    url = store.download_url(digest, "build-1.tar.gz", "application/gzip")
    assert url is not None and "X-Amz-Expires=300" in url
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"archive bytes"
    assert "build-1.tar.gz" in answer.headers["content-disposition"]
    assert httpx.get(url.split("?")[0]).status_code == 403  # unsigned: refused


def test_D5_corrupted_blob_is_never_served_as_valid(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    digest = store.put_bytes(b"lockfile v1")
    (tmp_path / "blobs" / digest).write_bytes(b"lockfile v2")
    with pytest.raises(CorruptBlob):
        store.get_bytes(digest)
    with pytest.raises(CorruptBlob):
        store.iter_verified(digest)


def test_D4_s3_outage_is_retried_until_it_recovers(moto_url: str) -> None:
    port = int(moto_url.rsplit(":", 1)[1])
    with TcpProxy("127.0.0.1", port) as proxy:
        store = _s3(f"http://127.0.0.1:{proxy.port}", retry_seconds=30)
        proxy.block()
        outcome: list[object] = []
        writer = threading.Thread(target=lambda: outcome.append(store.put_bytes(b"artifact")))
        start = time.monotonic()
        writer.start()
        time.sleep(3)
        assert writer.is_alive()  # still retrying, with backoff
        proxy.unblock()
        writer.join(timeout=30)
        assert not writer.is_alive()
        assert outcome == [hashlib.sha256(b"artifact").hexdigest()]
        assert time.monotonic() - start >= 3
        assert _s3(moto_url).get_bytes(hashlib.sha256(b"artifact").hexdigest()) == b"artifact"


def test_D4_s3_outage_longer_than_the_budget_fails_cleanly(moto_url: str) -> None:
    port = int(moto_url.rsplit(":", 1)[1])
    data = b"never visible" * 1000
    with TcpProxy("127.0.0.1", port) as proxy:
        store = _s3(f"http://127.0.0.1:{proxy.port}", retry_seconds=2)
        proxy.block()
        start = time.monotonic()
        with pytest.raises(Unavailable):
            store.put_bytes(data)
        assert time.monotonic() - start < 20  # a terminal answer, never stuck
    assert not _s3(moto_url).exists(hashlib.sha256(data).hexdigest())
