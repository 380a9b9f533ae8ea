"""Each authenticated principal's state is their own: a store, and a view of the running turns, per principal.

A principal gets a store of its own kind (SQLite: its own database under the state folder's `principals/`;
memory: its own dictionaries; Redis: its own key prefix), so conversations, images, files, prepared variants,
leases and dedupe by content never cross principals, and a second principal cannot even learn that an image
exists. The local principal (stdio, or HTTP without authentication) keeps the server's own store, unchanged.
Chosen at the boundary per request (server.boundary), so the tools never know about principals.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import AccessToken

from server.fair_use import FairUse, install_audit
from server.settings import Settings
from server.stores import open_store
from server.stores.retention import PrunableStore
from tools.deps import Deps
from tools.running import RunningTurns


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


class Principals:
    """The Deps each principal sees, made on first use and kept (with their stores) until the server stops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._deps: dict[str, Deps] = {}
        self._stores: list[PrunableStore] = []
        self.folders: dict[str, Path] = {}  # each principal's SQLite folder (what its stored bytes are)
        self.fair_use = FairUse(settings.user_turns_per_minute, settings.user_stored_mb)
        install_audit()

    def store_for(self, principal: str, space: str, owner: str) -> PrunableStore:
        settings = self.settings
        if settings.store == "sqlite":
            self.folders[principal] = settings.resolved_state_dir() / "principals" / space
            settings = dataclasses.replace(settings, state_dir=self.folders[principal])
        elif settings.store == "redis":
            from server.stores.redis import PREFIX, RedisStore

            return RedisStore(
                settings.redis_url, owner=owner, lease_seconds=settings.lease_seconds, prefix=f"{PREFIX}p:{space}:"
            )
        return open_store(settings, owner)

    def deps_for(self, local: Deps, principal: str) -> Deps:
        found = self._deps.get(principal)
        if found is None:
            space = space_of(principal)
            found = copy.copy(local)  # the same upstream, reader, limits and image budget
            found.store = self.store_for(principal, space, local.turns.owner)
            found.turns = PrincipalTurns(local.turns, space + ":")
            self._stores.append(found.store)
            self._deps[principal] = found
        return found

    async def close(self) -> None:
        for store in self._stores:
            await store.close()
        self._stores.clear()
        self._deps.clear()
