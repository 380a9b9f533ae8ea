"""The blob port's implementations: content-addressed files beside the database, or bytes in memory.

Folder layout (`FileBlobs`): `<root>/ab/abcdef...` holds the blob whose sha256 is `abcdef...` (the first two
hex digits fan the files out over 256 folders), and `<root>/tmp/` holds writes in progress, named
`<pid>-<random>.part`. A write goes to a temporary file in `tmp/` (the same file system), is flushed and
fsynced (not a prepared variant's: a cache, made again if a power cut loses it), then renamed to its key: a
reader sees the whole blob or none, whatever kills the writer. A durable blob of a megabyte or more (an original)
is written around the page cache where the file system takes it (server/stores/direct_write.py). Opening the
folder removes the temporary files of writers that are gone (their process no longer runs, or the file is
older than an hour), so a killed writer leaves nothing behind for long.

A staged original (`stage`, while its image is checked) is written, synced and renamed to its key, its folder
synced too, all beside the decode, so the put that follows has nothing left to wait for. If no load of it
stores it in the end, `unstage` removes it through the store's `forget`, which keeps it if a record names it
by now (another load of the same bytes did store it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from server.stores import direct_write

log = logging.getLogger(__name__)
STALE_SECONDS = 3600.0  # a temporary file this old belongs to no live write
# Blobs up to this size are read without a worker thread (FileBlobs.get_sized).
INLINE_READ_BYTES = 512 * 1024


def blob_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_key(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


class FileBlobs:
    """Blobs as files under `root`; every operation runs in a worker thread (they may touch megabytes)."""

    def __init__(self, root: Path, forget: Callable[[str], None] | None = None, *, direct: bool = True) -> None:
        self.root = root
        # Durable blobs of DIRECT_MIN_BYTES and more (originals) are written around the page cache
        # (server/stores/direct_write.py) until the file system refuses it once.
        self.direct = direct and direct_write.available()
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.clean_leftovers()
        # (worker thread) Remove a staged blob that no load stored, unless a record names it by now; the store's,
        # which can look at its records under its write lock. Without one, the blob is removed.
        self.forget = forget or self.remove
        # Loads in this process that staged a key and have not unstaged it yet, and the keys whose files their
        # stage wrote and no put has claimed: those are removed when the last of their loads unstages them.
        self.staged: dict[str, int] = {}
        self.placed: set[str] = set()
        self.staged_lock = threading.Lock()

    def path(self, key: str) -> Path:
        if not is_key(key):
            raise ValueError(f"not a blob key: {key!r}")
        return self.root / key[:2] / key

    def clean_leftovers(self) -> int:
        """Remove the temporary files of writes whose writer is gone; the number removed."""
        removed = 0
        for entry in os.scandir(self.tmp):
            if entry.name.endswith(".part") and not writer_alive(entry):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed

    def write(self, data: bytes, key: str | None = None, durable: bool = True) -> str:
        """Write `data` under its key (blocking); an existing blob is kept, and marked as just used. `durable`:
        on disk before the name says it is there (see Blobs.put)."""
        key = key or blob_key(data)
        final = self.path(key)
        if whole(final, len(data)):
            # Touched so that a prune running now in another process sees it as new (see retention.py).
            os.utime(final)
            return key
        self.place(data, final, durable=durable)
        if durable:
            sync_folder(final.parent)
        return key

    def place(self, data: bytes, final: Path, *, durable: bool) -> None:
        """`data` under the name `final`, by way of a temporary file (synced when `durable`); the folder is the
        caller's to sync."""
        final.parent.mkdir(exist_ok=True)
        part = self.write_part(data, durable=durable)
        try:
            os.replace(part, final)  # atomic: whatever kills the process, the name holds all of it or nothing
        except BaseException:
            part.unlink(missing_ok=True)
            raise

    def write_part(self, data: bytes, *, durable: bool) -> Path:
        """`data` in a new temporary file (synced when `durable`)."""
        part = self.tmp / f"{os.getpid()}-{secrets.token_hex(6)}.part"
        if durable and self.direct and len(data) >= direct_write.DIRECT_MIN_BYTES:
            if direct_write.write_direct(part, data):
                return part
            self.direct = False
            log.info("%s takes no direct I/O: originals are written through the page cache", self.root)
        try:
            with open(part, "wb") as out:
                out.write(data)
                if durable:
                    out.flush()
                    # The bytes are on disk before the name says they are there. Their pages stay cached (a small
                    # blob, or a file system without direct I/O): clean pages go by themselves when memory is
                    # wanted. Dropping them (posix_fadvise DONTNEED) measured 3% slower on load_image + chat of a
                    # 24 MP photo, in a harness where two groups of identical servers differ by up to 6%.
                    os.fsync(out.fileno())
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return part

    def write_staged(self, data: bytes, key: str) -> None:
        with self.staged_lock:
            self.staged[key] = self.staged.get(key, 0) + 1
        final = self.path(key)
        if whole(final, len(data)):
            return  # stored already, or staged by another load of the same bytes
        self.place(data, final, durable=True)
        with self.staged_lock:
            self.placed.add(key)
        sync_folder(final.parent)

    def read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def stat_size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def remove(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def all_keys(self) -> list[str]:
        return [entry.name for folder in self.root.glob("??") for entry in os.scandir(folder) if is_key(entry.name)]

    def modified(self, key: str) -> float | None:
        try:
            return self.path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    async def put(self, data: bytes, *, key: str | None = None, durable: bool = True) -> str:
        if key is not None and self.claim(key):
            return key  # staged: written, synced and named already (a record checks it is still whole)
        return await anyio.to_thread.run_sync(self.write, data, key, durable)

    def claim(self, key: str) -> bool:
        """Whether this process's stage wrote `key` and no put has claimed it yet; this put claims it."""
        with self.staged_lock:
            if key not in self.placed:
                return False
            self.placed.discard(key)
            return True

    async def stage(self, data: bytes, key: str) -> None:
        await anyio.to_thread.run_sync(self.write_staged, data, key)

    async def unstage(self, key: str) -> None:
        with self.staged_lock:
            left = self.staged.get(key, 0) - 1
            if left > 0:
                self.staged[key] = left  # another load of the same bytes is still being checked
                return
            self.staged.pop(key, None)
            if key not in self.placed:
                return  # mostly: the put claimed it (no thread for a look at a dict)
            self.placed.discard(key)
        await anyio.to_thread.run_sync(self.forget, key)

    async def get(self, key: str) -> bytes | None:
        return await anyio.to_thread.run_sync(self.read, key)

    async def get_sized(self, key: str, size: int) -> bytes | None:
        """`get` of a blob whose record gives its size. A small one (a prepared variant for a tile model) is read
        on the event loop: a few hundred kilobytes from the page cache take some 50 us, the hand-off to a worker
        thread and back 0.4 ms on a virtual machine, in every chat."""
        if size <= INLINE_READ_BYTES:
            return self.read(key)
        return await self.get(key)

    async def size(self, key: str) -> int | None:
        return await anyio.to_thread.run_sync(self.stat_size, key)

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self.remove, key)

    async def keys(self) -> list[str]:
        return await anyio.to_thread.run_sync(self.all_keys)


