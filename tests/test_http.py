"""The same server over streamable HTTP, as a real process on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path, pictures: Path, upstream: FakeUpstream) -> Iterator[str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IMAGECHAT_"))},
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": upstream.base_url,
        "IMAGECHAT_STATE_DIR": str(tmp_path / "state"),
        "IMAGECHAT_ALLOWED_DIRS": str(pictures),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "--transport", "streamable-http", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode() if process.stderr else "server exited")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr:
            process.stderr.close()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_workflow_over_http_with_progress(
    http_server: str, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="one two three four", chunks=4, chunk_delay=0.3))
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async with Client(http_server, mode=mode) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png"), "conversation_id": mode})
        answer = await client.call_tool(
            "chat", {"prompt": "Count", "conversation_id": mode}, progress_callback=on_progress
        )
        shown = await call(client, "preview", {"conversation_id": mode})
    assert not answer.is_error and shown["text"] == "one two three four"
    assert [p["type"] for p in upstream.responses_bodies()[-1]["input"][0]["content"]] == ["input_text", "input_image"]
    # Progress reaches the client over HTTP in both eras.
    assert seen and all(message and "tokens so far" in message for message in seen)
