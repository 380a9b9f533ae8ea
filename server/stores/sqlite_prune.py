"""Pruning the SQLite store: take stock of its records and blobs, then remove what `retention.choose` picked.

Runs in a worker thread (it reads every record). Each removal re-checks, in the same transaction, that the row
is as it was counted, so a conversation changed or an image loaded again since then is kept.
"""

from __future__ import annotations

import sqlite3

from server.stores.blobs import FileBlobs
from server.stores.retention import GRACE_SECONDS, Entry, Inventory, Pruned

USES = """
SELECT t.conversation, j.value FROM turns t, json_each(t.doc, '$.images') j
UNION SELECT t.conversation, j.value FROM turns t, json_each(t.doc, '$.files') j
UNION SELECT c.id, j.value FROM conversations c, json_each(c.head, '$.pending_images') j
UNION SELECT c.id, j.value FROM conversations c, json_each(c.head, '$.pending_files') j
"""
CONVERSATIONS = """
SELECT c.id, c.updated_at, length(CAST(c.head AS BLOB))
       + coalesce((SELECT sum(length(CAST(t.doc AS BLOB))) FROM turns t WHERE t.conversation = c.id), 0)
FROM conversations c
"""


def inventory(db: sqlite3.Connection, blobs: FileBlobs) -> Inventory:
    uses: dict[str, set[str]] = {}
    for conversation_id, item in db.execute(USES):
        uses.setdefault(conversation_id, set()).add(str(item))
    conversations = [
        Entry(cid, int(size), float(at), uses=frozenset(uses.get(cid, ())))
        for cid, at, size in db.execute(CONVERSATIONS)
    ]

    def records(sql: str) -> list[Entry]:
        return [Entry(item, int(size), float(at), blob=blob) for item, blob, size, at in db.execute(sql)]

    stock = Inventory(
        conversations=conversations,
        images=records("SELECT id, blob, bytes, created_at FROM images"),
        files=records("SELECT id, blob, bytes, created_at FROM files"),
        variants=records("SELECT key, blob, bytes, created_at FROM variants"),
        blobs=[],
    )
    for key in blobs.all_keys():
        try:
            found = blobs.path(key).stat()
        except FileNotFoundError:
            continue
        stock.blobs.append(Entry(key, found.st_size, found.st_mtime))
    return stock


def remove(db: sqlite3.Connection, blobs: FileBlobs, stock: Inventory, pruned: Pruned, now: float) -> None:
    counted = {e.id: e for e in (*stock.conversations, *stock.images, *stock.files)}
    db.execute("BEGIN IMMEDIATE")
    try:
        for conversation_id in pruned.conversations:
            gone = db.execute(
                "DELETE FROM conversations WHERE id = ? AND updated_at <= ?",
                (conversation_id, counted[conversation_id].at),
            )
            if gone.rowcount:
                db.execute("DELETE FROM turns WHERE conversation = ?", (conversation_id,))
            else:  # changed since it was counted: it stays, and so does everything it refers to
                kept = counted[conversation_id].uses
                pruned.images = [i for i in pruned.images if i not in kept]
                pruned.files = [f for f in pruned.files if f not in kept]
        for table, items in (("images", pruned.images), ("files", pruned.files)):
            delete = f"DELETE FROM {table} WHERE id = ? AND created_at <= ?"  # noqa: S608 - one of two table names
            db.executemany(delete, [(item, counted[item].at) for item in items])
        db.executemany("DELETE FROM variants WHERE key = ?", [(key,) for key in pruned.variants])
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    for key in pruned.blobs:
        remove_blob(db, blobs, key, now)


def named(db: sqlite3.Connection, key: str) -> bool:
    """Whether a record (image, file or variant) names the blob `key`."""
    row = db.execute(
        "SELECT 1 FROM images WHERE blob = ?1 UNION ALL SELECT 1 FROM files WHERE blob = ?1 "
        "UNION ALL SELECT 1 FROM variants WHERE blob = ?1 LIMIT 1",
        (key,),
    ).fetchone()
    return row is not None


def remove_blob(db: sqlite3.Connection, blobs: FileBlobs, key: str, now: float) -> None:
    """Remove a blob no record names, unless one does by now or it was written (or loaded again) just now."""
    modified = blobs.modified(key)
    if not named(db, key) and modified is not None and modified < now - GRACE_SECONDS:
        blobs.remove(key)
