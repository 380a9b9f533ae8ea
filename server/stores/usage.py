"""How many bytes one principal's store holds, for IMAGECHAT_USER_STORED_MB (server.fair_use), whatever the store.

The rule is `retention.held`: a store's conversations (records and turns) and its blobs (images, files, prepared
variants), each blob once, as `imagechat-mcp prune` counts them. The SQLite store is measured on disk instead (its
folder: the database with its journal, and the blob files), which is what it really takes there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from server.stores.retention import held

if TYPE_CHECKING:
    from server.stores.memory import MemoryStore
    from server.stores.redis import RedisStore


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed meanwhile
    return total


async def sqlite_bytes(folder: Path) -> int:
    return await anyio.to_thread.run_sync(folder_bytes, folder)


async def memory_bytes(store: MemoryStore) -> int:
    return held(store.inventory())


async def redis_bytes(store: RedisStore) -> int:
    """`held` in three round trips (the index sets, then one pipeline of lengths), not one per record as a
    prune's inventory reads them: this runs before every call that stores something."""
    conversations = await store.redis.zrange(f"{store.prefix}conversations", 0, -1)
    blobs = await store.redis.zrange(f"{store.prefix}blobs", 0, -1)
    async with store.redis.pipeline(transaction=False) as pipe:
        for conversation in conversations:
            name = conversation.decode() if isinstance(conversation, bytes) else str(conversation)
            pipe.strlen(store.key("conv", name))
            pipe.hvals(store.key("turns", name))
        for key in blobs:
            pipe.strlen(f"{store.prefix}blob:{key.decode() if isinstance(key, bytes) else key}")
        found: list[Any] = await pipe.execute()
    return sum(sum(len(doc) for doc in item) if isinstance(item, list) else int(item) for item in found)
