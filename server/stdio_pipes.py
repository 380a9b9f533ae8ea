"""Serving stdio over pipes without a worker thread per message (Linux).

The SDK reads stdin and writes stdout through worker threads: a line read, a write and a flush are three
hand-offs between a thread and the event loop for every message, about a third of what a cheap call costs the
server. When both ends are pipes, as every MCP client that starts a server makes them, the server reads and
writes them on the event loop instead, waiting for them like sockets.

Each pipe is opened again through /proc/self/fd, which gives this process a description of its own, so making
it non-blocking cannot change how the client or anything sharing the original descriptors sees the pipe. While
serving, fd 0 reads the null device and fd 1 goes to stderr, as the SDK arranges for its own transport: stray
output of a library cannot reach the wire. Anywhere else (macOS, Windows, a file or socket on stdin) the
SDK's own transport serves.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

CHUNK = 1 << 16


class StdioServer(Protocol):
    async def run_stdio_lines(self, lines: Any, out: Any = None) -> None: ...

    async def run_stdio_async(self) -> None: ...


def usable() -> bool:
    """Whether stdin and stdout are pipes this platform can reopen and wait on."""
    if sys.platform != "linux":
        return False
    try:
        return all(stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in (0, 1))
    except OSError:
        return False


class FdLines:
    """The lines arriving on a descriptor (a non-blocking pipe, or a terminal), as text with undecodable bytes
    replaced, as the SDK reads them. Read on the event loop, waiting for the descriptor as for a socket, so a
    cancellation interrupts the wait at once."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.searched = 0  # bytes of the buffer already known to hold no newline

    def __aiter__(self) -> FdLines:
        return self

    async def __anext__(self) -> str:
        while True:
            end = self.buffer.find(b"\n", self.searched)
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                self.searched = 0
                return line.decode("utf-8", errors="replace")
            self.searched = len(self.buffer)
            chunk = await self.read()
            if not chunk:  # the client closed its end (Ctrl-D on a terminal)
                if self.buffer:
                    line, self.buffer = bytes(self.buffer), bytearray()
                    return line.decode("utf-8", errors="replace")
                raise StopAsyncIteration
            self.buffer += chunk

    async def read(self) -> bytes:
        # Waiting first: a terminal's descriptor blocks, and a read of an empty one would block the event loop.
        while True:
            await anyio.wait_readable(self.fd)
            try:
                return os.read(self.fd, CHUNK)
            except BlockingIOError:  # woken, but another reader took the bytes: wait again
                continue


@dataclass
class PipeWriter:
    """The text interface the SDK's stdio loop writes messages to, on a non-blocking pipe."""

    fd: int

    async def write(self, text: str) -> int:
        data = memoryview(text.encode("utf-8"))
        while data:
            try:
                data = data[os.write(self.fd, data) :]
            except BlockingIOError:  # the pipe is full until the client reads: wait, as for a socket
                await anyio.wait_writable(self.fd)
        return len(text)

    async def flush(self) -> None:
        return None  # nothing is buffered here


def reopened() -> tuple[int, int]:
    """Non-blocking descriptions of stdin's and stdout's pipes, this process's own."""
    reader = os.open("/proc/self/fd/0", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return reader, os.open("/proc/self/fd/1", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        os.close(reader)
        raise


@contextmanager
def diverted(reader: int, writer: int) -> Iterator[None]:
    """fd 0 reading the null device and fd 1 going to stderr until the block ends; then both restored, and
    `reader` and `writer` closed."""
    saved = (os.dup(0), os.dup(1))
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        sys.stdout.flush()
        os.dup2(null, 0)
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved[0], 0)
        os.dup2(saved[1], 1)
        for fd in (null, *saved, reader, writer):
            os.close(fd)


async def serve(server: StdioServer) -> None:
    try:
        reader, writer = reopened()
    except OSError:  # a pipe could not be opened again (its other end closed): the SDK's transport serves
        await server.run_stdio_async()
        return
    with diverted(reader, writer):
        await server.run_stdio_lines(FdLines(reader), PipeWriter(writer))


def run(server: StdioServer) -> None:
    anyio.run(serve, server)
