"""Concurrent chats against the fake upstream, and how long a large image stalls other calls.

    python -m benchmarks.bench_concurrency [--chats 200] [--latency 0.5]

- 200 conversations, each with its own small image, send one `chat` each at the same moment through an
  in-process `mcp.Client` to the fake OpenAI server (tests/fake_upstream.py, real HTTP on 127.0.0.1, run in
  a process of its own by benchmarks/upstream_process.py), which waits a fixed latency before answering.
  Ideal wall time: that latency (ratio 1.0; the target is within 4x on 2 cores). The CPU time this process
  spent meanwhile, per chat, is what each chat costs the event loop (with the in-process client's share).
  One chat runs first, unmeasured: the first chat of a process imports the OpenAI SDK (its time is reported
  separately).
- Event-loop stall: while a 24 MP JPEG is loaded and prepared for the model (`load_image`, then
  `chat(dry_run=True)`), another conversation calls `preview(target="options")` every 5 ms, as a second
  client would. Pillow works in worker threads, so those calls should take about as long as when the
  server is idle; work on the event loop would show up as calls as slow as the decode itself.
- Encoding's hold on the event loop: the worst lateness of a 0.2 ms timer on the event loop while the same
  photo is prepared in a worker thread, its JPEG encoded through an anonymous file (as the server does) or
  into memory (as before), alternated. Pillow holds the GIL for a whole encode into memory.

Writes benchmarks/results/bench_concurrency.json.
"""

from __future__ import annotations

import argparse
import functools
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import anyio
from mcp import Client

from benchmarks._common import call, encode, load_line, median, p95, photo, say, table, upstream_process, write_json
from server import malloc_tuning
from server.app import build_server
from server.settings import Settings

PROBE_INTERVAL = 0.005
TARGET_RATIO = 4.0


def settings_for(folder: Path, base_url: str) -> Settings:
    return Settings(
        store="memory",
        state_dir=folder / "state",
        allowed_dirs=[folder],
        api_key="sk-benchmark-not-a-key",
        base_url=base_url,
        max_retries=0,
        timeout=60.0,
    )


async def timed_call(client: Client, name: str, arguments: dict[str, Any]) -> float:
    start = time.perf_counter()
    await call(client, name, arguments)
    return time.perf_counter() - start


async def concurrent_chats(client: Client, folder: Path, chats: int) -> dict[str, float]:
    first_chat = await timed_call(client, "chat", {"prompt": "Hello.", "images": [], "conversation_id": "warm-up"})
    paths = []
    for i in range(chats):
        path = folder / f"small-{i}.jpg"
        path.write_bytes(encode(photo(800, 600, seed=100 + i), "JPEG", quality=90))
        paths.append(path)
    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for i, path in enumerate(paths):
            group.start_soon(call, client, "load_image", {"source": str(path), "conversation_id": f"chat-{i}"})
    loaded = time.perf_counter() - start
    finished: list[float] = []

    async def one(i: int) -> None:
        reply = await call(client, "chat", {"prompt": "What is in this picture?", "conversation_id": f"chat-{i}"})
        assert reply["status"] == "completed", reply
        finished.append(time.perf_counter() - start)

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as group:
        for i in range(chats):
            group.start_soon(one, i)
    return {
        "first_chat_s": first_chat,
        "load_wall_s": loaded,
        "chat_wall_s": time.perf_counter() - start,
        "chat_cpu_s": time.process_time() - cpu,
        "chat_first_done_s": min(finished),
    }


async def probe(client: Client, until: anyio.Event | None, count: int = 0) -> list[float]:
    """Latencies of cheap calls made every PROBE_INTERVAL, until the event is set (or `count` of them)."""
    latencies: list[float] = []
    while (until is not None and not until.is_set()) or len(latencies) < count:
        latencies.append(await timed_call(client, "preview", {"conversation_id": "other", "target": "options"}))
        await anyio.sleep(PROBE_INTERVAL)
    return latencies


async def stall(client: Client, folder: Path) -> dict[str, Any]:
    big = folder / "big.jpg"
    big.write_bytes(encode(photo(6000, 4000, seed=7), "JPEG", quality=92))
    await call(client, "set_options", {"conversation_id": "other"})
    idle = await probe(client, None, count=100)
    done = anyio.Event()
    phases: dict[str, float] = {}
    during: list[float] = []

    async def heavy() -> None:
        start = time.perf_counter()
        await call(client, "load_image", {"source": str(big), "conversation_id": "big"})
        phases["load_image_s"] = time.perf_counter() - start
        start = time.perf_counter()
        await call(client, "chat", {"prompt": "Describe it.", "conversation_id": "big", "dry_run": True})
        phases["prepare_dry_run_s"] = time.perf_counter() - start
        done.set()

    async def measure() -> None:
        during.extend(await probe(client, done))

    async with anyio.create_task_group() as group:
        group.start_soon(measure)
        group.start_soon(heavy)
    return {"idle_ms": [t * 1000 for t in idle], "during_ms": [t * 1000 for t in during], **phases}


async def loop_lag(work: Callable[[], object]) -> float:
    """The worst lateness (seconds) of a 0.2 ms timer on the event loop while `work` runs in a worker thread."""
    done = anyio.Event()
    worst = 0.0

    async def tick() -> None:
        nonlocal worst
        while not done.is_set():
            start = time.perf_counter()
            await anyio.sleep(0.0002)
            worst = max(worst, time.perf_counter() - start - 0.0002)

    async def work_then_stop() -> None:
        await anyio.to_thread.run_sync(work)
        done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(tick)
        group.start_soon(work_then_stop)
    return worst


