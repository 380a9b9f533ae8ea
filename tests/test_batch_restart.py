"""A run started by run_batch in a server process killed with SIGKILL halfway: the server started again continues
it (once the dead process's lease on it runs out), and no image with a result is sent again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from server.app import opened
from server.settings import Settings
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call
from tests.test_auth import wait_for_port
from tests.test_batch_direct import make_folder
from tests.test_batch_tool import finished
from tests.test_http import free_port
from tools import batch_view


@contextmanager
def server_process(
    tmp_path: Path, upstream: FakeUpstream, folder: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IMAGECHAT_"))},
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": upstream.base_url,
        "IMAGECHAT_STATE_DIR": str(tmp_path / "state"),
        "IMAGECHAT_ALLOWED_DIRS": str(folder),
        "IMAGECHAT_LEASE_SECONDS": "2",
        "IMAGECHAT_MAX_RETRIES": "0",
    }
    command = [sys.executable, "-m", "server", "--transport", "streamable-http", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(process, port)
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


@asynccontextmanager
async def over_http(url: str) -> Any:
    http = httpx2.AsyncClient(timeout=60)
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        yield client


async def test_a_server_killed_halfway_continues_the_run_when_started_again(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "shoot"
    paths = make_folder(folder, 16)
    upstream.default_reply = Reply(text="caption", delay=0.15)
    arguments = {"sources": [str(folder)], "prompt": "Caption it.", "concurrency": 2}
    with server_process(tmp_path, upstream, folder) as (url, process):
        async with over_http(url) as client:
            run_id = (await call(client, "run_batch", arguments))["run_id"]
            deadline = time.monotonic() + 30
            while (await call(client, "preview", {"target": f"batch:{run_id}"}))["batch"]["done"] < 4:
                assert time.monotonic() < deadline
                await anyio.sleep(0.02)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
    while upstream.in_flight:  # let the requests the killed server had in flight finish at the fake
        await anyio.sleep(0.02)
    asked_before = len(upstream.answered)
    stored = replace(settings, store="sqlite", state_dir=tmp_path / "state", allowed_dirs=[folder])
    async with opened(stored) as deps:
        answered_at_kill = len((await batch_view.results(deps, run_id))[1])
    assert 4 <= answered_at_kill < 16

    with server_process(tmp_path, upstream, folder) as (url, _):
        async with over_http(url) as client:
            view = await finished(client, run_id)
    assert (view["done"], view["pending"]) == (16, 0)
    async with opened(stored) as deps:
        rows = (await batch_view.results(deps, run_id))[1]
    assert sorted(row["path"] for row in rows) == sorted(paths)  # complete, and none twice
    assert len(upstream.answered) - asked_before == 16 - answered_at_kill  # nothing answered is sent again
