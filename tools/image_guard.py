"""Bounds on the work one image may cause: its structure, its time, its memory, its caller.

A file of a few megabytes can be built to be slow rather than big: tens of thousands of 1x1 TIFF pages, millions of
empty PNG chunks or JPEG segments, millions of 1x1 GIF frames. Pillow walks such structure in Python, holding the
GIL and a worker thread for seconds to minutes. Four guards, cheapest first:

- `check_structure` (`tools.image_structure`) walks the container (PNG chunks, JPEG markers up to the first
  scan, GIF blocks, the TIFF IFD chain, WebP chunks) in one linear pass over the bytes and refuses a file whose
  counts are over its limits, before Pillow parses anything (`structure_of` walks once per job). It refuses only
  on counts: a malformed file is left to Pillow to judge.
- `GuardedBytes` is the file Pillow reads from. Pillow decodes by reading the file in blocks from a Python loop,
  so checking the running job at each read stops a decode at its deadline, or when its caller is gone, within
  one block. What Pillow hands to C in one go (a libtiff-compressed TIFF, WebP, AVIF) cannot be stopped that
  way; it is bounded by the pixel limit, the structure limits and the pixel budget instead.
- `PixelBudget` admits work by the pixels it decodes, not by count: one 99 MP image at a time, while small ones
  pass beside it.
- `ImageGuard.run` ties them together for one operation: measure its pixels, wait for the budget, run it in a
  worker thread under its deadline (the thread that measured, when the budget has room at once), and when the
  caller cancels, stop the thread's decode and wait for it.

Nothing here imports Pillow, so the server starts without it.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from tools.image_structure import ImageRejected, Structure, check_structure

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = [
    "DeadlineExceeded",
    "GuardedBytes",
    "ImageGuard",
    "ImageRejected",
    "Job",
    "PixelBudget",
    "Structure",
    "WorkCancelled",
    "check_current",
    "check_structure",
    "structure_of",
]

T = TypeVar("T")
logger = logging.getLogger(__name__)


class WorkCancelled(Exception):
    """The caller of an image operation went away; its decode stopped at its next read."""


class DeadlineExceeded(ImageRejected):
    """An image operation ran past its deadline."""


@dataclass
class Job:
    """One image operation's deadline and cancel flag, seen by every read of its worker thread."""

    seconds: float
    deadline: float = 0.0
    cancelled: bool = False
    reads: int = 0  # reads checked: a test can see a decode stop
    stopped: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    # The last file whose structure this job walked, and what the walk found: one operation opens its file
    # several times (inspect, then decode), and the walk need not be repeated while the bytes are the same object.
    walked: tuple[bytes, Structure] | None = None

    def check(self) -> None:
        """Raise if the operation must stop now. Keeps raising, so a plugin that swallows one still stops."""
        self.reads += 1
        if self.cancelled:
            self.stopped = WorkCancelled("The caller went away; the image work stopped.")
        elif time.monotonic() > self.deadline:
            self.stopped = DeadlineExceeded(
                f"Reading the image took longer than {self.seconds:g} s (IMAGECHAT_IMAGE_SECONDS), so it was "
                "stopped: the file is unusually expensive to decode. Re-export it as an ordinary PNG or JPEG, or "
                "raise the setting."
            )
        if self.stopped is not None:
            raise self.stopped

    def run(self, work: Callable[[], T]) -> T:
        """Run `work` in this thread with the job installed for `GuardedBytes` to check."""
        _current.job = self
        self.deadline = time.monotonic() + self.seconds
        try:
            result = work()
            if self.stopped is not None:  # stopped, but a plugin caught the exception and carried on
                raise self.stopped
            return result
        finally:
            _current.job = None
            self.walked = None
            self.finished.set()


class _Current(threading.local):
    job: Job | None = None


_current = _Current()


def check_current() -> None:
    """Stop here if this thread's image job is past its deadline or cancelled (no job: nothing to check)."""
    job = _current.job
    if job is not None:
        job.check()


def structure_of(data: bytes) -> Structure:
    """`check_structure(data)`, walked once per job for the same bytes object."""
    job = _current.job
    if job is not None and job.walked is not None and job.walked[0] is data:
        return job.walked[1]
    structure = check_structure(data)
    if job is not None:
        job.walked = (data, structure)
    return structure


class GuardedBytes(io.BytesIO):
    """The in-memory file Pillow reads an image from; every read checks the running job first."""

    def read(self, size: int | None = -1, /) -> bytes:
        check_current()
        return super().read(size)

    def read1(self, size: int | None = -1, /) -> bytes:
        check_current()
        return super().read1(size)

    def readline(self, size: int | None = -1, /) -> bytes:
        check_current()
        return super().readline(size)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        check_current()
        return super().readinto(buffer)

    def write(self, data: ReadableBuffer, /) -> int:
        raise io.UnsupportedOperation("an image being read is not written")


