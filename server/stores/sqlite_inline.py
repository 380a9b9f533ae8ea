"""Running a SQLite connection's statements from the event loop: inline when that is cheaper, else in a thread.

A small statement takes tens of microseconds, less than a hand-off to a worker thread, so it runs on the event
loop when the connection is free at once. The inline path never waits (busy_timeout 0): if a worker thread is
using the connection, or another process holds the write lock, the statement goes to a worker thread, which
waits there up to `wait_ms`. Large work (a caller says so with small=False) always goes to the thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


class Statements:
    def __init__(self, db: sqlite3.Connection, wait_ms: int) -> None:
        self.db = db
        self.wait_ms = wait_ms
        self.guard = threading.Lock()
        db.execute("PRAGMA busy_timeout = 0")

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, small: bool = True) -> T:
        """`fn(connection)`, inline when `small` and the connection is free at once, else in a worker thread."""
        if small and self.guard.acquire(blocking=False):
            try:
                return fn(self.db)
            except sqlite3.OperationalError as exc:
                if not busy(exc):
                    raise
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
            finally:
                self.guard.release()
        return await anyio.to_thread.run_sync(self.waiting, fn)

    def waiting(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self.guard:
            self.db.execute(f"PRAGMA busy_timeout = {self.wait_ms}")
            try:
                return fn(self.db)
            finally:
                self.db.execute("PRAGMA busy_timeout = 0")

    def close(self) -> None:
        with self.guard:
            self.db.close()


def busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
