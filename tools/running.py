"""The turns this process is generating, and the task group they run in.

Turns run in the server's task group, so an answer that takes minutes outlives the request that asked for
it (clients give up after about a minute), and a later request can wait for it. Every turn is run by an
owner, this process's id, which also names the process in the store's leases: the turn holds the conversation's
turn lock, a lease renewed every third of IMAGECHAT_LEASE_SECONDS while the process lives (server/stores/leases.py).
`holds` answers for this process; for a turn run elsewhere, `Store.turn_holder` says whether a live owner still
holds its lease (tools/turn.py `orphans`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
from mcp.server.mcpserver.exceptions import ToolError


def new_owner() -> str:
    """An id for this process, unique among the replicas that may share a store."""
    return f"{os.getpid()}-{secrets.token_hex(6)}"


class RunningTurns:
    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner or new_owner()
        self._group: anyio.abc.TaskGroup | None = None
        # The turn objects by (conversation, number); typed loosely so this module needs no turn module.
        self._held: dict[tuple[str, int], object] = {}

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Owned by the server's lifespan: generations still going at shutdown are cancelled with it."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield
            finally:
                self._group = None
                group.cancel_scope.cancel()

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._group is None:
            raise ToolError("The server is shutting down; try again in a moment.")
        self._group.start_soon(work)

    def claim(self, conversation_id: str, number: int, turn: object) -> None:
        """This process runs turn `number` of the conversation (it holds the conversation's turn lock)."""
        self._held[(conversation_id, number)] = turn

    def release(self, conversation_id: str, number: int) -> None:
        self._held.pop((conversation_id, number), None)

    def holder(self, conversation_id: str, number: int) -> object | None:
        return self._held.get((conversation_id, number))

    def holds(self, conversation_id: str, number: int) -> bool:
        """Whether a live owner still runs the turn; a turn recorded as running that nobody holds was cut off
        by a restart, and whoever looks next settles it."""
        return (conversation_id, number) in self._held
