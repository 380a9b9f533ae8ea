"""The SQLite store's tables, and the move from the first layout (bytes inside the database) to this one.

Layout 2 (`PRAGMA user_version = 2`): records only. A conversation is its own row (`head`: options, pending
attachments, names) plus one row per turn, so a change rewrites only what changed. Images, files and prepared
variants are records naming a blob (the sha256 of their bytes) in the blob folder beside the database.

Layout 1 (user_version 0, from the versions before): `conversations(id, doc, updated_at)` held each conversation
as one JSON document, and `images`/`files`/`variants` held the bytes in a `data` column. `migrate` moves such a
database over when it is opened: every blob is written to the folder first (a content-addressed write can be
repeated), then one transaction renames, copies and drops the old tables, so a migration cut short leaves the
old layout whole and simply runs again at the next open.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from server.stores.blobs import FileBlobs

log = logging.getLogger(__name__)
VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, head TEXT NOT NULL, created_at REAL NOT NULL,
                                          updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS turns (conversation TEXT NOT NULL, turn INTEGER NOT NULL, doc TEXT NOT NULL,
                                  PRIMARY KEY (conversation, turn));
CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, meta TEXT NOT NULL, blob TEXT NOT NULL, bytes INTEGER NOT NULL,
                                   created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, meta TEXT NOT NULL, blob TEXT NOT NULL, bytes INTEGER NOT NULL,
                                  created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS variants (key TEXT PRIMARY KEY, mime TEXT NOT NULL, blob TEXT NOT NULL,
                                     bytes INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batch_records (run TEXT NOT NULL, item TEXT NOT NULL, record TEXT NOT NULL,
                                          PRIMARY KEY (run, item));
CREATE INDEX IF NOT EXISTS images_blob ON images (blob);
CREATE INDEX IF NOT EXISTS files_blob ON files (blob);
CREATE INDEX IF NOT EXISTS variants_blob ON variants (blob);
"""
OLD_TABLES = ("conversations", "images", "files", "variants")


def use_wal(db: sqlite3.Connection, seconds: float = 30.0) -> None:
    """Switch to WAL. Two processes opening a fresh database at once can get "database is locked" here at once,
    without SQLite's busy handler being asked: try again for a while, as the busy timeout would."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def prepare(db: sqlite3.Connection, blobs: FileBlobs) -> None:
    """Bring the database to layout 2 (creating it, or moving layout 1 over)."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= VERSION:
        return
    if has_old_layout(db):
        migrate(db, blobs)
        return
    with immediate(db):
        create_tables(db)
        db.execute(f"PRAGMA user_version = {VERSION}")


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction taken at once (BEGIN IMMEDIATE), committed at the end, rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        if db.in_transaction:
            db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def create_tables(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript would commit the transaction this runs in.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def has_old_layout(db: sqlite3.Connection) -> bool:
    columns = {row[1] for row in db.execute("PRAGMA table_info(conversations)")}
    return "doc" in columns


def migrate(db: sqlite3.Connection, blobs: FileBlobs) -> None:
    started = time.monotonic()
    log.warning(
        "moving the store to layout %d (the bytes of images and files to %s); this happens once", VERSION, blobs.root
    )
    # The blobs first, outside the transaction: each is written whole under its key, so repeating this after
    # a crash rewrites nothing; the records that name them are then moved in one transaction.
    keys = {table: write_blobs(db, blobs, table) for table in ("images", "files", "variants")}
    with immediate(db):
        if not has_old_layout(db):  # another process moved it while this one wrote the blobs
            db.execute("ROLLBACK")
            return
        for table in OLD_TABLES:
            db.execute(f"ALTER TABLE {table} RENAME TO old_{table}")
        create_tables(db)
        move_records(db, keys)
        for table in OLD_TABLES:
            db.execute(f"DROP TABLE old_{table}")
        db.execute(f"PRAGMA user_version = {VERSION}")
    try:
        db.execute("VACUUM")  # give back the pages the bytes took
    except sqlite3.OperationalError as exc:  # another process has it open: the pages are reused instead
        log.info("could not compact the store after moving it: %s", exc)
    log.info("moved the store to layout %d in %.1f s", VERSION, time.monotonic() - started)


def write_blobs(db: sqlite3.Connection, blobs: FileBlobs, table: str) -> dict[str, tuple[str, int]]:
    """Each row's bytes written to the blob folder: {row id: (blob key, size)}."""
    column = "key" if table == "variants" else "id"
    every, one = f"SELECT {column} FROM {table}", f"SELECT data FROM {table} WHERE {column} = ?"  # noqa: S608
    ids = [row[0] for row in db.execute(every)]
    keys: dict[str, tuple[str, int]] = {}
    for item in ids:  # one row at a time: a store of many large images is never read at once
        data = bytes(db.execute(one, (item,)).fetchone()[0])
        keys[item] = (blobs.write(data), len(data))
    return keys


def move_records(db: sqlite3.Connection, keys: dict[str, dict[str, tuple[str, int]]]) -> None:
    now = time.time()
    for conversation_id, doc, updated_at in db.execute("SELECT id, doc, updated_at FROM old_conversations").fetchall():
        head: dict[str, Any] = json.loads(doc)
        turns = head.pop("turns", [])
        db.execute(
            "INSERT INTO conversations (id, head, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (conversation_id, json.dumps(head), head.get("created_at", updated_at), updated_at),
        )
        db.executemany(
            "INSERT OR REPLACE INTO turns (conversation, turn, doc) VALUES (?, ?, ?)",
            [(conversation_id, turn["turn"], json.dumps(turn)) for turn in turns],
        )
    for table in ("images", "files"):
        old, insert = f"SELECT id, meta FROM old_{table}", f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?)"  # noqa: S608
        for item, meta in db.execute(old).fetchall():
            key, size = keys[table][item]
            db.execute(insert, (item, meta, key, size, now))
    for item, mime, created_at in db.execute("SELECT key, mime, created_at FROM old_variants").fetchall():
        key, size = keys["variants"][item]
        db.execute(
            "INSERT INTO variants (key, mime, blob, bytes, created_at) VALUES (?, ?, ?, ?, ?)",
            (item, mime, key, size, created_at),
        )
