"""The embedded default: one SQLite file in WAL mode, so state survives restarts.

sqlite3 blocks, so every statement runs in a worker thread; one connection guarded by a thread lock
is plenty for a single-user server and keeps the writes ordered.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import anyio

from server.stores.locks import LocalLocks
from tools.models import Conversation, FileRecord, ImageRecord

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, doc TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, meta TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, meta TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS variants (key TEXT PRIMARY KEY, mime TEXT NOT NULL, data BLOB NOT NULL,
                                     created_at REAL NOT NULL);
"""


class SqliteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._guard = threading.Lock()
        self._locks = LocalLocks()
        self._turn_locks = LocalLocks()  # apart from _locks: no conversation id can name a turn lock

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._guard:
                return fn(self._db)

        return await anyio.to_thread.run_sync(call)

    async def _one(self, sql: str, *params: Any) -> Any:
        return await self._run(lambda db: db.execute(sql, params).fetchone())

    async def _write(self, sql: str, *params: Any) -> None:
        await self._run(lambda db: db.execute(sql, params))

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        row = await self._one("SELECT doc FROM conversations WHERE id = ?", conversation_id)
        return None if row is None else Conversation.model_validate_json(row[0])

    async def put_conversation(self, conversation: Conversation) -> None:
        await self._write(
            "INSERT INTO conversations (id, doc, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
            conversation.id,
            conversation.model_dump_json(),
            time.time(),
        )

    async def list_conversations(self) -> list[str]:
        rows = await self._run(lambda db: db.execute("SELECT id FROM conversations ORDER BY id").fetchall())
        return [row[0] for row in rows]

    async def put_image(self, record: ImageRecord, data: bytes) -> None:
        await self._write(
            "INSERT OR IGNORE INTO images (id, meta, data) VALUES (?, ?, ?)",
            record.image_id,
            record.model_dump_json(),
            data,
        )

    async def get_image(self, image_id: str) -> tuple[ImageRecord, bytes] | None:
        row = await self._one("SELECT meta, data FROM images WHERE id = ?", image_id)
        return None if row is None else (ImageRecord.model_validate_json(row[0]), bytes(row[1]))

    async def get_image_record(self, image_id: str) -> ImageRecord | None:
        row = await self._one("SELECT meta FROM images WHERE id = ?", image_id)
        return None if row is None else ImageRecord.model_validate_json(row[0])

    async def put_file(self, record: FileRecord, data: bytes) -> None:
        await self._write(
            "INSERT OR IGNORE INTO files (id, meta, data) VALUES (?, ?, ?)",
            record.file_id,
            record.model_dump_json(),
            data,
        )

    async def get_file(self, file_id: str) -> tuple[FileRecord, bytes] | None:
        row = await self._one("SELECT meta, data FROM files WHERE id = ?", file_id)
        return None if row is None else (FileRecord.model_validate_json(row[0]), bytes(row[1]))

    async def get_variant(self, key: str) -> tuple[str, bytes] | None:
        row = await self._one("SELECT mime, data FROM variants WHERE key = ?", key)
        return None if row is None else (str(row[0]), bytes(row[1]))

    async def put_variant(self, key: str, mime: str, data: bytes) -> None:
        await self._write(
            "INSERT OR REPLACE INTO variants (key, mime, data, created_at) VALUES (?, ?, ?, ?)",
            key,
            mime,
            data,
            time.time(),
        )

    def lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(conversation_id)

    def turn_lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        return self._turn_locks.hold(conversation_id)

    async def close(self) -> None:
        await self._run(lambda db: db.close())
