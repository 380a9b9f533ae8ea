"""Hostile images (issue 12): how long load_image takes to refuse each, and what a cheap call costs meanwhile.

    python -m benchmarks.bench_hostile [--scale 1.0] [--timeout 120]

Each attack is the file the adversarial pass used (tests/hostile_images.py builds it byte by byte), at its
size times `--scale`: a TIFF of 40,000 chained 1x1 pages, a PNG with 4M empty private chunks, a JPEG with 12M
empty APP segments, a GIF of 2M 1x1 frames. Each is loaded through the MCP protocol (an in-process Client)
while another conversation's `set_options` is called in a loop; then all four are loaded at once, and a 20x20
PNG two seconds later. Reported: seconds until the load returned (or the timeout), and the cheap call's median and worst
latency in milliseconds. Writes benchmarks/results/bench_hostile.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from benchmarks._common import median, say, table, write_json
from server.app import build_server
from server.settings import Settings
from tests import hostile_images, images

ATTACKS: dict[str, tuple[str, Callable[[int], bytes], int]] = {
    "tiff_pages": ("pages.tif", hostile_images.tiff_with_pages, 40_000),
    "png_chunks": ("chunks.png", hostile_images.png_with_chunks, 4_000_000),
    "jpeg_segments": ("segments.jpg", hostile_images.jpeg_with_segments, 12_000_000),
    "gif_frames": ("frames.gif", hostile_images.gif_with_frames, 2_000_000),
}


async def cheap_calls(client: Client, latencies: list[float], stop: anyio.Event) -> None:
    value = 0.0
    while not stop.is_set():
        value = 1.0 - value
        started = time.perf_counter()
        await client.call_tool("set_options", {"conversation_id": "bystander", "temperature": value})
        latencies.append((time.perf_counter() - started) * 1000)
        await anyio.sleep(0.01)


async def timed_load(client: Client, path: Path, timeout: float, out: dict[str, Any], delay: float = 0.0) -> None:
    await anyio.sleep(delay)
    started = time.perf_counter()
    with anyio.move_on_after(timeout) as scope:
        result = await client.call_tool("load_image", {"source": str(path), "conversation_id": path.stem})
        text = " ".join(getattr(block, "text", "") for block in result.content)
        out["refused"] = bool(result.is_error)
        out["message"] = text[:300]
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["timed_out"] = scope.cancelled_caught


async def measure(
    client: Client, paths: list[Path], timeout: float, late: Path | None = None
) -> tuple[list[dict[str, Any]], list[float]]:
    """Load `paths` at once, and `late` two seconds later (once the others hold the workers)."""
    latencies: list[float] = []
    outs: list[dict[str, Any]] = [{"file": path.name} for path in paths]
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(cheap_calls, client, latencies, stop)
        async with anyio.create_task_group() as loads:
            for path, out in zip(paths, outs, strict=True):
                loads.start_soon(timed_load, client, path, timeout, out)
            if late is not None:
                outs.append({"file": late.name})
                loads.start_soon(timed_load, client, late, timeout, outs[-1], 2.0)
        stop.set()
    return outs, latencies


def summary(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"cheap_calls": 0, "cheap_median_ms": float("nan"), "cheap_max_ms": float("nan")}
    return {
        "cheap_calls": len(latencies),
        "cheap_median_ms": round(median(latencies), 1),
        "cheap_max_ms": round(max(latencies), 1),
    }


class PeakMemory:
    """The process's resident memory, sampled every 5 ms from /proc while a block runs (Linux only)."""

    def __init__(self) -> None:
        self.peak = self.start = self.rss()
        self.running = True

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)


async def memory(count: int) -> None:
    """`count` 99 MP PNGs (about 400 KB each) prepared at once by chat dry runs: peak memory and time."""
    import threading

    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="bigpng-"))
    Image.new("RGB", (9950, 9950), (30, 120, 200)).save(folder / "big.png")
    settings = Settings(store="memory", state_dir=folder / "state", allowed_dirs=[folder], api_key="sk-bench")
    async with Client(build_server(settings)) as client:
        for index in range(count):
            loaded = await client.call_tool(
                "load_image", {"source": str(folder / "big.png"), "conversation_id": f"c{index}"}
            )
            assert not loaded.is_error
        memory = PeakMemory()
        sampler = threading.Thread(target=memory.sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for index in range(count):
                asked = {"prompt": "What is it?", "conversation_id": f"c{index}", "dry_run": True}
                group.start_soon(client.call_tool, "chat", asked)
        seconds = time.perf_counter() - started
        memory.running = False
        sampler.join()
    peak_mb = (memory.peak - memory.start) / 2**20
    say(
        f"{count} x 99 MP PNG ({(folder / 'big.png').stat().st_size} bytes) prepared at once: "
        f"{seconds:.1f} s, peak memory above the start {peak_mb:.0f} MB"
    )


async def main(scale: float, timeout: float, together_only: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix="hostile-"))
    paths = []
    for _name, (file_name, build, count) in ATTACKS.items():
        path = folder / file_name
        path.write_bytes(build(max(1, int(count * scale))))
        paths.append(path)
    small = folder / "small.png"
    small.write_bytes(images.png(20, 20))
    settings = Settings(store="memory", state_dir=folder / "state", allowed_dirs=[folder], api_key="sk-bench")
    rows: list[list[object]] = []
    results: dict[str, Any] = {"scale": scale, "load_average_before": os.getloadavg()}
    async with Client(build_server(settings)) as client:
        for name, path in zip(ATTACKS, paths, strict=True) if not together_only else ():
            outs, latencies = await measure(client, [path], timeout)
            stats = summary(latencies)
            results[name] = {**outs[0], "bytes": path.stat().st_size, **stats}
            rows.append([name, path.stat().st_size, outs[0]["seconds"], outs[0].get("refused"), *stats.values()])
            say(f"{name}: {results[name]}")
        outs, latencies = await measure(client, paths, timeout, late=small)
        stats = summary(latencies)
        results["all_four_and_small"] = {"loads": outs, **stats}
        slowest = max(out["seconds"] for out in outs[:-1])
        rows.append(["four at once (slowest)", "", slowest, outs[0].get("refused"), *stats.values()])
        rows.append(["20x20 PNG 2 s into them", "", outs[-1]["seconds"], outs[-1].get("refused"), "", "", ""])
    results["load_average_after"] = os.getloadavg()
    headers = ["attack", "bytes", "seconds", "refused", "cheap calls", "cheap median ms", "cheap max ms"]
    say(table(headers, rows))
    say(f"load average after: {results['load_average_after']}")
    write_json("bench_hostile", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the attack's size")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a load is given up")
    parser.add_argument("--together-only", action="store_true", help="only the four attacks at once")
    parser.add_argument("--memory", type=int, default=0, help="instead: prepare this many 99 MP PNGs at once")
    args = parser.parse_args()
    if args.memory:
        anyio.run(memory, args.memory)
    else:
        anyio.run(main, args.scale, args.timeout, args.together_only)
