"""`load_image` + `chat` of one photo over stdio, as an agent would call them, against the fake upstream.

The server runs as `python -m server` (a subprocess speaking stdio), the fake OpenAI server in a process of
its own answering at once (without the test suite's spec check), so what is timed is the server's own work:
reading the file, checking and preparing the image, storing it, building and streaming the request. Every
repetition loads a file the server has not seen (the photo with its own JPEG comment), so nothing is found
already prepared.
"""

from __future__ import annotations

import struct
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client

from benchmarks._common import call, imagechat_stdio, upstream_process


def distinct(data: bytes, n: int) -> bytes:
    """The JPEG with a comment segment naming `n`: other bytes (another content id), the same pixels."""
    text = f"benchmark copy {n}".encode()
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[2:]


class Session:
    """One stdio server; `run` times load_image + chat of a new copy of the photo in a new conversation."""

    def __init__(self, client: Client, folder: Path, data: bytes, model: str, detail: str, store: str) -> None:
        self.client, self.folder, self.data = client, folder, data
        self.model, self.detail, self.store = model, detail, store
        self.count = 0

    async def run(self) -> float:
        self.count += 1
        conversation = f"bench-{self.count}"
        path = self.folder / f"photo-{self.store}-{self.count}.jpg"
        path.write_bytes(distinct(self.data, self.count))
        await call(
            self.client, "set_options", {"conversation_id": conversation, "model": self.model, "detail": self.detail}
        )
        start = time.perf_counter()
        await call(self.client, "load_image", {"source": str(path), "conversation_id": conversation})
        reply = await call(self.client, "chat", {"prompt": "Describe it.", "conversation_id": conversation})
        elapsed = time.perf_counter() - start
        assert reply["status"] == "completed", reply
        path.unlink()
        return elapsed


@asynccontextmanager
async def session(
    folder: Path, base_url: str, store: str, data: bytes, *, model: str, detail: str
) -> AsyncIterator[Session]:
    async with Client(imagechat_stdio(folder, base_url, store), mode="legacy") as client:
        started = Session(client, folder, data, model, detail, store)
        await started.run()  # unmeasured: the first image imports Pillow, the first chat the OpenAI SDK
        yield started


STORES = ("sqlite", "memory")
# Server processes per store, taken in turn. Two processes running the same code differ by 2 to 6% between
# themselves, run after run (where each lands in memory and on the cores: measured with identical servers side
# by side), so one process per store would decide a ratio by the luck of its start. Several, in turn, time
# the code rather than one process of it.
INSTANCES = 3


class Rotation:
    """One store's servers, one repetition each in turn; what each took is kept per server too."""

    def __init__(self, sessions: list[Session]) -> None:
        self.sessions = sessions
        self.times: list[list[float]] = [[] for _ in sessions]
        self.turn = 0

    async def run(self) -> float:
        index = self.turn % len(self.sessions)
        self.turn += 1
        elapsed = await self.sessions[index].run()
        self.times[index].append(elapsed)
        return elapsed


def _timed(fn: Callable[[], object]) -> Callable[[], Awaitable[float]]:
    """`fn` as a method of the benchmark: wall seconds of one call (in this process, blocking)."""

    async def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


async def end_to_end(
    data: bytes,
    *,
    model: str,
    detail: str,
    repeat: int,
    others: dict[str, Callable[[], object]],
    settle: Callable[[], object] | None = None,
    instances: int = INSTANCES,
    per_server: dict[str, list[list[float]]] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds per repetition of load_image + chat over stdio (per store, over `instances` server processes
    in turn), interleaved with `others` (in-process jobs on the same photo: ComfyUI's method, the floors), so
    load on the machine hits all alike. With `per_server`, each store's times are also put there per process.

    The order turns by one place every repetition. A turning order keeps who follows whom: in the cycle ComfyUI,
    floor, SQLite, memory, the floor ran right after ComfyUI's method (1.5 s of large allocations) in most
    repetitions, the memory store never. So with `settle`, an untimed job (the floor's work) runs before every
    timed method: each is timed from the same state, whatever ran before it."""
    report: dict[str, Any] = {}
    # The upstream answers at once and skips the suite's spec check (about 1 ms for this request): what is timed
    # is the server's own work. The test suite checks the same requests against the spec.
    with tempfile.TemporaryDirectory() as tmp, upstream_process(0, 0.0, report, check_spec=False) as base_url:
        folder = Path(tmp)
        async with AsyncExitStack() as stack:
            methods: dict[str, Callable[[], Awaitable[float]]] = {name: _timed(fn) for name, fn in others.items()}
            rotations: dict[str, Rotation] = {}
            for store in STORES:
                sessions = []
                for index in range(instances):
                    place = folder / f"{store}-{index}"
                    place.mkdir()
                    sessions.append(
                        await stack.enter_async_context(
                            session(place, base_url, store, data, model=model, detail=detail)
                        )
                    )
                name = f"imagechat, {store} store"
                rotations[name] = Rotation(sessions)
                methods[name] = rotations[name].run
            times: dict[str, list[float]] = {name: [] for name in methods}
            names = list(methods)
            for turn in range(repeat):
                for name in names[turn % len(names) :] + names[: turn % len(names)]:
                    if settle is not None:
                        settle()
                    times[name].append(await methods[name]())
    sent = report.get("images", [])
    # Every chat sent its image: one unmeasured first run per server, then the repetitions.
    assert len(sent) == (repeat + instances) * len(STORES) and set(sent) == {1}, report
    if per_server is not None:
        per_server.update({name: rotation.times for name, rotation in rotations.items()})
    return times
