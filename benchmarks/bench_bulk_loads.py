"""Bulk loads: distinct 24 MP photos loaded four at a time, originals written around the page cache or through it.

Two stdio servers on the SQLite store, side by side: one as shipped (direct writes), one started with
IMAGECHAT_DIRECT_WRITES=0. Each round writes a batch of new copies of the photo (other bytes, the same pixels)
and has one server load all of them, `--concurrent` calls at a time, each into a new conversation (the default
model, gpt-4.1-mini: prepared at 2048x1365); the servers take turns, and the order flips every round. Printed:
wall ms per image over the batch, the server's CPU ms per image (from /proc, Linux), and the ratio of the two
servers' times, paired round by round.

Run: python -m benchmarks.bench_bulk_loads [--rounds 8] [--batch 12] [--concurrent 4]
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
from mcp import Client

from benchmarks._common import (
    call,
    cpu_seconds,
    encode,
    imagechat_stdio,
    load_line,
    median,
    photo,
    say,
    table,
    upstream_process,
    write_json,
)
from benchmarks.image_stdio import distinct

SERVERS = {"direct writes (as shipped)": "1", "through the page cache": "0"}


def server_pid(state_dir: Path) -> int | None:
    """The pid of this process's child that serves `state_dir` (Linux: from /proc); None elsewhere."""
    wanted = f"IMAGECHAT_STATE_DIR={state_dir}".encode()
    try:
        pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except FileNotFoundError:
        return None
    for pid in pids:
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and wanted in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return pid
        except (OSError, ValueError, IndexError):
            continue
    return None


@dataclass
class Server:
    client: Client
    folder: Path
    pid: int | None  # where its CPU time is read; None where /proc is not
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


class Bulk:
    def __init__(self, data: bytes, batch: int, concurrent: int) -> None:
        self.data, self.batch, self.concurrent = data, batch, concurrent
        self.copies = 0

    async def round(self, server: Server, *, keep: bool = True) -> None:
        paths = []
        for _ in range(self.batch):
            self.copies += 1
            path = server.folder / f"photo-{self.copies}.jpg"
            path.write_bytes(distinct(self.data, self.copies))
            paths.append(path)
        os.sync()  # the copies' own writes reach the disk before the clock starts, not during the loads
        cpu_before = cpu_seconds(server.pid) if server.pid is not None else None
        started = time.perf_counter()

        async def loader(first: int) -> None:
            for index in range(first, self.batch, self.concurrent):
                source = {"source": str(paths[index]), "conversation_id": f"bulk-{self.copies}-{index}"}
                await call(server.client, "load_image", source)

        async with anyio.create_task_group() as group:
            for first in range(self.concurrent):
                group.start_soon(loader, first)
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(server.pid) if server.pid is not None else None
        for path in paths:
            path.unlink()
        if keep:
            server.wall.append(elapsed / self.batch)
            if cpu_before is not None and cpu_after is not None:
                server.cpu.append((cpu_after - cpu_before) / self.batch)


async def run(rounds: int, batch: int, concurrent: int) -> dict[str, Server]:
    data = encode(photo(6000, 4000, seed=1), "JPEG", quality=92)  # bench_images' 24 MP photo
    bulk = Bulk(data, batch, concurrent)
    report: dict[str, object] = {}
    with TemporaryDirectory() as tmp, upstream_process(0, 0.0, report, check_spec=False) as base_url:
        async with AsyncExitStack() as stack:
            servers: dict[str, Server] = {}
            for index, (name, direct) in enumerate(SERVERS.items()):
                folder = Path(tmp) / f"server-{index}"
                folder.mkdir()
                params = imagechat_stdio(folder, base_url, "sqlite")
                env = {**(params.env or {}), "IMAGECHAT_DIRECT_WRITES": direct}
                client = await stack.enter_async_context(Client(params.model_copy(update={"env": env}), mode="legacy"))
                servers[name] = Server(client, folder, server_pid(Path(env["IMAGECHAT_STATE_DIR"])))
                await bulk.round(servers[name], keep=False)  # unmeasured: imports, first allocations
            order = list(servers.values())
            for number in range(rounds):
                for server in order if number % 2 == 0 else order[::-1]:
                    await bulk.round(server)
    return servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="measured rounds per server")
    parser.add_argument("--batch", type=int, default=12, help="photos loaded per round")
    parser.add_argument("--concurrent", type=int, default=4, help="load_image calls at a time")
    args = parser.parse_args()
    say(f"Start: {load_line()}")
    say(f"Loading {args.batch} distinct 24 MP photos per round, {args.concurrent} at a time, {args.rounds} rounds ...")
    servers = anyio.run(run, args.rounds, args.batch, args.concurrent)
    (shipped, shipped_server), (cached, cached_server) = servers.items()
    ratios = sorted(a / b for a, b in zip(shipped_server.wall, cached_server.wall, strict=True))
    rows = []
    for name, server in servers.items():
        cpu = f"{median(server.cpu) * 1000:.1f}" if server.cpu else "n/a"
        rows.append([name, f"{median(server.wall) * 1000:.1f}", f"{min(server.wall) * 1000:.1f}", cpu])
    say()
    say(table(["originals written", "ms per image (median)", "best", "server CPU ms per image"], rows))
    quartiles = f"{ratios[len(ratios) // 4]:.3f} to {ratios[(3 * len(ratios)) // 4]:.3f}"
    say(f"{shipped} / {cached}, paired by round: {median(ratios):.3f}x the time (quartiles {quartiles})")
    say(f"End: {load_line()}")
    path = write_json(
        "bench_bulk_loads",
        {
            "rounds": args.rounds,
            "batch": args.batch,
            "concurrent": args.concurrent,
            "servers": {name: {"wall_s": s.wall, "cpu_s": s.cpu} for name, s in servers.items()},
            "ratio_median": median(ratios),
        },
    )
    say(f"Wrote {path}")


if __name__ == "__main__":
    main()
