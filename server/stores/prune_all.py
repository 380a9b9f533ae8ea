"""`imagechat-mcp prune` over every store: the server's own, then each authenticated principal's.

Principals' stores are found where server.stores.scoped puts them: SQLite databases in the state folder's
`principals/<space>/`, Redis key prefixes `imagechat:p:<space>:`. Each is pruned by the same retention policy
(its own conversations, images and files: a principal's kept conversation keeps only its own images). The memory
store has nothing to prune from another process.
"""

from __future__ import annotations

import re
from pathlib import Path

from server.settings import Settings
from server.stores import DATABASE, open_store
from server.stores.retention import PrunableStore, Retention
from server.stores.scoped import PRINCIPALS, principal_store
from tools.running import new_owner

SPACE = re.compile(r"[0-9a-f]{32}")  # scoped.space_of's names: nothing else is taken for a principal's state


def sqlite_spaces(state_dir: Path) -> list[str]:
    folder = state_dir / PRINCIPALS
    if not folder.is_dir():
        return []
    return sorted(
        entry.name for entry in folder.iterdir() if SPACE.fullmatch(entry.name) and (entry / DATABASE).is_file()
    )


async def redis_spaces(store: PrunableStore) -> list[str]:
    """The principals with keys in this Redis (SCAN: a prune is an operator's occasional job, not a request)."""
    from server.stores.redis import PREFIX, RedisStore, text

    assert isinstance(store, RedisStore)
    head = f"{PREFIX}p:"
    found = set()
    async for key in store.redis.scan_iter(match=f"{head}*", count=1000):
        space = text(key)[len(head) :].split(":", 1)[0]
        if SPACE.fullmatch(space):
            found.add(space)
    return sorted(found)


async def prune_all(settings: Settings, policy: Retention, *, dry_run: bool) -> str:
    """Prunes every store; says what went (or would go), in all of them together."""
    own = open_store(settings)
    try:
        total = await own.prune(policy, dry_run=dry_run)
        if settings.store == "sqlite":
            spaces = sqlite_spaces(settings.resolved_state_dir())
        elif settings.store == "redis":
            spaces = await redis_spaces(own)
        else:
            spaces = []
    finally:
        await own.close()
    owner = new_owner()
    for space in spaces:
        store = principal_store(settings, space, owner)
        try:
            total.add(await store.prune(policy, dry_run=dry_run))
        finally:
            await store.close()
    said = total.summary(dry_run)
    if spaces:
        said += f" That is in the server's own store and {len(spaces)} users' stores."
    return said
