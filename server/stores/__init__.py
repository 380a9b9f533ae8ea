"""The store implementations behind `tools.ports.Store`."""

from __future__ import annotations

from server.settings import Settings
from server.stores.retention import PrunableStore, Retention
from tools.running import new_owner

DATABASE = "imagechat.sqlite3"  # the SQLite store's file in its state folder


def open_store(settings: Settings, owner: str | None = None) -> PrunableStore:
    """The configured store; `owner` names this process in the leases it holds (tools/running.py)."""
    if settings.store == "redis":
        from server.stores.redis import RedisStore

        return RedisStore(settings.redis_url, owner=owner or new_owner(), lease_seconds=settings.lease_seconds)
    if settings.store == "memory":
        from server.stores.memory import MemoryStore

        return MemoryStore(owner or new_owner())
    from server.stores.sqlite import SqliteStore

    path = settings.resolved_state_dir() / DATABASE
    return SqliteStore(path, owner=owner, lease_seconds=settings.lease_seconds, direct_writes=settings.direct_writes)


def retention_of(settings: Settings) -> Retention:
    return Retention(
        conversation_days=settings.keep_conversations_days,
        conversation_mb=settings.keep_conversations_mb,
        variant_days=settings.keep_variants_days,
        variant_mb=settings.keep_variants_mb,
    )
