"""Pruning the Redis store: take stock from the index sets, remove what `retention.choose` picked.

A conversation is removed under its lease lock and only if it has not changed since it was counted; an image or
file only if it was not loaded again since; a blob only if no record names it by then and it is old enough.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.stores.redis import scored, text
from server.stores.retention import GRACE_SECONDS, Entry, Inventory, Pruned, Retention, choose
from tools.models import Conversation, Turn

if TYPE_CHECKING:
    from server.stores.redis import RedisStore


async def conversations(store: RedisStore) -> list[Entry]:
    found = []
    for conversation_id, at in scored(await store.redis.zrange(f"{store.prefix}conversations", 0, -1, withscores=True)):
        head: Any = await store.redis.get(store.key("conv", conversation_id))
        docs: Any = await store.redis.hvals(store.key("turns", conversation_id))
        if head is None:
            continue
        own = Conversation.model_validate_json(head)
        uses = {*own.pending_images, *own.pending_files}
        for doc in docs:
            turn = Turn.model_validate_json(doc)
            uses.update((*turn.images, *turn.files))
        size = len(head) + sum(len(doc) for doc in docs)
        found.append(Entry(conversation_id, size, float(at), uses=frozenset(uses)))
    return found


async def records(store: RedisStore, kind: str) -> list[Entry]:
    found: list[Entry] = []
    for item, at in scored(await store.redis.zrange(f"{store.prefix}{kind}s", 0, -1, withscores=True)):
        fields: Any = await store.redis.hmget(store.key(kind, item), ["blob", "bytes"])
        blob, size = fields
        if blob is not None:
            found.append(Entry(item, int(size), float(at), blob=text(blob)))
    return found


async def inventory(store: RedisStore) -> Inventory:
    blobs = []
    for key, at in (await store.blobs.added()).items():
        size = await store.blobs.size(key)
        if size is not None:
            blobs.append(Entry(key, size, at))
    return Inventory(
        conversations=await conversations(store),
        images=await records(store, "image"),
        files=await records(store, "file"),
        variants=await records(store, "variant"),
        blobs=blobs,
    )


async def prune(store: RedisStore, policy: Retention, *, dry_run: bool, now: float) -> Pruned:
    stock = await inventory(store)
    pruned = choose(stock, policy, now)
    if dry_run:
        return pruned
    counted = {e.id: e for e in (*stock.conversations, *stock.images, *stock.files)}
    for conversation_id in list(pruned.conversations):
        async with store.lock(conversation_id):
            changed = await store.redis.zscore(f"{store.prefix}conversations", conversation_id)
            if changed is not None and changed > counted[conversation_id].at:
                kept = counted[conversation_id].uses  # changed since it was counted: it stays, with what it uses
                pruned.images = [i for i in pruned.images if i not in kept]
                pruned.files = [f for f in pruned.files if f not in kept]
                continue
            await store.redis.delete(store.key("conv", conversation_id), store.key("turns", conversation_id))
            await store.redis.zrem(f"{store.prefix}conversations", conversation_id)
    for kind, items in (("image", pruned.images), ("file", pruned.files), ("variant", pruned.variants)):
        for item in items:
            at = await store.redis.zscore(f"{store.prefix}{kind}s", item)
            if kind != "variant" and at is not None and at > counted[item].at:
                continue  # loaded again since
            await store.redis.delete(store.key(kind, item))
            await store.redis.zrem(f"{store.prefix}{kind}s", item)
    named = {e.blob for e in await records_all(store)}
    added = await store.blobs.added()
    for key in pruned.blobs:
        if key not in named and added.get(key, now) < now - GRACE_SECONDS:
            await store.blobs.delete(key)
    return pruned


async def records_all(store: RedisStore) -> list[Entry]:
    return [*(await records(store, "image")), *(await records(store, "file")), *(await records(store, "variant"))]
