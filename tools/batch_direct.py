"""Direct mode: `concurrency` requests in flight, images prepared ahead on worker threads, memory flat.

The images flow through bounded streams (paths -> preparers -> senders), so at most a few dozen prepared images
exist at once however many the run has. The `Pacer` halves how many requests may start after a 429 (and holds
every start until the wait the upstream asked for has passed), then adds one back per window of successes.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tools.batch_spec import BatchSpec, Ledger, Result
from tools.batch_work import Permanent, Transient, ask, prepare, result_of
from tools.deps import Deps
from tools.ports import ImagePart

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
BASE_BACKOFF = 0.5  # seconds; doubled per attempt, with jitter
MAX_BACKOFF = 60.0
HALVE_EVERY = 0.5  # seconds: 429s closer together than this halve the requests in flight once
PREPARERS = 8  # images prepared at once ahead of the senders (the image guard bounds the CPU work further)


@dataclass
class Progress:
    """What a run has done so far; `changed` is called after each image."""

    total: int
    done: int = 0
    failed: int = 0
    left_over: int = 0  # transient failures still failing after every attempt: a rerun tries them again
    cost: float = 0.0
    started: float = field(default_factory=time.monotonic)
    changed: Callable[[Progress], None] | None = None

    def add(self, result: Result | None) -> None:
        if result is None:
            self.left_over += 1
        elif result.status == "done":
            self.done += 1
        else:
            self.failed += 1
        if result is not None and result.cost:
            self.cost += result.cost
        if self.changed is not None:
            self.changed(self)

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.left_over

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.finished / elapsed if elapsed > 0 else 0.0


class Pacer:
    """How many requests may be in flight now (additive increase, multiplicative decrease on 429)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.limit = anyio.CapacityLimiter(most)
        self.resume_at = 0.0
        self.halved_at = -1e9
        self.successes = 0
        self.slowed = 0  # times it slowed down (for the logs and the tests)

    async def wait_turn(self) -> None:
        pause = self.resume_at - time.monotonic()
        if pause > 0:  # every start waits out the wait the upstream asked for
            await anyio.sleep(pause)

    def succeeded(self) -> None:
        self.successes += 1
        tokens = int(self.limit.total_tokens)
        if tokens < self.most and self.successes >= tokens:
            self.successes = 0
            self.limit.total_tokens = tokens + 1

    def rate_limited(self, wait: float | None) -> None:
        self.successes = 0
        now = time.monotonic()
        # The requests in flight when the limit was hit all come back 429 together: that is one signal, not many.
        if now - self.halved_at > HALVE_EVERY:
            self.halved_at = now
            self.slowed += 1
            self.limit.total_tokens = max(1, int(self.limit.total_tokens) // 2)
        if wait:
            self.resume_at = max(self.resume_at, time.monotonic() + wait)


def backoff(attempt: int, asked: float | None) -> float:
    computed = min(MAX_BACKOFF, BASE_BACKOFF * 2.0**attempt) * (0.5 + random.random() / 2)
    return max(computed, asked or 0.0)


async def send_with_retries(deps: Deps, spec: BatchSpec, path: str, part: ImagePart, pacer: Pacer) -> Result | None:
    """The image's result, a failed result when refused, or None when every attempt failed for a passing reason."""
    for attempt in range(MAX_ATTEMPTS):
        await pacer.wait_turn()
        try:
            async with pacer.limit:
                reply = await ask(deps, spec, part)
        except Permanent as exc:
            return Result(path=path, status="failed", image_id=part.image_id, error=str(exc))
        except Transient as exc:
            if exc.rate_limited:
                pacer.rate_limited(exc.wait)
            wait = backoff(attempt, exc.wait)
            log.info("%s: %s (attempt %d; again in %.1f s)", path, exc, attempt + 1, wait)
            await anyio.sleep(wait)
            continue
        pacer.succeeded()
        return result_of(spec, path, part.image_id, reply)
    log.warning("%s: still failing after %d attempts; a rerun tries it again", path, MAX_ATTEMPTS)
    return None


Prepared = tuple[str, ImagePart | str]  # (path, the prepared image or why it could not be)


async def answer(deps: Deps, spec: BatchSpec, path: str, part: ImagePart | str, pacer: Pacer) -> Result | None:
    if isinstance(part, str):
        return Result(path=path, status="failed", error=part)
    return await send_with_retries(deps, spec, path, part, pacer)


async def run_direct(deps: Deps, ledger: Ledger, *, concurrency: int, progress: Progress) -> Pacer:
    spec = ledger.spec
    pacer = Pacer(concurrency)
    paths_in, paths_out = anyio.create_memory_object_stream[str](0)
    ready_in, ready_out = anyio.create_memory_object_stream[Prepared](concurrency)
    writing = anyio.Lock()

    async def feed() -> None:
        async with paths_in:
            for path in ledger.pending():
                await paths_in.send(path)

    async def preparer(paths: MemoryObjectReceiveStream[str], ready: MemoryObjectSendStream[Prepared]) -> None:
        async with paths, ready:
            async for path in paths:
                try:
                    await ready.send((path, await prepare(deps, spec, path)))
                except Permanent as exc:
                    await ready.send((path, str(exc)))

    async def sender(ready: MemoryObjectReceiveStream[Prepared]) -> None:
        async with ready:
            async for path, part in ready:
                result = await answer(deps, spec, path, part, pacer)
                if result is not None:
                    async with writing:
                        await ledger.record(result)
                progress.add(result)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(feed)
            for _ in range(max(1, min(PREPARERS, math.ceil(concurrency / 2)))):
                group.start_soon(preparer, paths_out.clone(), ready_in.clone())
            for _ in range(concurrency):
                group.start_soon(sender, ready_out.clone())
            paths_out.close()
            ready_in.close()
            ready_out.close()
    except BaseExceptionGroup as group:
        # What stops the run (a bad key, say) fails every sender alike: report it once, as a plain error.
        raise group.exceptions[0] from None
    return pacer
