"""What the streaming chat path adds to a call, and how often it sends progress.

Against the fake upstream on 127.0.0.1 with no latency, so what is measured is our own cost:
- the openai SDK streaming a Responses call directly (the floor);
- the same turn through our `chat` tool over the in-process MCP client (job, store, request assembly,
  progress) — the difference is the overhead per call;
- progress notifications received while a 2-second answer streams 100 tokens.

Run: python -m benchmarks.bench_streaming
"""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
from mcp import Client
from openai import AsyncOpenAI

from benchmarks._common import median, p95, say, table, write_json
from server.app import build_server
from server.settings import Settings
from tests.fake_upstream import FakeUpstream, Reply

CALLS = 200


def bench_settings(fake: FakeUpstream, state: Path) -> Settings:
    return Settings(
        store="memory",
        state_dir=state,
        allowed_dirs=[state],
        api_key="sk-bench",
        base_url=fake.base_url,
        max_retries=0,
        model="gpt-4o",
    )


async def direct(fake: FakeUpstream) -> list[float]:
    timings = []
    async with AsyncOpenAI(api_key="sk-bench", base_url=fake.base_url, max_retries=0) as client:
        for _ in range(CALLS):
            started = time.perf_counter()
            stream = await client.responses.create(model="gpt-4o", input="hi", stream=True, store=True)
            async for _event in stream:
                pass
            timings.append(time.perf_counter() - started)
    return timings


async def through_chat(fake: FakeUpstream, state: Path, mode: str) -> list[float]:
    settings = bench_settings(fake, state)
    timings = []
    async with Client(build_server(settings), mode=mode) as client:
        for index in range(CALLS):
            started = time.perf_counter()
            result = await client.call_tool("chat", {"prompt": "hi", "images": [], "conversation_id": f"c{index}"})
            timings.append(time.perf_counter() - started)
            assert not result.is_error
    return timings


async def progress_rate(fake: FakeUpstream, state: Path) -> tuple[int, float]:
    settings = bench_settings(fake, state)
    fake.add_reply(Reply(text=" ".join(["token"] * 100), chunks=100, chunk_delay=0.02))
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(time.perf_counter())

    async with Client(build_server(settings), mode="legacy") as client:
        started = time.perf_counter()
        await client.call_tool("chat", {"prompt": "stream", "images": []}, progress_callback=on_progress)
        elapsed = time.perf_counter() - started
    return len(seen), elapsed


async def main() -> None:
    with FakeUpstream() as fake, TemporaryDirectory() as tmp:
        state = Path(tmp)
        await direct(fake)  # warm up the fake and the SDK import
        floor = await direct(fake)
        modern = await through_chat(fake, state, "auto")
        legacy = await through_chat(fake, state, "legacy")
        notifications, streamed = await progress_rate(fake, state)
    rows = []
    for name, values in (
        ("openai SDK, direct", floor),
        ("chat tool, 2026-07-28 client", modern),
        ("chat tool, handshake-era client", legacy),
    ):
        rows.append(
            [
                name,
                f"{median(values) * 1000:.2f}",
                f"{p95(values) * 1000:.2f}",
                f"{(median(values) - median(floor)) * 1000:+.2f}",
            ]
        )
    say(table(["path (no upstream latency)", "median ms", "p95 ms", "added ms"], rows))
    say(
        f"\nprogress: {notifications} notifications while 100 tokens streamed over {streamed:.2f} s "
        f"({notifications / streamed:.1f} a second)"
    )
    write_json(
        "streaming",
        {
            "calls": CALLS,
            "direct_ms": {"median": median(floor) * 1000, "p95": p95(floor) * 1000},
            "chat_modern_ms": {"median": median(modern) * 1000, "p95": p95(modern) * 1000},
            "chat_legacy_ms": {"median": median(legacy) * 1000, "p95": p95(legacy) * 1000},
            "progress": {"notifications": notifications, "seconds": streamed},
        },
    )


if __name__ == "__main__":
    anyio.run(main)