class PixelBudget:
    """Decoded pixels in flight, shared by all image work of one server.

    Work asks for its pixels and waits until they fit; an image larger than the whole budget waits until it can
    run alone. Waiters are woken on every release and the first that fits goes, so a small image is not held up
    behind a large one that is waiting (a large one can wait long while small ones keep coming). `peak` and
    `admitted` (each admission's pixels and the pixels in use just after it) record what happened.

    `acquire` and `release` run on the event loop; `try_acquire` also from a worker thread (the guard's single
    hop), so the counts are kept under a lock.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("The pixel budget (IMAGECHAT_PIXEL_BUDGET) must be at least 1 pixel.")
        self.total = total
        self.in_use = 0
        self.peak = 0
        self.admitted: list[tuple[int, int]] = []
        self._waiters: list[anyio.Event] = []
        self._lock = threading.Lock()

    def cost(self, pixels: int) -> int:
        return max(1, min(pixels, self.total))

    def try_acquire(self, pixels: int) -> int | None:
        """The cost taken if `pixels` fit now, else None (nothing taken). Safe from any thread."""
        cost = self.cost(pixels)
        with self._lock:
            if self.in_use + cost > self.total:
                return None
            self.in_use += cost
            self.peak = max(self.peak, self.in_use)
            self.admitted.append((pixels, self.in_use))
        return cost

    async def acquire(self, pixels: int) -> int:
        while (cost := self.try_acquire(pixels)) is None:
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            finally:
                if event in self._waiters:
                    self._waiters.remove(event)
        return cost

    def release(self, cost: int) -> None:
        with self._lock:
            self.in_use -= cost
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()


@dataclass
class ImageGuard:
    """How every image operation runs: measured, admitted by the budget, under a deadline, cancellable."""

    budget: PixelBudget
    seconds: float
    # Worker threads for admitted work (CPU): Pillow releases the GIL, but 2-core laptops choke on ten decodes.
    workers: anyio.CapacityLimiter
    # The jobs running now (tests watch a decode stop through it).
    jobs: list[Job] = field(default_factory=list)

    async def run(self, measure: Callable[[], int], work: Callable[[], T]) -> T:
        """`measure()` gives the pixels `work()` will decode (header only, cheap); both run in worker threads.

        Measuring runs outside the worker limit, so a small image is measured and admitted while large ones
        hold the workers. The deadline covers each part from its start, not the wait for the budget.

        When a worker is free, one thread measures, and if the pixels fit the budget at once goes on to the work:
        one hand-off to a thread and back instead of two. On a virtual machine each hand-off can cost a
        millisecond or more when the other core has gone idle, and the budget rarely makes anyone wait.
        """
        if self.workers.available_tokens >= 1:
            taken: list[int] = []
            try:
                outcome = await self.call(
                    functools.partial(_measured_work, self.budget, measure, work, taken), limiter=self.workers
                )
            finally:
                for cost in taken:  # released here, on the event loop, which wakes whoever waits
                    self.budget.release(cost)
            if not isinstance(outcome, _Unadmitted):
                return outcome
            pixels = outcome.pixels
        else:
            pixels = await self.call(measure, limiter=None)
        cost = await self.budget.acquire(pixels)
        try:
            return await self.call(work, limiter=self.workers)
        finally:
            self.budget.release(cost)

    async def call(self, work: Callable[[], T], *, limiter: anyio.CapacityLimiter | None) -> T:
        """`work()` in a worker thread under a new job. If the caller is cancelled, the job is flagged, so the
        decode stops at its next read, and this waits (shielded) for the thread to end before re-raising: the
        memory it held is free once the budget is released."""
        job = Job(self.seconds)
        self.jobs.append(job)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_exit, job)
                # Not abandoned on cancel: the thread is waited for (it stops at its next read). The outcome is
                # carried out of the task group as a value, so an error reaches the caller as itself, not in a group.
                outcome = await anyio.to_thread.run_sync(_outcome, job, work, limiter=limiter)
                group.cancel_scope.cancel()
        finally:
            self.jobs.remove(job)
        if job.cancelled:
            # The caller is gone: its cancellation, not the worker's WorkCancelled, is what goes up. The task
            # group may have exited without a checkpoint (its watcher had already ended), so take one here.
            await anyio.lowlevel.checkpoint()
        if isinstance(outcome, _Failed):
            raise outcome.error
        return outcome


@dataclass(frozen=True)
class _Failed:
    error: BaseException


@dataclass(frozen=True)
class _Unadmitted:
    """Measured, but its pixels did not fit the budget at once: it waits on the event loop."""

    pixels: int


def _measured_work(
    budget: PixelBudget, measure: Callable[[], int], work: Callable[[], T], taken: list[int]
) -> T | _Unadmitted:
    """In one worker thread: measure, take the pixels if they fit now, then work under a deadline of its own."""
    pixels = measure()
    cost = budget.try_acquire(pixels)
    if cost is None:
        return _Unadmitted(pixels)
    taken.append(cost)
    job = _current.job
    if job is not None:
        job.deadline = time.monotonic() + job.seconds
    return work()


def _outcome(job: Job, work: Callable[[], T]) -> T | _Failed:
    try:
        return job.run(work)
    except Exception as exc:
        return _Failed(exc)


async def _cancel_on_exit(job: Job) -> None:
    """Sleeps beside the worker; cancelled (by the caller going away, or by the work ending), flags the job."""
    try:
        await anyio.sleep_forever()
    finally:
        if not job.finished.is_set():
            job.cancelled = True
            logger.info("image work cancelled by its caller; stopping its decode")
