"""Image work that lets its caller go on before it ends, and the variants still being finished that way.

The decode of every byte of a photo is both its check and most of its preparation for the model; what is left
after it (resize, turn, encode: about a tenth of the work for a 24 MP JPEG) changes nothing about whether the
image is good. So `load_image` answers once its images are checked, and their variants finish beside the
answer, in the server's task group:

- `Started` runs one image operation there. Its worker thread hands the checked result to the event loop
  (`give`) without waiting for the loop, then goes on, under the same job: the same deadline, the same pixels
  taken from the budget, the same worker.
- `Finishing` lists, by variant key, the variants this process is still finishing, until the store holds them.
  A chat that needs one waits for it here instead of preparing the image a second time. If finishing fails,
  nothing is listed or stored, and chat prepares the variant from the original, as it does for a model chosen
  after loading. At shutdown the server waits for what is still finishing (`drain`), so a variant prepared
  before a restart is found after it.

Another process sharing the store does not see this list: its chat prepares the variant from the original if it
comes before the store holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
from mcp.server.mcpserver.exceptions import ToolError

if TYPE_CHECKING:
    from tools.imaging import Prepared

T = TypeVar("T")
log = logging.getLogger(__name__)

SHUTTING_DOWN = "The server is shutting down; try again in a moment."
# Starts a task in the server's task group (RunningTurns.try_spawn); False when there is none.
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], bool]


class Started(Generic[T]):
    """One image operation running on its own, whose worker can hand over its result early (`give`).

    `checked()` waits for the early result (or the whole one, when the work gives none); `result()` for the
    whole one. The caller that starts it owns it until it hands it on: whoever stops caring cancels it
    (`cancel`), and the worker stops at its next read."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._scope = anyio.CancelScope()
        self._given = anyio.Event()
        self._done = anyio.Event()
        self.early: T | None = None
        self.final: T | None = None
        self.error: BaseException | None = None
        self.adopted = False  # handed on to Finishing: no longer its starter's to cancel

    def give(self, value: T) -> None:
        """From the worker thread: the early result, passed to the event loop without waiting for it (a blocking
        hand-off would hold the worker until the loop wakes, a millisecond or more on a virtual machine)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._take, value)

    def _take(self, value: T) -> None:
        if self.early is None:
            self.early = value
        self._given.set()

    async def run(self, work: Callable[[], Awaitable[T]]) -> None:
        """Runs `work` to its end (in a task of its own); its outcome is left on the object for the waiters."""
        with self._scope:
            try:
                self.final = await work()
            except Exception as exc:
                self.error = exc
                if self.early is not None:  # checked, so the load was answered: only the variant is missing
                    log.warning("an image passed its check, but preparing it failed (%s): chat prepares it again", exc)
        # Whatever ended it, wake the waiters: the whole result stands for the early one when none was given.
        if self.early is None and self.final is not None:
            self.early = self.final
        self._given.set()
        self._done.set()

    def cancel(self) -> None:
        self._scope.cancel()

    async def checked(self) -> T:
        """The early result; what the work raised before it; cancelling the caller here cancels the work."""
        try:
            await self._given.wait()
        except BaseException:
            self.cancel()
            raise
        if self.early is not None:
            return self.early
        if self.error is not None:
            raise self.error
        raise ToolError(SHUTTING_DOWN)

    async def result(self) -> T | None:
        """The whole result, or None when the work failed or was cancelled after its early result."""
        await self._done.wait()
        return self.final


class _Entry:
    def __init__(self, variant: Callable[[], Awaitable[Prepared | None]]) -> None:
        self.variant = variant
        self.stored = anyio.Event()


class Finishing:
    """The variants this process is still finishing, by store and variant key, until the store holds them."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str], _Entry] = {}

    def hand_over(
        self,
        spawn: Spawn,
        store: object,
        key: str,
        variant: Callable[[], Awaitable[Prepared | None]],
        put: Callable[[Prepared], Awaitable[None]],
    ) -> bool:
        """List the variant `variant()` will give under `key` (at once, so a chat that comes next finds it),
        and store it with `put` in a task of its own; False (nothing listed) when no task can be started."""
        entry = _Entry(variant)
        listed = (id(store), key)
        self._entries[listed] = entry

        async def store_it() -> None:
            try:
                prepared = await variant()
                if prepared is not None:
                    await put(prepared)
            except Exception as exc:  # a cache: chat prepares it from the original when it is missing
                log.warning("a prepared image was not stored: %s", exc)
            finally:
                self._remove(listed, entry)

        if spawn(store_it):
            return True
        self._remove(listed, entry)
        return False

    def _remove(self, listed: tuple[int, str], entry: _Entry) -> None:
        if self._entries.get(listed) is entry:
            del self._entries[listed]
        entry.stored.set()

    def has(self, store: object, key: str) -> bool:
        return (id(store), key) in self._entries

    async def variant(self, store: object, key: str) -> Prepared | None:
        """The variant being finished under `key` for `store`, once it is done; None when there is none (or it
        failed): the caller then looks in the store."""
        entry = self._entries.get((id(store), key))
        return None if entry is None else await entry.variant()

    async def drain(self, seconds: float) -> None:
        """Wait (at most `seconds`) until every variant still finishing is stored."""
        with anyio.move_on_after(seconds, shield=True):
            while self._entries:
                await next(iter(self._entries.values())).stored.wait()
        if self._entries:
            log.warning("%d prepared image(s) not stored before shutdown: made again when needed", len(self._entries))
