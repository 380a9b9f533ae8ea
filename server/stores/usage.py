"""How many bytes one principal's store holds, for IMAGECHAT_USER_STORED_MB (server.fair_use), whatever the store.

The rule is `retention.held`: a store's conversations (records and turns), images and files, as `imagechat-mcp
prune` counts them. Not the bytes on disk: a SQLite database's journal and free pages would count against a user
for nothing they did, and differ from store to store. Each function here measures that rule more cheaply than a
prune's inventory (it runs before every call that stores something).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.stores.retention import held

if TYPE_CHECKING:
    from server.stores.memory import MemoryStore
    from server.stores.redis import RedisStore
    from server.stores.sqlite import SqliteStore

HELD = """
SELECT coalesce((SELECT sum(length(CAST(head AS BLOB))) FROM conversations), 0)
       + coalesce((SELECT sum(length(CAST(doc AS BLOB))) FROM turns), 0)
       + coalesce((SELECT sum(bytes) FROM images), 0) + coalesce((SELECT sum(bytes) FROM files), 0)
"""


async def sqlite_bytes(store: SqliteStore) -> int:
    return await store.run(lambda db: int(db.execute(HELD).fetchone()[0]), small=False)


async def memory_bytes(store: MemoryStore) -> int:
    return held(store.inventory())


async def redis_bytes(store: RedisStore) -> int:
    """A few round trips: the index sets, then one pipeline of lengths."""
    from server.stores.redis import text

    redis = store.redis
    conversations = [text(item) for item in await redis.zrange(f"{store.prefix}conversations", 0, -1)]
    records = [
        (kind, text(item)) for kind in ("image", "file") for item in await redis.zrange(f"{store.prefix}{kind}s", 0, -1)
    ]
    async with redis.pipeline(transaction=False) as pipe:
        for conversation in conversations:
            pipe.strlen(store.key("conv", conversation))
            pipe.hvals(store.key("turns", conversation))
        for kind, item in records:
            pipe.hget(store.key(kind, item), "bytes")
        found: list[Any] = await pipe.execute()
    return sum(sum(len(doc) for doc in item) if isinstance(item, list) else int(item or 0) for item in found)
