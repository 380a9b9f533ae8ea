"""Locks that hold across processes: a lease with an owner, renewed while held, given up when the owner dies.

A lease is a record "name -> token, until T" in a shared place (a SQLite table, a Redis key). Taking it succeeds
only when nobody holds it or the holder's lease ran out; the holder renews it every third of the lease time while
it holds it, and drops it (only if the token is still its own) when done. A holder that dies (killed, its machine
gone) stops renewing, so its lease runs out and the next waiter takes it: nothing waits forever on a dead process.

Tokens are `<owner>/<random>`: the owner (a process's id, tools/running.py) says which process holds it.
Waiters of one process queue on a local lock first, so only one of them polls the shared place per name.

Renewal: a server runs one renewer for all the leases it holds (`renew_held`, in its lifespan), so taking a lock
costs two small statements and no task; a store used without one (the CLI, a principal's own store) renews each
lease in a task of its own while it is held.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import anyio

from server.settings import DEFAULTS
from server.stores.locks import LocalLocks

log = logging.getLogger(__name__)
POLL_FIRST = 0.005  # seconds between tries to take a held lease, doubling up to POLL_MOST
POLL_MOST = 0.05
LEASE_SECONDS: float = DEFAULTS["lease_seconds"]


class LeaseBackend(Protocol):
    """The shared place: each call is atomic there."""

    async def take(self, name: str, token: str, ttl: float) -> bool:
        """Hold `name` as `token` for `ttl` seconds if it is free or its lease ran out."""
        ...

    async def renew(self, name: str, token: str, ttl: float) -> bool:
        """Extend the lease if `token` still holds it; False when it was lost."""
        ...

    async def drop(self, name: str, token: str) -> None:
        """Give the lease up if `token` still holds it."""
        ...

    async def holder(self, name: str) -> str | None:
        """The token holding a live lease on `name`, if any."""
        ...


def owner_of(token: str) -> str:
    return token.rpartition("/")[0]


class LeaseLocks:
    def __init__(self, backend: LeaseBackend, owner: str, ttl: float) -> None:
        self.backend = backend
        self.owner = owner
        self.ttl = ttl
        self.local = LocalLocks()
        self.held: dict[str, str] = {}  # name -> token of the leases this process holds now
        self.renewer_running = False

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        async with self.local.hold(name):
            token = f"{self.owner}/{secrets.token_hex(4)}"
            await self.take(name, token)
            self.held[name] = token
            try:
                if self.renewer_running:
                    yield
                else:
                    async with self.renewing(name, token):
                        yield
            finally:
                self.held.pop(name, None)
                with anyio.CancelScope(shield=True):
                    await self.drop(name, token)

    async def renew_held(self) -> None:
        """Renew every lease held, every third of the lease time, for as long as this runs (a lease taken just
        after a round is renewed at the next one, within a third of its time, as its own task would)."""
        self.renewer_running = True
        try:
            while True:
                await anyio.sleep(self.ttl / 3)
                for name, token in list(self.held.items()):
                    if not await self.renew_once(name, token) and self.held.get(name) == token:
                        del self.held[name]
        finally:
            self.renewer_running = False

    async def drop(self, name: str, token: str) -> None:
        """Give the lease back. If the store cannot be written now (a full disk, Redis away), the lease simply runs
        out: what the holder did stands, and a failure here must not turn its result into an error."""
        try:
            await self.backend.drop(name, token)
        except Exception as exc:
            log.warning("lease %r not released (it expires within %.0f s): %s", name, self.ttl, exc)

    async def take(self, name: str, token: str) -> None:
        pause = POLL_FIRST
        while not await self.backend.take(name, token, self.ttl):
            await anyio.sleep(pause)
            pause = min(pause * 2, POLL_MOST)

    @asynccontextmanager
    async def renewing(self, name: str, token: str) -> AsyncIterator[None]:
        """Renew the lease in a task beside the holder's code, stopped when it is done."""
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self.renew, name, token)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as group_error:
            # The holder's own exception comes back wrapped by the task group: raise it as it was raised.
            if len(group_error.exceptions) == 1:
                raise group_error.exceptions[0] from None
            raise

    async def renew(self, name: str, token: str) -> None:
        while True:
            await anyio.sleep(self.ttl / 3)
            if not await self.renew_once(name, token):
                return

    async def renew_once(self, name: str, token: str) -> bool:
        """Extend one lease; False when it was lost (renewing it again is pointless)."""
        try:
            renewed = await self.backend.renew(name, token, self.ttl)
        except Exception as exc:  # a passing failure of the shared place must not cut the holder's work short
            log.warning("could not renew the lease on %r (trying again): %s", name, exc)
            return True
        if not renewed:
            # Another process may have taken it since: the turn's own checks keep its answer from being
            # recorded twice (tools/turn.py), so this is worth a warning, not a crash.
            log.warning("the lease on %r ran out while held (the process stalled for %.0f s)", name, self.ttl)
        return renewed

    async def holder(self, name: str) -> str | None:
        """The owner holding `name` now, if any (this process's own id when it holds it)."""
        token = await self.backend.holder(name)
        return None if token is None else owner_of(token)


class LeasedStore:
    """A store's two locks (changes to a conversation; its turns), each a lease in the shared store: the
    store sets `_locks` and `_turn_locks`."""

    _locks: LeaseLocks
    _turn_locks: LeaseLocks

    def lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(conversation_id)

    def turn_lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        return self._turn_locks.hold(conversation_id)

    async def turn_holder(self, conversation_id: str) -> str | None:
        return await self._turn_locks.holder(conversation_id)

    async def keep_leases(self) -> None:
        """Renew the leases of both kinds this process holds, until cancelled (see the module docstring)."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._locks.renew_held)
            group.start_soon(self._turn_locks.renew_held)
