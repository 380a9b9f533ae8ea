"""The shared store: records, blobs and locks in one Redis, so that several replicas see the same state.

Keys (all under `imagechat:`; a conversation id is used as it is, Redis keys being any bytes):
- `conv:<id>` the conversation's own record (JSON, without its turns); `turns:<id>` a hash turn number -> turn;
  `conversations` a sorted set of ids by last change;
- `image:<id>`, `file:<id>`, `variant:<key>` hashes {meta, blob, bytes, at}, indexed by the sorted sets `images`,
  `files`, `variants` (by when stored or last loaded);
- `blob:<sha256>` the bytes of images, files and prepared variants, indexed by `blobs` (see RedisBlobs);
- `lock:<id>` and `turn:<id>` leases (server/stores/leases.py): SET NX PX to take, a compare-and-pexpire script
  to renew, a compare-and-delete script to drop, so only the holder renews or drops its lease.

Every change of a conversation goes out as one MULTI/EXEC (its record, the turns that changed, the index), and
is made under the conversation's lease lock, which every replica takes: a read-change-write never interleaves
with another replica's. Reads of a conversation are one MULTI too, so a record and its turns are read together.

Blobs live in Redis too (no shared folder to mount): each is capped by the image and file size limits, and
`imagechat-mcp prune` removes what the retention settings do not keep. Run Redis with `maxmemory-policy
noeviction` (deploy/compose.yaml does): evicting a key would lose a record, not a cache entry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio
from redis.asyncio import BlockingConnectionPool, Redis

from server.stores.blobs import blob_key
from server.stores.leases import LeasedStore, LeaseLocks
from server.stores.records import TypedRecords
from server.stores.retention import Pruned, Retention
from tools.models import Conversation, Turn

PREFIX = "imagechat:"
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
DROP = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
HASH_INLINE_BYTES = 64 * 1024
MAX_CONNECTIONS = 64  # per process: Redis answers in microseconds, so a few dozen serve hundreds of calls
POOL_WAIT = 30.0  # seconds a command waits for a free connection before it fails


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def scored(found: Any) -> list[tuple[str, float]]:
    """A ZRANGE ... WITHSCORES reply as (member, score) pairs (the client's types do not say which it is)."""
    return [(text(member), float(score)) for member, score in found]


class RedisLeases:
    """The lease backend on Redis (its own clock decides when a lease runs out)."""

    def __init__(self, redis: Redis, space: str) -> None:
        self.redis = redis
        self.space = space
        self.renew_script = redis.register_script(RENEW)
        self.drop_script = redis.register_script(DROP)

    async def take(self, name: str, token: str, ttl: float) -> bool:
        return bool(await self.redis.set(self.space + name, token, nx=True, px=int(ttl * 1000)))

    async def renew(self, name: str, token: str, ttl: float) -> bool:
        return bool(await self.renew_script(keys=[self.space + name], args=[token, int(ttl * 1000)]))

    async def drop(self, name: str, token: str) -> None:
        await self.drop_script(keys=[self.space + name], args=[token])

    async def holder(self, name: str) -> str | None:
        found = await self.redis.get(self.space + name)
        return None if found is None else text(found)


class RedisBlobs:
    """Blobs as `blob:<sha256>` strings: written once with SET NX, so a reader sees a whole blob or none."""

    def __init__(self, redis: Redis, prefix: str = PREFIX) -> None:
        self.redis = redis
        self.prefix = prefix

    async def put(self, data: bytes, *, key: str | None = None, durable: bool = True) -> str:
        if key is None:
            key = await anyio.to_thread.run_sync(blob_key, data) if len(data) > HASH_INLINE_BYTES else blob_key(data)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}blob:{key}", data, nx=True)
            pipe.zadd(f"{self.prefix}blobs", {key: time.time()})  # touched: a prune's grace period counts from now
            await pipe.execute()
        return key

    async def stage(self, data: bytes, key: str) -> None:
        return None  # a SET is visible at once: nothing can be written before the bytes are checked

    async def unstage(self, key: str) -> None:
        return None

    async def get(self, key: str) -> bytes | None:
        found: Any = await self.redis.get(f"{self.prefix}blob:{key}")
        return None if found is None else bytes(found)

    async def size(self, key: str) -> int | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(f"{self.prefix}blob:{key}")
            pipe.strlen(f"{self.prefix}blob:{key}")
            there, length = await pipe.execute()
        return int(length) if there else None

    async def delete(self, key: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{self.prefix}blob:{key}")
            pipe.zrem(f"{self.prefix}blobs", key)
            await pipe.execute()

    async def keys(self) -> list[str]:
        return [text(key) for key in await self.redis.zrange(f"{self.prefix}blobs", 0, -1)]

    async def added(self) -> dict[str, float]:
        return dict(scored(await self.redis.zrange(f"{self.prefix}blobs", 0, -1, withscores=True)))


class RedisStore(TypedRecords, LeasedStore):
    def __init__(self, url: str, *, owner: str, lease_seconds: float, prefix: str = PREFIX) -> None:
        # A pool that waits for a free connection when all are busy (the default one fails with "Too many
        # connections"): 200 chats at once must queue for Redis, not fail.
        self.pool = BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT)
        self.redis = Redis(connection_pool=self.pool)
        self.prefix = prefix
        self.blobs = RedisBlobs(self.redis, prefix)
        self._locks = LeaseLocks(RedisLeases(self.redis, prefix + "lock:"), owner, lease_seconds)
        self._turn_locks = LeaseLocks(RedisLeases(self.redis, prefix + "turn:"), owner, lease_seconds)

    def key(self, kind: str, item: str) -> str:
        return f"{self.prefix}{kind}:{item}"

    # -- conversations --------------------------------------------------------------------------------

    async def get_conversation(self, conversation_id: str, *, with_turns: bool = True) -> Conversation | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.key("conv", conversation_id))
            if with_turns:
                pipe.hgetall(self.key("turns", conversation_id))
            found = await pipe.execute()
        if found[0] is None:
            return None
        conversation = Conversation.model_validate_json(found[0])
        if with_turns:
            turns = [Turn.model_validate_json(doc) for doc in found[1].values()]
            conversation.turns = sorted(turns, key=lambda turn: turn.turn)
        return conversation

    async def put_conversation(self, conversation: Conversation) -> None:
        await self.put_changes(conversation, conversation.turns)

    async def put_changes(self, conversation: Conversation, turns: Sequence[Turn] = ()) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.key("conv", conversation.id), conversation.model_dump_json(exclude={"turns"}))
            pipe.zadd(f"{self.prefix}conversations", {conversation.id: time.time()})
            if turns:
                docs = {str(turn.turn): turn.model_dump_json() for turn in turns}
                pipe.hset(self.key("turns", conversation.id), mapping=docs)  # type: ignore[arg-type]
            await pipe.execute()

    async def list_conversations(self) -> list[str]:
        return sorted(text(item) for item in await self.redis.zrange(f"{self.prefix}conversations", 0, -1))

    # -- images, files and variants: a record naming a blob -------------------------------------------

    async def put_record(self, kind: str, item: str, meta: str, data: bytes, *, key: str | None = None) -> None:
        blob = await self.blobs.put(data, key=key)  # whole in Redis before any record names it
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(kind, item), mapping={"meta": meta, "blob": blob, "bytes": len(data), "at": now})
            pipe.zadd(f"{self.prefix}{kind}s", {item: now})
            await pipe.execute()

    async def get_record(self, kind: str, item: str, *, data: bool) -> tuple[str, bytes] | None:
        found: Any = await self.redis.hmget(self.key(kind, item), ["meta", "blob"])
        meta, blob = found
        if meta is None:
            return None
        if not data:
            return text(meta), b""
        found = await self.blobs.get(text(blob))
        return None if found is None else (text(meta), found)

    async def get_variant(self, key: str) -> tuple[str, bytes] | None:
        return await self.get_record("variant", key, data=True)

    async def put_variant(self, key: str, mime: str, data: bytes) -> None:
        await self.put_record("variant", key, mime, data)

    async def put_batch_record(self, run_id: str, item: str, record: str) -> None:
        await self.redis.hset(self.key("batch", run_id), item, record)

    async def get_batch_records(self, run_id: str) -> dict[str, str]:
        found: Any = await self.redis.hgetall(self.key("batch", run_id))
        return {text(item): text(record) for item, record in found.items()}

    async def prune(self, policy: Retention, *, dry_run: bool = False, now: float | None = None) -> Pruned:
        from server.stores.redis_prune import prune

        return await prune(self, policy, dry_run=dry_run, now=time.time() if now is None else now)

    # -- closing (the locks are LeasedStore's) ----------------------------------------------------------

    async def close(self) -> None:
        await self.redis.aclose()
        await self.pool.aclose()