async def encode_lag(repeat: int = 10) -> dict[str, list[float]]:
    """Worst event-loop lag (ms) per preparation of a 24 MP JPEG, encoding through a file or into memory."""
    from tools import image_sizing, imaging

    data = encode(photo(6000, 4000, seed=7), "JPEG", quality=92)
    target = image_sizing.target(6000, 4000, detail="high", model="gpt-5")
    work = functools.partial(imaging.prepare, data, target=target, max_pixels=100_000_000)
    through_file = imaging.anonymous_file

    def no_file() -> IO[bytes]:
        return io.BytesIO()  # encoding into memory, for comparison

    lags: dict[str, list[float]] = {"file": [], "memory": []}
    try:
        for _ in range(repeat):
            for way in lags:
                imaging.anonymous_file = through_file if way == "file" else no_file
                lags[way].append(await loop_lag(work) * 1000)
    finally:
        imaging.anonymous_file = through_file
    return lags


async def run(chats: int, latency: float) -> dict[str, Any]:
    received: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, upstream_process(chats + 1, latency, received) as base_url:
        folder = Path(tmp)
        async with Client(build_server(settings_for(folder, base_url))) as client:
            say(f"  {chats} concurrent chats, upstream latency {latency:g} s ...")
            chat_figures = await concurrent_chats(client, folder, chats)
            say("  event-loop stall while a 24 MP JPEG is prepared ...")
            stall_figures = await stall(client, folder)
    say("  the event loop's lag while a 24 MP JPEG is prepared, encoding through a file or into memory ...")
    stall_figures["encode_lag_ms"] = await encode_lag()
    # The warm-up chat had no image; each measured chat sent its own.
    assert received.get("responses") == chats + 1 and received.get("images", [])[1:] == [1] * chats, received
    return {"chats": chats, "latency_s": latency, **chat_figures, "stall": stall_figures}


def main() -> None:
    malloc_tuning.tune()  # as the server's entry point does: the server measured is the server that runs
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the fake upstream waits per answer")
    args = parser.parse_args()
    say(f"Measuring in process ({load_line()}) ...")
    result = anyio.run(run, args.chats, args.latency)
    s = result["stall"]
    ratio = result["chat_wall_s"] / result["latency_s"]
    summary = {
        "chat_wall_over_latency": round(ratio, 2),
        "server_ms_per_chat": round((result["chat_wall_s"] - result["latency_s"]) / args.chats * 1000, 1),
        "cpu_ms_per_chat": round(result["chat_cpu_s"] / args.chats * 1000, 2),
        "idle_call_median_ms": round(median(s["idle_ms"]), 2),
        "idle_call_max_ms": round(max(s["idle_ms"]), 2),
        "during_call_median_ms": round(median(s["during_ms"]), 2),
        "during_call_p95_ms": round(p95(s["during_ms"]), 2),
        "during_call_max_ms": round(max(s["during_ms"]), 2),
        "calls_during": len(s["during_ms"]),
        "lag_file_median_ms": round(median(s["encode_lag_ms"]["file"]), 2),
        "lag_memory_median_ms": round(median(s["encode_lag_ms"]["memory"]), 2),
    }
    say()
    say(
        table(
            ["measure", "value"],
            [
                [f"{args.chats} concurrent chats, wall time", f"{result['chat_wall_s']:.2f} s"],
                ["upstream latency", f"{args.latency:g} s"],
                ["wall time / latency", f"{ratio:.2f}x"],
                ["CPU time of this process per chat", f"{summary['cpu_ms_per_chat']} ms"],
                [f"first answer of the {args.chats} after", f"{result['chat_first_done_s']:.2f} s"],
                ["first chat of the process (imports the OpenAI SDK)", f"{result['first_chat_s']:.2f} s"],
                [f"{args.chats} concurrent load_image (800x600 JPEG)", f"{result['load_wall_s']:.2f} s"],
                ["24 MP JPEG: load_image", f"{s['load_image_s'] * 1000:.0f} ms"],
                ["24 MP JPEG: chat(dry_run=True), preparing it", f"{s['prepare_dry_run_s'] * 1000:.0f} ms"],
                [
                    "cheap call, server idle: median / max",
                    f"{summary['idle_call_median_ms']} / {summary['idle_call_max_ms']} ms",
                ],
                [
                    f"cheap call meanwhile ({summary['calls_during']} calls): median / p95 / max",
                    f"{summary['during_call_median_ms']} / {summary['during_call_p95_ms']} / "
                    f"{summary['during_call_max_ms']} ms",
                ],
                [
                    "event loop's worst lag per 24 MP preparation (median of 10): encoding through a file / in memory",
                    f"{summary['lag_file_median_ms']} / {summary['lag_memory_median_ms']} ms",
                ],
            ],
        )
    )
    met = ratio <= TARGET_RATIO
    say(
        f"Target: {args.chats} concurrent chats within {TARGET_RATIO:g}x of the {args.latency:g} s latency "
        f"({ratio:.2f}x): {'met' if met else 'NOT met'} ({load_line()})"
    )
    path = write_json("bench_concurrency", {**result, "summary": summary, "target_met": met})
    say(f"Wrote {path}")


if __name__ == "__main__":
    main()
