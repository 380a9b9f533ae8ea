"""The server's own overhead over a real stdio subprocess, against a bare MCPServer with one echo tool.

    python -m benchmarks.bench_overhead [--calls 200] [--starts 10]

- round trip: median and p95 of a cheap tool call (imagechat's `set_options(detail=...)` on its SQLite store,
  which reads and writes the conversation's own record, against the bare server's `echo`), both processes
  running side by side and called alternately;
- cold start: from spawning the process to the first `tools/list` answer, alternating the two servers.

The SDK client checks every structured result against the tool's output schema (jsonschema, in the client's
process): for set_options' result that takes about 0.35 ms, for echo's 0.02 ms. That is the client's cost of a
richer result, not the server's, so each call's check is timed apart and the ratio is given both ways: the
round trip as the client sees it, and without the client's check (the server's own overhead; the target).

Both protocol eras are measured: the handshake (`mode="legacy"`, what Claude Desktop speaks) and the modern
stateless one (`mode="auto"`). Writes benchmarks/results/bench_overhead.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp import Client, StdioServerParameters

from benchmarks._common import REPO, imagechat_stdio, median, p95, say, table, write_json

TARGET_RATIO = 1.3
Mode = Literal["legacy", "auto"]
MODES: tuple[Mode, ...] = ("legacy", "auto")


def imagechat_params(folder: Path) -> StdioServerParameters:
    # The default store, so the cheap call pays for its statements; the upstream is never called.
    return imagechat_stdio(folder, "http://127.0.0.1:9/v1", "sqlite")


def bare_params() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "benchmarks.bare_server"], cwd=str(REPO))


SERVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "imagechat": ("set_options", {"detail": "low"}),
    "bare": ("echo", {"text": "options"}),
}


async def cold_start(params: StdioServerParameters, mode: Mode) -> float:
    start = time.perf_counter()
    async with Client(params, mode=mode) as client:
        tools = await client.list_tools()
        elapsed = time.perf_counter() - start
    assert tools.tools, "the server listed no tools"
    return elapsed


def time_checks(client: Client) -> list[float]:
    """Time the client's output-schema check of each result (appended to the list returned)."""
    spent: list[float] = []
    check = client.session.validate_tool_result

    async def timed(name: str, result: Any) -> None:
        start = time.perf_counter()
        try:
            await check(name, result)
        finally:
            spent.append(time.perf_counter() - start)

    client.session.validate_tool_result = timed  # type: ignore[method-assign]
    return spent


async def call_once(client: Client, name: str, arguments: dict[str, Any], checks: list[float]) -> tuple[float, float]:
    """(the round trip, the part of it the client spent checking the result against the output schema)."""
    checks.clear()
    start = time.perf_counter()
    result = await client.call_tool(name, arguments)
    elapsed = time.perf_counter() - start
    assert not result.is_error, f"{name} failed: {result.content}"
    return elapsed, sum(checks)


async def start_of(params: dict[str, StdioServerParameters], mode: Mode, name: str) -> float:
    return await cold_start(params[name], mode)