class MemoryBlobs:
    """Blobs in this process's memory (the memory store's)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.added: dict[str, float] = {}

    async def put(self, data: bytes, *, key: str | None = None, durable: bool = True) -> str:
        if key is None:
            key = await anyio.to_thread.run_sync(blob_key, data) if len(data) > 65536 else blob_key(data)
        self.data.setdefault(key, data)
        self.added[key] = time.time()
        return key

    async def stage(self, data: bytes, key: str) -> None:
        return None  # nothing slow to do beforehand

    async def unstage(self, key: str) -> None:
        return None

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def size(self, key: str) -> int | None:
        found = self.data.get(key)
        return None if found is None else len(found)

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)
        self.added.pop(key, None)

    async def keys(self) -> list[str]:
        return list(self.data)

    def modified(self, key: str) -> float | None:
        return self.added.get(key)


def whole(path: Path, size: int) -> bool:
    """Whether the blob file is there with all its bytes: one written without waiting for the disk (a variant)
    can be short after a power cut, and is then written again."""
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def writer_alive(entry: os.DirEntry[str]) -> bool:
    """Whether the temporary file `entry` may still be being written (by its pid, where that can be asked)."""
    try:
        if time.time() - entry.stat().st_mtime > STALE_SECONDS:
            return False
    except FileNotFoundError:
        return True  # already gone
    pid_text = entry.name.split("-", 1)[0]
    if sys.platform == "win32" or not pid_text.isdigit():
        return True  # os.kill(pid, 0) would end the process on Windows: wait for the age rule instead
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # another store of this process may be writing it (a failed write removes its own file)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; Windows has no directory handles to sync)."""
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
