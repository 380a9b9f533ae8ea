"""Originals are written to disk around the page cache, whole, and read back whole; where the file system does not
take direct I/O they are written through the cache; any other failure leaves nothing behind.

Whether a file's pages are cached is asked of the kernel itself: a read with RWF_NOWAIT fails rather than wait
for the disk when they are not (Linux, like direct I/O)."""

from __future__ import annotations

import errno
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.settings import Settings, parse
from server.stores import direct_write, open_store
from server.stores.blobs import FileBlobs, blob_key
from server.stores.sqlite import SqliteStore
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream
from tests.helpers import call
from tests.test_image_once import photo, sent_size
from tools import image_sizing

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="direct I/O and RWF_NOWAIT are Linux's")

MODEL = "gpt-5"


def cached(path: Path) -> bool:
    """Whether the first page of `path` is in the page cache (a read that may not wait for the disk succeeds)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [bytearray(4096)], 0, os.RWF_NOWAIT)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def stored(blobs: FileBlobs, data: bytes) -> Path:
    return blobs.path(blobs.write(data))


@pytest.mark.parametrize(
    "size",
    [
        direct_write.DIRECT_MIN_BYTES,  # the smallest written directly
        2 * direct_write.CHUNK + 1,  # one byte into a third buffer's worth
        3 * direct_write.CHUNK + direct_write.ALIGN - 1,  # a last block padded by all but one byte
    ],
)
def test_an_original_is_written_around_the_page_cache_and_reads_back_whole(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    blobs = FileBlobs(tmp_path / "blobs")
    path = stored(blobs, data)
    assert not cached(path)
    assert path.stat().st_size == size  # the padding of the last block is cut off
    assert blobs.read(blob_key(data)) == data
    assert list(blobs.tmp.iterdir()) == []


def test_through_the_cache_when_asked_and_for_small_or_cached_blobs(tmp_path: Path) -> None:
    large = os.urandom(2 * direct_write.DIRECT_MIN_BYTES)
    assert cached(stored(FileBlobs(tmp_path / "off", direct=False), large))  # --no-direct-writes
    blobs = FileBlobs(tmp_path / "blobs")
    small = os.urandom(direct_write.DIRECT_MIN_BYTES - 1)
    assert cached(stored(blobs, small))  # small: the disk's wait would cost more
    variant = blobs.path(blobs.write(large, durable=False))  # a prepared variant: a cache, never synced
    assert cached(variant)
    assert blobs.direct  # none of that was a refusal


def test_a_staged_original_is_written_directly(tmp_path: Path) -> None:
    data = os.urandom(3 * direct_write.CHUNK)
    blobs = FileBlobs(tmp_path / "blobs")
    key = blob_key(data)
    anyio.run(blobs.stage, data, key)  # as load_image writes it during the decode
    assert not cached(blobs.path(key))
    assert blobs.read(key) == data


def test_concurrent_writes_past_the_kept_buffers_each_write_their_own_bytes(tmp_path: Path) -> None:
    blobs = FileBlobs(tmp_path / "blobs")
    pieces = [os.urandom(2 * direct_write.CHUNK + n) for n in range(direct_write.KEPT_BUFFERS + 3)]

    async def write_all() -> list[str]:
        keys: list[str] = []

        async def one(data: bytes) -> None:
            keys.append(await blobs.put(data))

        async with anyio.create_task_group() as group:
            for data in pieces:
                group.start_soon(one, data)
        return keys

    keys = anyio.run(write_all)
    assert sorted(keys) == sorted(blob_key(data) for data in pieces)
    for data in pieces:
        assert blobs.read(blob_key(data)) == data


def refuse_direct_open(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A file system without direct I/O, as tmpfs before Linux 6.6: opening with O_DIRECT fails with EINVAL."""
    refused: list[int] = []
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_DIRECT:
            refused.append(flags)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    return refused


