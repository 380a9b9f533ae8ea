"""The store implementations behind `tools.ports.Store`."""

from __future__ import annotations

from server.settings import Settings
from tools.ports import Store


def open_store(settings: Settings) -> Store:
    if settings.store == "memory":
        from server.stores.memory import MemoryStore

        return MemoryStore()
    from server.stores.sqlite import SqliteStore

    return SqliteStore(settings.resolved_state_dir() / "imagechat.sqlite3")
