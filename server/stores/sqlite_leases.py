"""Leases in a small SQLite file beside the database, shared by every process that opens the database
(server/stores/leases.py).

One row per held lease; each statement is atomic on its own, and a lease whose time ran out counts as free.
The clock is the machine's wall clock, which every process on one machine shares (a SQLite file is never
shared between machines safely anyway). A file of their own keeps the lease writes out of the database's
write lock and log; nothing in it needs to survive a crash (every holder dies with the machine), so it is
not synced. The statements use their own connection.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from server.stores.sqlite_inline import Statements
from server.stores.sqlite_schema import use_wal

T = TypeVar("T")
WAIT_S = 30.0
SCHEMA = "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, token TEXT NOT NULL, expires REAL NOT NULL)"


class SqliteLeases:
    def __init__(self, path: Path, space: str) -> None:
        self.space = space  # a prefix, so that two key spaces share the table without meeting
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=WAIT_S)
        use_wal(self.db)
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute(SCHEMA)
        # On the event loop when the file is free, in a worker thread waiting up to WAIT_S when another
        # connection writes (server/stores/sqlite_inline.py).
        self.statements = Statements(self.db, int(WAIT_S * 1000))

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.statements.run(fn)

    async def take(self, name: str, token: str, ttl: float) -> bool:
        now = time.time()
        taken = await self.run(
            lambda db: (
                db.execute(
                    "INSERT INTO leases (name, token, expires) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                    "token = excluded.token, expires = excluded.expires WHERE leases.expires < ?",
                    (self.space + name, token, now + ttl, now),
                ).rowcount
            )
        )
        return bool(taken)

    async def renew(self, name: str, token: str, ttl: float) -> bool:
        renewed = await self.run(
            lambda db: (
                db.execute(
                    "UPDATE leases SET expires = ? WHERE name = ? AND token = ?",
                    (time.time() + ttl, self.space + name, token),
                ).rowcount
            )
        )
        return bool(renewed)

    async def drop(self, name: str, token: str) -> None:
        await self.run(
            lambda db: db.execute("DELETE FROM leases WHERE name = ? AND token = ?", (self.space + name, token))
        )

    async def holder(self, name: str) -> str | None:
        row = await self.run(
            lambda db: db.execute(
                "SELECT token FROM leases WHERE name = ? AND expires >= ?", (self.space + name, time.time())
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def close(self) -> None:
        self.statements.close()
