"""Turns being generated: they run in the server's task group, so an answer that takes minutes outlives the
request that asked for it (clients give up after about a minute), and a later request can wait for it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
from mcp.server.mcpserver.exceptions import ToolError

from tools.models import Turn

log = logging.getLogger(__name__)


@dataclass
class Job:
    conversation_id: str
    number: int | None = None  # set once the job holds the conversation's turn lock
    response_id: str | None = None
    background: bool = False
    deltas: int = 0
    texts: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.monotonic)
    finished: anyio.Event = field(default_factory=anyio.Event)
    announced: bool = False  # a "running" turn has been written to the store
    turn: Turn | None = None  # the recorded turn, once done
    error: ToolError | None = None
    notes: list[str] = field(default_factory=list)
    draft: Turn | None = None  # the turn as it will be recorded, before the answer is in
    consumed: tuple[bool, bool] = (True, True)  # whether its images / files came from the pending attachments
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    async def started(self, response_id: str, background: bool) -> None:
        self.response_id = response_id
        self.background = background

    async def text(self, delta: str) -> None:
        self.deltas += 1
        self.texts.append(delta)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at


class Jobs:
    def __init__(self) -> None:
        self._group: anyio.abc.TaskGroup | None = None
        self._running: dict[tuple[str, int], Job] = {}

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

    def start(self, job: Job, work: Callable[[Job], Awaitable[None]]) -> None:
        async def run() -> None:
            with job.scope:
                try:
                    await work(job)
                except ToolError as exc:
                    job.error = exc
                except Exception:
                    log.exception("turn of %r failed unexpectedly", job.conversation_id)
                    job.error = ToolError("The turn failed unexpectedly; the server log has the details. Try again.")
            if job.number is not None:
                self._running.pop((job.conversation_id, job.number), None)
            job.finished.set()

        if self._group is None:
            raise ToolError("The server is shutting down; try again in a moment.")
        self._group.start_soon(run)

    def register(self, job: Job) -> None:
        if job.number is not None:
            self._running[(job.conversation_id, job.number)] = job

    def get(self, conversation_id: str, number: int) -> Job | None:
        return self._running.get((conversation_id, number))
