"""Concurrent chats through HAProxy to 1, 2 and 3 replicas on one Redis, against a slow fake upstream.

    python -m benchmarks.bench_replicas [--chats 200] [--latency 0.5] [--replicas 1 2 3]

For each replica count: a real redis-server (unix socket), that many real server processes
(`--transport streamable-http`, IMAGECHAT_STORE=redis) and the real HAProxy with deploy/haproxy.cfg, as
tests/cluster.py runs them; the fake OpenAI server (tests/fake_upstream.py) in a process of its own answers
every request after `--latency` seconds. `--chats` chats, each in a conversation of its own, are sent at the
same moment through the balancer by 10 MCP clients (modern era; stateless HTTP when there are several replicas, so
consecutive calls of one client land on different replicas; a first row runs one replica with its default
stateful HTTP, the others stateless). Ideal wall time: the latency (ratio 1.0). Errors: none allowed; the run
fails on any. Every replica answers one chat first, unmeasured (a process's first chat imports the SDK).

Writes benchmarks/results/bench_replicas.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from benchmarks._common import cpu_seconds, median, p95, say, table, upstream_process, write_json
from tests.cluster import Cluster
from tests.redis_server import RedisServer

CLIENTS = 10


async def chat(client: Client, conversation_id: str) -> float:
    started = time.perf_counter()
    result = await client.call_tool(
        "chat", {"prompt": "What is in this picture?", "images": [], "conversation_id": conversation_id}
    )
    if result.is_error or result.structured_content is None or result.structured_content["status"] != "completed":
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise RuntimeError(f"chat {conversation_id} failed: {text}")
    return time.perf_counter() - started


async def warm_up(cluster: Cluster) -> None:
    for index in range(cluster.count):
        async with Client(cluster.replica_url(index)) as client:
            await chat(client, f"warm-up-{index}")


def cpu_of(cluster: Cluster) -> dict[str, float]:
    """CPU seconds so far of the replicas together, the balancer, and this process (the 200 clients)."""
    return {
        "replicas": sum(cpu_seconds(process.pid) for process in cluster.replicas),
        "balancer": cpu_seconds(cluster.balancer.pid) if cluster.balancer else 0.0,
        "clients": time.process_time(),
    }


async def burst(cluster: Cluster, chats: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []

    async def one(client: Client, index: int) -> None:
        try:
            latencies.append(await chat(client, f"chat-{index}"))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])

    async def agent(first: int) -> None:
        async with Client(cluster.url) as client, anyio.create_task_group() as group:
            for index in range(first, chats, CLIENTS):
                group.start_soon(one, client, index)

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for first in range(CLIENTS):
            group.start_soon(agent, first)
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "p50_s": median(latencies) if latencies else None,
        "p95_s": p95(latencies) if latencies else None,
        "errors": errors,
    }


def run(replicas: int, stateless: bool, chats: int, latency: float) -> dict[str, Any]:
    report: dict[str, Any] = {}
    # One replica serves stateful HTTP unless told it is one of several; the row "1, stateless" tells the cost
    # of stateless HTTP apart from the gain of more processes.
    env = {"IMAGECHAT_REPLICAS": "3" if stateless else "1"}
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as folder:
        redis = RedisServer(Path(folder))
        redis.start()
        try:
            with (
                upstream_process(chats + replicas, latency, report) as base_url,
                Cluster(Path(folder), redis.url, base_url, replicas=replicas, env=env) as cluster,
            ):
                anyio.run(warm_up, cluster)
                load_before = os.getloadavg()[0]
                cpu_before = cpu_of(cluster)
                measured = anyio.run(burst, cluster, chats)
                cpu_after = cpu_of(cluster)
        finally:
            redis.stop()
    measured.update(
        replicas=replicas,
        stateless=stateless,
        load_before=round(load_before, 2),
        upstream_requests=report.get("responses"),
        cpu_s={name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_before},
    )
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each configuration (the machine is shared).")
    args = parser.parse_args()
    configurations = [(1, False), *[(count, True) for count in args.replicas]]
    results = [
        run(count, stateless, args.chats, args.latency)
        for _ in range(args.repeat)
        for count, stateless in configurations
    ]
    rows = [
        [
            f"{r['replicas']}, {'stateless' if r['stateless'] else 'stateful'}",
            args.chats,
            f"{r['wall_s']:.2f}",
            f"{r['wall_s'] / args.latency:.1f}",
            f"{r['p50_s']:.2f}" if r["p50_s"] is not None else "-",
            f"{r['p95_s']:.2f}" if r["p95_s"] is not None else "-",
            len(r["errors"]),
            r["load_before"],
            f"{r['cpu_s']['replicas'] * 1000 / args.chats:.0f}",
            f"{r['cpu_s']['clients'] * 1000 / args.chats:.0f}",
        ]
        for r in results
    ]
    say(f"{args.chats} concurrent chats through HAProxy, fake upstream latency {args.latency * 1000:.0f} ms, "
        f"{os.cpu_count()} cores")  # fmt: skip
    headers = ["replicas, HTTP", "chats", "wall s", "wall / latency", "p50 s", "p95 s", "errors", "load (1 min)"]
    headers += ["server CPU ms / chat", "client CPU ms / chat"]
    say(table(headers, rows))
    for r in results:
        for error in r["errors"][:5]:
            say(f"  {r['replicas']} replicas: {error}")
    path = write_json("bench_replicas", {"chats": args.chats, "latency_s": args.latency, "results": results})
    say(f"written to {path}")
    if any(r["errors"] for r in results):
        raise SystemExit("errors: none are allowed")


if __name__ == "__main__":
    main()
