"""A durable blob written around the page cache (O_DIRECT), where the platform and the file system take it.

An original is written once, synced, and read back only when its image is prepared again for another model or
detail. Through the page cache, every one of its pages is new cache memory: 8 MB took 12 ms of CPU on the
benchmark machine (a virtual machine whose host takes freed memory back, so each new page is backed again)
against 3 ms written directly, and a bulk load of thousands of photos would push everything else out of the
cache. Written directly, the bytes go from an aligned buffer (reused, so its memory stays backed) to the disk.

Direct I/O wants the buffer, the file offset and the length aligned to the device's block. ALIGN covers every
block size in use, and the last block is padded with zeros and cut off by a truncate. Linux only: macOS and
Windows have no O_DIRECT, and the caller writes through the cache there.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["ALIGN", "CHUNK", "DIRECT_MIN_BYTES", "available", "write_direct"]

ALIGN = 4096  # the largest logical block size of disks in use; a multiple of every smaller one
CHUNK = 1 << 20  # bytes copied into the aligned buffer and written per call (a multiple of ALIGN)
# Smaller blobs are written through the cache: a direct write waits for the disk in the call itself, which for a
# few hundred kilobytes costs more than the page copies it saves.
DIRECT_MIN_BYTES = 1 << 20
KEPT_BUFFERS = 2  # aligned buffers kept for reuse (1 MB each); a third concurrent write maps its own

_free: list[mmap.mmap] = []
_free_lock = threading.Lock()


def available() -> bool:
    return hasattr(os, "O_DIRECT")


@contextmanager
def _buffer() -> Iterator[mmap.mmap]:
    """A page-aligned buffer of CHUNK bytes (an anonymous mapping), from the kept ones when one is free."""
    with _free_lock:
        buffer = _free.pop() if _free else None
    if buffer is None:
        buffer = mmap.mmap(-1, CHUNK)
    try:
        yield buffer
    finally:
        with _free_lock:
            if len(_free) < KEPT_BUFFERS:
                _free.append(buffer)
                buffer = None
        if buffer is not None:
            buffer.close()


def write_direct(path: Path, data: bytes) -> bool:
    """`data` in the new file `path`, written directly and fsynced. False, with no file left, when the platform
    or the file system does not take direct I/O (EINVAL: tmpfs before Linux 6.6, some FUSE file systems): the
    caller then writes through the cache. Any other error is raised, with no file left."""
    if not available():
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    try:
        _write_all(fd, data)
        os.fsync(fd)  # the data is on the device, but the file's size and blocks are metadata, and the disk has a cache
    except BaseException as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.EINVAL:
            return False  # opened, but refused at the write: an alignment this device does not take
        raise
    os.close(fd)
    return True


def _write_all(fd: int, data: bytes) -> None:
    size = len(data)
    with _buffer() as buffer, memoryview(buffer) as aligned, memoryview(data) as source:
        offset = 0
        while offset < size:
            count = min(CHUNK, size - offset)
            aligned[:count] = source[offset : offset + count]
            padded = -(-count // ALIGN) * ALIGN  # only the last piece is short
            if padded > count:
                aligned[count:padded] = bytes(padded - count)
            done = 0
            while done < padded:
                written = os.pwrite(fd, aligned[done:padded], offset + done)
                if written <= 0:
                    raise OSError(errno.EIO, "the disk took no bytes of a direct write")
                done += written
            offset += count
    if size % ALIGN:
        os.ftruncate(fd, size)  # the zeros that padded the last block
