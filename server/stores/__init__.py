"""The store implementations behind `tools.ports.Store`."""

from __future__ import annotations

from server.settings import Settings
from server.stores.retention import PrunableStore, Retention


def open_store(settings: Settings) -> PrunableStore:
    if settings.store == "memory":
        from server.stores.memory import MemoryStore

        return MemoryStore()
    from server.stores.sqlite import SqliteStore

    return SqliteStore(settings.resolved_state_dir() / "imagechat.sqlite3")


def retention_of(settings: Settings) -> Retention:
    return Retention(
        conversation_days=settings.keep_conversations_days,
        conversation_mb=settings.keep_conversations_mb,
        variant_days=settings.keep_variants_days,
        variant_mb=settings.keep_variants_mb,
    )
