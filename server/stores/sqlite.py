"""The embedded default: one SQLite file in WAL mode holding records, and a blob folder beside it for bytes.

Small statements (a conversation's own row, a turn of a few kilobytes, an image record) run inline on the event
loop: they take tens of microseconds, less than handing them to a worker thread. What may be large (a
conversation read with more than `INLINE_TURNS` turns, a turn of more than `INLINE_BYTES`, every blob) runs in a
worker thread.
The inline path never waits: if the connection is in use by a worker thread, or another process holds the
write lock, the statement goes to a worker thread, which waits there as long as it must.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import anyio

from server.stores import sqlite_prune, sqlite_schema
from server.stores.blobs import FileBlobs, whole
from server.stores.leases import LEASE_SECONDS, LeasedStore, LeaseLocks
from server.stores.records import TypedRecords
from server.stores.retention import Pruned, Retention, choose
from server.stores.sqlite_inline import Statements
from server.stores.sqlite_leases import SqliteLeases
from tools.models import Conversation, Turn
from tools.running import new_owner

T = TypeVar("T")
TABLES = {"image": "images", "file": "files"}  # the kinds of record, and the table each lives in
log = logging.getLogger(__name__)
INLINE_BYTES = 64 * 1024  # a write up to this size runs on the event loop
# A conversation with up to this many turns is read on the event loop: a chat reads its conversation three times,
# and a thread hop costs more than reading a few turns of a few kilobytes each.
INLINE_TURNS = 4
WAIT_MS = 30_000  # how long a worker thread waits for another process's write lock


class SqliteStore(TypedRecords, LeasedStore):
    def __init__(
        self, path: Path, *, owner: str | None = None, lease_seconds: float = LEASE_SECONDS, direct_writes: bool = True
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.blobs = FileBlobs(path.parent / "blobs", forget=self.forget_blob, direct=direct_writes)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=WAIT_MS / 1000)
        sqlite_schema.use_wal(self.db)
        self.db.execute("PRAGMA synchronous=NORMAL")
        sqlite_schema.prepare(self.db, self.blobs)
        self.statements = Statements(self.db, WAIT_MS)
        # Leases in a file beside it, so every process on the database takes the same locks (server/stores/leases.py).
        leases = path.with_name(path.stem + "-leases.sqlite3")
        self.leases = (SqliteLeases(leases, "lock:"), SqliteLeases(leases, "turn:"))
        owner = owner or new_owner()
        self._locks = LeaseLocks(self.leases[0], owner, lease_seconds)
        self._turn_locks = LeaseLocks(self.leases[1], owner, lease_seconds)

    # -- running statements ---------------------------------------------------------------------------

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, small: bool = True) -> T:
        return await self.statements.run(fn, small=small)

    # -- conversations --------------------------------------------------------------------------------

    async def get_conversation(self, conversation_id: str, *, with_turns: bool = True) -> Conversation | None:
        def read_head(db: sqlite3.Connection) -> tuple[str, int] | None:
            count = "(SELECT count(*) FROM turns WHERE conversation = ?1)" if with_turns else "0"
            select = f"SELECT head, {count} FROM conversations WHERE id = ?1"  # noqa: S608 - one of two constants
            row = db.execute(select, (conversation_id,)).fetchone()
            return None if row is None else (str(row[0]), int(row[1]))

        def read_turns(db: sqlite3.Connection) -> list[str]:
            docs = db.execute("SELECT doc FROM turns WHERE conversation = ? ORDER BY turn", (conversation_id,))
            return [doc for (doc,) in docs]

        found = await self.run(read_head)
        if found is None:
            return None
        head, turns = found
        docs = await self.run(read_turns, small=turns <= INLINE_TURNS) if turns else []
        conversation = Conversation.model_validate_json(head)
        conversation.turns = [Turn.model_validate_json(doc) for doc in docs]
        return conversation

    async def put_conversation(self, conversation: Conversation) -> None:
        await self.put_changes(conversation, conversation.turns)

    async def put_changes(self, conversation: Conversation, turns: Sequence[Turn] = ()) -> None:
        head = conversation.model_dump_json(exclude={"turns"})
        docs = [(conversation.id, turn.turn, turn.model_dump_json()) for turn in turns]

        def write_head(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO conversations (id, head, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET head = excluded.head, updated_at = excluded.updated_at",
                (conversation.id, head, conversation.created_at, time.time()),
            )

        def write(db: sqlite3.Connection) -> None:
            if not docs:
                write_head(db)  # one statement is its own transaction
                return
            with transaction(db):
                write_head(db)
                db.executemany("INSERT OR REPLACE INTO turns (conversation, turn, doc) VALUES (?, ?, ?)", docs)

        await self.run(write, small=len(head) + sum(len(doc) for *_, doc in docs) <= INLINE_BYTES)

    async def list_conversations(self) -> list[str]:
        rows = await self.run(lambda db: db.execute("SELECT id FROM conversations ORDER BY id").fetchall())
        return [row[0] for row in rows]

    # -- images, files and variants: records here, bytes in the blob folder ---------------------------

    async def put_record(self, kind: str, item: str, meta: str, data: bytes, *, key: str | None = None) -> None:
        table = TABLES[kind]
        touch = f"UPDATE {table} SET created_at = ? WHERE id = ?"  # noqa: S608 - a table name from TABLES
        insert = f"INSERT OR IGNORE INTO {table} VALUES (?, ?, ?, ?, ?)"  # noqa: S608 - id, meta, blob, bytes, at

        def known(db: sqlite3.Connection) -> bool:
            # Loaded before: mark it as used now, so a prune's grace period covers this load too.
            return db.execute(touch, (time.time(), item)).rowcount > 0

        def insert_whole(blob: str) -> Callable[[sqlite3.Connection], bool]:
            def run(db: sqlite3.Connection) -> bool:
                # Under the write lock, which forget_blob takes too: a load of the same bytes that gave up
                # cannot remove the blob between this look and the record.
                with transaction(db):
                    if not whole(self.blobs.path(blob), len(data)):
                        return False
                    db.execute(insert, (item, meta, blob, len(data), time.time()))
                return True

            return run

        if await self.run(known):
            return
        for _ in range(3):
            blob = await self.blobs.put(data, key=key)  # whole on disk before any record names it
            if await self.run(insert_whole(blob)):
                return
        raise OSError(f"the {table} blob {blob} kept disappearing before its record was written")

    def forget_blob(self, key: str) -> None:
        """(worker thread) Remove the blob `key`, staged by loads that did not store it, unless a record names it
        by now: under the write lock, so no record naming it is written in between (see put_record)."""

        def forget(db: sqlite3.Connection) -> None:
            with transaction(db):
                if not sqlite_prune.named(db, key):
                    self.blobs.remove(key)

        self.statements.waiting(forget)

    async def get_record(self, kind: str, item: str, *, data: bool) -> tuple[str, bytes] | None:
        table = TABLES[kind]
        select = f"SELECT meta, blob FROM {table} WHERE id = ?"  # noqa: S608 - a table name from TABLES
        row = await self.run(lambda db: db.execute(select, (item,)).fetchone())
        if row is None:
            return None
        if not data:
            return row[0], b""
        blob = await self.blobs.get(row[1])
        if blob is None:
            log.warning("the %s record %s names blob %s, which is missing", table, item, row[1])
            return None
        return row[0], blob

    async def get_variant(self, key: str) -> tuple[str, bytes] | None:
        select = "SELECT mime, blob, bytes FROM variants WHERE key = ?"
        row = await self.run(lambda db: db.execute(select, (key,)).fetchone())
        if row is None:
            return None
        blob = await self.blobs.get_sized(row[1], row[2])
        # A variant is written without waiting for the disk (put_variant): after a power cut its file may be
        # short. Then it is missing, and chat prepares it again from the original.
        return None if blob is None or len(blob) != row[2] else (str(row[0]), blob)

    async def put_variant(self, key: str, mime: str, data: bytes) -> None:
        blob = await self.blobs.put(data, durable=False)  # a cache: made again from the original if lost
        await self.run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO variants (key, mime, blob, bytes, created_at) VALUES (?, ?, ?, ?, ?)",
                (key, mime, blob, len(data), time.time()),
            )
        )

    async def put_batch_record(self, run_id: str, item: str, record: str) -> None:
        await self.run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO batch_records (run, item, record) VALUES (?, ?, ?)", (run_id, item, record)
            )
        )

    async def get_batch_records(self, run_id: str) -> dict[str, str]:
        rows = await self.run(
            lambda db: db.execute("SELECT item, record FROM batch_records WHERE run = ?", (run_id,)).fetchall(),
            small=False,
        )
        return {str(item): str(record) for item, record in rows}

    async def prune(self, policy: Retention, *, dry_run: bool = False, now: float | None = None) -> Pruned:
        moment = time.time() if now is None else now

        def work(db: sqlite3.Connection) -> Pruned:
            stock = sqlite_prune.inventory(db, self.blobs)
            pruned = choose(stock, policy, moment)
            if not dry_run:
                sqlite_prune.remove(db, self.blobs, stock, pruned, moment)
            return pruned

        return await self.run(work, small=False)

    # -- closing (the locks are LeasedStore's) -------------------------------------------------------------

    async def close(self) -> None:
        def close() -> None:
            self.statements.close()
            for leases in self.leases:
                leases.close()

        await anyio.to_thread.run_sync(close)


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: the write lock is taken first, so a busy database
    fails before anything is written."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
