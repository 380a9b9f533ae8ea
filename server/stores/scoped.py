"""Each authenticated principal's state is their own: a store, and a view of the running turns, per principal.

A principal gets a store of its own kind (SQLite: its own database under the state folder's `principals/`;
memory: its own dictionaries; Redis: its own key prefix), so conversations, images, files, prepared variants,
leases and dedupe by content never cross principals, and a second principal cannot even learn that an image
exists. The local principal (stdio, or HTTP without authentication) keeps the server's own store, unchanged.
Chosen at the boundary per request (server.boundary), so the tools never know about principals.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import AccessToken

from server.fair_use import WINDOW_SECONDS, Allowance, FairUse, LocalWindow, install_audit
from server.settings import Settings
from server.stores import DATABASE, usage
from server.stores.retention import PrunableStore
from tools.deps import Deps
from tools.running import RunningTurns

PRINCIPALS = "principals"  # the SQLite principals' folders, under the state folder


def principal_of(token: AccessToken) -> str:
    """Who a token stands for: an OAuth token's `sub` (one issuer), or a static token's principal name. The two
    kinds never meet: a static principal `alice` is not the OAuth subject `alice`."""
    kind = "oauth" if (token.claims or {}).get("iss") else "token"
    return f"{kind}:{token.subject or token.client_id}"


def space_of(principal: str) -> str:
    """A name for the principal's state that is safe as a folder or key part and says nothing of who it is."""
    return hashlib.sha256(principal.encode()).hexdigest()[:32]


class PrincipalTurns(RunningTurns):
    """The process's running turns as one principal sees them: its conversation ids are namespaced, so two
    principals' turn 1 of `default` are two turns; generations run in the server's one task group."""

    def __init__(self, shared: RunningTurns, space: str) -> None:
        super().__init__(shared.owner)
        self.shared = shared
        self.space = space

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.shared.spawn(work)

    def claim(self, conversation_id: str, number: int, turn: object) -> None:
        self.shared.claim(self.space + conversation_id, number, turn)

    def release(self, conversation_id: str, number: int) -> None:
        self.shared.release(self.space + conversation_id, number)

    def holder(self, conversation_id: str, number: int) -> object | None:
        return self.shared.holder(self.space + conversation_id, number)

    def holds(self, conversation_id: str, number: int) -> bool:
        return self.shared.holds(self.space + conversation_id, number)


def principal_store(settings: Settings, space: str, owner: str) -> PrunableStore:
    """The store of the principal whose state is named `space` (space_of): the server's kind of store, apart.
    `imagechat-mcp prune` opens them the same way (server.stores.prune_all)."""
    return principal_state(settings, space, owner)[0]


def principal_state(settings: Settings, space: str, owner: str) -> tuple[PrunableStore, Allowance]:
    """The principal's store, and what fair use counts for it: turns in this process, or in Redis for every
    replica; stored bytes as server.stores.usage measures that kind of store."""
    if settings.store == "sqlite":
        from server.stores.sqlite import SqliteStore

        database = SqliteStore(
            principal_folder(settings, space) / DATABASE,
            owner=owner,
            lease_seconds=settings.lease_seconds,
            direct_writes=settings.direct_writes,
        )
        return database, Allowance(LocalWindow(), lambda: usage.sqlite_bytes(database))
    if settings.store == "redis":
        from server.stores.redis import RedisStore
        from server.stores.redis_window import RedisWindow

        shared = RedisStore(
            settings.redis_url, owner=owner, lease_seconds=settings.lease_seconds, prefix=principal_prefix(space)
        )
        window = RedisWindow(shared.redis, shared.prefix + "fair:turns", WINDOW_SECONDS)
        return shared, Allowance(window, lambda: usage.redis_bytes(shared))
    from server.stores.memory import MemoryStore

    memory = MemoryStore(owner)
    return memory, Allowance(LocalWindow(), lambda: usage.memory_bytes(memory))


def principal_folder(settings: Settings, space: str) -> Path:
    return settings.resolved_state_dir() / PRINCIPALS / space


def principal_prefix(space: str) -> str:
    from server.stores.redis import PREFIX

    return f"{PREFIX}p:{space}:"


class Principals:
    """The Deps each principal sees, made on first use and kept (with their stores) until the server stops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._deps: dict[str, Deps] = {}
        self._stores: list[PrunableStore] = []
        self.allowances: dict[str, Allowance] = {}
        self.fair_use = FairUse(
            settings.user_turns_per_minute, settings.user_stored_mb, settings.keep_conversations_days
        )
        install_audit()

    def deps_for(self, local: Deps, principal: str) -> Deps:
        found = self._deps.get(principal)
        if found is None:
            space = space_of(principal)
            found = copy.copy(local)  # the same upstream, reader, limits and image budget
            found.store, self.allowances[principal] = principal_state(self.settings, space, local.turns.owner)
            found.turns = PrincipalTurns(local.turns, space + ":")
            self._stores.append(found.store)
            self._deps[principal] = found
        return found

    async def admit(self, principal: str, tool: str, arguments: Mapping[str, Any]) -> None:
        """Refuses the call when it would take the principal over its fair use (deps_for made its allowance)."""
        await self.fair_use.admit(self.allowances[principal], tool, arguments)

    async def close(self) -> None:
        for store in self._stores:
            await store.close()
        self._stores.clear()
        self._deps.clear()
        self.allowances.clear()
