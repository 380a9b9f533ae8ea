"""The real `imagechat-mcp` process over stdio, as Claude Desktop or an IDE starts it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters

from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails


def server_params(state: Path, pictures: Path, upstream: FakeUpstream, *args: str) -> StdioServerParameters:
    # The console script when installed; `python -m server` is the same entry point.
    script = shutil.which("imagechat-mcp", path=str(Path(sys.executable).parent))
    command, prefix = (script, []) if script else (sys.executable, ["-m", "server"])
    return StdioServerParameters(
        command=command,
        args=[*prefix, *args],
        env={
            "OPENAI_API_KEY": "sk-test-key",
            "OPENAI_BASE_URL": upstream.base_url,
            "IMAGECHAT_STATE_DIR": str(state),
            "IMAGECHAT_ALLOWED_DIRS": str(pictures),
            "IMAGECHAT_MAX_RETRIES": "0",
        },
    )


async def test_a_conversation_over_stdio_survives_a_restart(
    tmp_path: Path, pictures: Path, upstream: FakeUpstream
) -> None:
    upstream.add_reply(Reply(text="A red card."))
    upstream.add_reply(Reply(text="Yes, red."))
    params = server_params(tmp_path / "state", pictures, upstream)
    async with Client(params, mode="legacy") as client:
        assert client.server_info is not None and client.server_info.name == "imagechat-mcp"
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        await call(client, "set_options", {"preset": "image-to-prompt"})
        first = await call(client, "chat", {"prompt": "Describe this image"})
        refused = await fails(client, "load_image", {"source": "/etc/passwd"})
    assert first["text"] == "A red card."
    assert "allowed folders" in refused and "IMAGECHAT_ALLOWED_DIRS" in refused

    async with Client(params) as client:
        turns = json.loads((await call(client, "preview", {"target": "conversation", "format": "json"}))["text"])
        second = await call(client, "chat", {"prompt": "Sure?"})
    assert [turn["output"] for turn in turns] == ["A red card."]
    assert second["turn"] == 2
    bodies = upstream.responses_bodies()
    assert bodies[0]["instructions"].startswith("You write prompts")
    assert bodies[1]["previous_response_id"] == first["response_id"]
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-test-key"


async def test_flags_configure_the_process(tmp_path: Path, pictures: Path, upstream: FakeUpstream) -> None:
    params = server_params(tmp_path / "state", pictures, upstream, "--model", "gpt-4o", "--store", "memory")
    async with Client(params, mode="legacy") as client:
        options = await call(client, "set_options", {})
    assert options["options"]["model"] == "gpt-4o"
    assert not (tmp_path / "state").exists()  # the memory store writes nothing