def test_a_file_system_without_direct_io_gets_its_originals_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    refused = refuse_direct_open(monkeypatch)
    blobs = FileBlobs(tmp_path / "blobs")
    first, second = os.urandom(2 * direct_write.CHUNK), os.urandom(2 * direct_write.CHUNK)
    with caplog.at_level(logging.INFO, logger="server.stores.blobs"):
        assert cached(stored(blobs, first))
        assert cached(stored(blobs, second))
    assert blobs.read(blob_key(first)) == first and blobs.read(blob_key(second)) == second
    assert len(refused) == 1  # asked once, then remembered
    assert [r.getMessage() for r in caplog.records] == [
        f"{blobs.root} takes no direct I/O: originals are written through the page cache"
    ]
    assert list(blobs.tmp.iterdir()) == []


def test_a_device_that_refuses_the_write_itself_gets_the_original_through_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def pwrite(fd: int, data: Any, offset: int) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")  # opened, but the alignment is not this device's

    monkeypatch.setattr(os, "pwrite", pwrite)
    blobs = FileBlobs(tmp_path / "blobs")
    data = os.urandom(2 * direct_write.CHUNK)
    assert cached(stored(blobs, data))
    assert blobs.read(blob_key(data)) == data and not blobs.direct
    assert list(blobs.tmp.iterdir()) == []


def test_a_full_disk_fails_the_write_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_pwrite = os.pwrite
    calls: list[int] = []

    def pwrite(fd: int, data: Any, offset: int) -> int:
        calls.append(offset)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    blobs = FileBlobs(tmp_path / "blobs")
    data = os.urandom(3 * direct_write.CHUNK)
    with pytest.raises(OSError) as raised:
        blobs.write(data)
    assert raised.value.errno == errno.ENOSPC  # reported as it is, not hidden by a second try through the cache
    assert not blobs.path(blob_key(data)).exists()
    assert list(blobs.tmp.iterdir()) == []
    assert blobs.direct  # a full disk says nothing about direct I/O


def test_the_setting_reaches_the_sqlite_store(tmp_path: Path) -> None:
    def blobs_of(argv: list[str], environ: dict[str, str]) -> FileBlobs:
        store = open_store(parse(["--store", "sqlite", *argv], environ))
        assert isinstance(store, SqliteStore)
        anyio.run(store.close)
        return store.blobs

    assert blobs_of(["--state-dir", str(tmp_path / "on")], {}).direct
    assert not blobs_of(["--state-dir", str(tmp_path / "off"), "--no-direct-writes"], {}).direct
    assert not blobs_of(["--state-dir", str(tmp_path / "env")], {"IMAGECHAT_DIRECT_WRITES": "0"}).direct


@pytest.mark.parametrize("direct", [True, False])
async def test_a_photo_loaded_then_prepared_for_another_detail_is_read_back_from_disk(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str, direct: bool
) -> None:
    source = photo(pictures / "photo.jpg", 2400, 1600)
    assert source.stat().st_size >= direct_write.DIRECT_MIN_BYTES
    sqlite = replace(settings, store="sqlite", direct_writes=direct)
    async with connect(sqlite, mode) as client:
        await call(client, "set_options", {"conversation_id": "c", "model": MODEL, "detail": "high"})
        await call(client, "load_image", {"source": "photo.jpg", "conversation_id": "c"})
        key = blob_key(source.read_bytes())
        original = sqlite.resolved_state_dir() / "blobs" / key[:2] / key
        assert cached(original) is not direct
        await call(client, "set_options", {"conversation_id": "c", "detail": "low"})
        reply = await call(client, "chat", {"prompt": "What is it?", "conversation_id": "c"})
    assert reply["status"] == "completed"
    # Prepared again from the original, read back from the disk when it was written directly.
    assert sent_size(upstream) == image_sizing.target(2400, 1600, detail="low", model=MODEL).size
    assert original.read_bytes() == source.read_bytes()