async def round_trips(
    params: dict[str, StdioServerParameters], mode: Mode, calls: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each server's round trips, and the same without the client's output-schema check."""
    times: dict[str, list[float]] = {name: [] for name in params}
    unchecked: dict[str, list[float]] = {name: [] for name in params}
    async with AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(Client(p, mode=mode)) for name, p in params.items()}
        checks = {name: time_checks(client) for name, client in clients.items()}
        for round_ in range(calls + 20):  # the first 20 warm up (imports on first use, caches)
            for name, client in clients.items():
                tool, arguments = SERVERS[name]
                seconds, checking = await call_once(client, tool, arguments, checks[name])
                if round_ >= 20:
                    times[name].append(seconds)
                    unchecked[name].append(seconds - checking)
    return times, unchecked


async def alternate(
    runs: int, measure: Callable[[str], Awaitable[float]], names: tuple[str, ...]
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # one unmeasured start each: byte-compiles and warms the file cache
        await measure(name)
    for _ in range(runs):
        for name in names:
            times[name].append(await measure(name))
    return times


async def run(calls: int, starts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        params = {"imagechat": imagechat_params(Path(tmp)), "bare": bare_params()}
        results: dict[str, Any] = {}
        for mode in MODES:
            say(f"  {mode}: cold starts ...")
            starts_s = await alternate(starts, functools.partial(start_of, params, mode), tuple(params))
            say(f"  {mode}: round trips ...")
            trips, unchecked = await round_trips(params, mode, calls)
            results[mode] = {
                "cold_start_ms": {name: [round(t * 1000, 1) for t in ts] for name, ts in starts_s.items()},
                "round_trip_ms": {name: [round(t * 1000, 3) for t in ts] for name, ts in trips.items()},
                "server_round_trip_ms": {name: [round(t * 1000, 3) for t in ts] for name, ts in unchecked.items()},
            }
    return results


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for mode, data in results.items():
        trips, starts, server = data["round_trip_ms"], data["cold_start_ms"], data["server_round_trip_ms"]
        row: dict[str, Any] = {
            "mode": mode,
            "server_call_median_ms": {name: round(median(ts), 2) for name, ts in server.items()},
            "call_median_ms": {name: round(median(ts), 2) for name, ts in trips.items()},
            "call_p95_ms": {name: round(p95(ts), 2) for name, ts in trips.items()},
            "cold_start_median_ms": {name: round(median(ts), 1) for name, ts in starts.items()},
        }
        row["call_median_ratio"] = round(row["call_median_ms"]["imagechat"] / row["call_median_ms"]["bare"], 2)
        row["server_call_median_ratio"] = round(
            row["server_call_median_ms"]["imagechat"] / row["server_call_median_ms"]["bare"], 2
        )
        row["call_p95_ratio"] = round(row["call_p95_ms"]["imagechat"] / row["call_p95_ms"]["bare"], 2)
        row["cold_start_ratio"] = round(
            row["cold_start_median_ms"]["imagechat"] / row["cold_start_median_ms"]["bare"], 2
        )
        # The targets are judged on these, unrounded: 1.302 is over 1.3, though it prints as 1.3.
        row["server_call_median_exact"] = median(server["imagechat"]) / median(server["bare"])
        row["cold_start_exact"] = median(starts["imagechat"]) / median(starts["bare"])
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="measured calls per server and mode")
    parser.add_argument("--starts", type=int, default=10, help="measured cold starts per server and mode")
    args = parser.parse_args()
    say(f"Measuring over stdio (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}) ...")
    results = anyio.run(run, args.calls, args.starts)
    rows = summarize(results)
    say()
    say(
        table(
            ["mode", "measure", "imagechat (ms)", "bare MCPServer (ms)", "ratio"],
            [
                line
                for r in rows
                for line in (
                    [
                        r["mode"],
                        "cheap call, median, without the client's schema check",
                        r["server_call_median_ms"]["imagechat"],
                        r["server_call_median_ms"]["bare"],
                        r["server_call_median_ratio"],
                    ],
                    [
                        r["mode"],
                        "cheap call, median, as the SDK client sees it",
                        r["call_median_ms"]["imagechat"],
                        r["call_median_ms"]["bare"],
                        r["call_median_ratio"],
                    ],
                    [
                        r["mode"],
                        "cheap call, p95",
                        r["call_p95_ms"]["imagechat"],
                        r["call_p95_ms"]["bare"],
                        r["call_p95_ratio"],
                    ],
                    [
                        r["mode"],
                        "cold start to tools/list, median",
                        r["cold_start_median_ms"]["imagechat"],
                        r["cold_start_median_ms"]["bare"],
                        r["cold_start_ratio"],
                    ],
                )
            ],
        )
    )
    targets = []
    for r in rows:
        met_call = r["server_call_median_exact"] <= TARGET_RATIO
        met_start = r["cold_start_exact"] <= TARGET_RATIO
        targets.append({"mode": r["mode"], "call_met": met_call, "cold_start_met": met_start})
        say(
            f"Target ({r['mode']}): cheap call within {TARGET_RATIO}x of bare ({r['server_call_median_exact']:.3f}x; "
            f"{r['call_median_ratio']}x with the client's schema check): "
            f"{'met' if met_call else 'NOT met'}; cold start within {TARGET_RATIO}x ({r['cold_start_exact']:.3f}x): "
            f"{'met' if met_start else 'NOT met'}"
        )
    path = write_json(
        "bench_overhead",
        {"calls": args.calls, "starts": args.starts, "results": results, "summary": rows, "targets": targets},
    )
    say(f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say(f"Wrote {path}")


if __name__ == "__main__":
    main()
