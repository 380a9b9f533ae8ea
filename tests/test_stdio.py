"""The real `imagechat-mcp` process over stdio, as Claude Desktop or an IDE starts it."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters
from mcp_types import BlobResourceContents

from tests import hostile_images
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails

REPO = Path(__file__).resolve().parent.parent


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


async def test_messages_of_megabytes_cross_the_pipes_whole_both_ways(
    tmp_path: Path, pictures: Path, upstream: FakeUpstream
) -> None:
    # A request line of about 5 MB (the image as a data: URL) and an answer of about 5 MB (the image resource):
    # both cross a 64 KB pipe in many pieces, and the answer waits on the client reading it.
    noisy = hostile_images.noise(1200, 1000, "PNG", compress_level=0)
    source = "data:image/png;base64," + base64.b64encode(noisy).decode("ascii")
    async with Client(server_params(tmp_path / "state", pictures, upstream), mode="legacy") as client:
        [image] = (await call(client, "load_image", {"source": source}))["images"]
        read = await client.read_resource(image["resource_uri"])
        [contents] = read.contents
        assert isinstance(contents, BlobResourceContents)
        assert base64.b64decode(contents.blob) == noisy
        # The stream carries on after them, in order.
        assert (await call(client, "set_options", {"detail": "low"}))["options"]["detail"] == "low"


STRAY = """
import os, sys
from server import stdio_pipes
assert stdio_pipes.usable()
reader, writer = stdio_pipes.reopened()
with stdio_pipes.diverted(reader, writer):
    print("stray output of a library", flush=True)
    os.write(1, b"more stray output\\n")
    os.write(writer, b"the wire\\n")
    assert os.read(0, 10) == b""  # what reads fd 0 meanwhile gets nothing of the client's input
print("after serving")
"""


def test_while_serving_over_pipes_stray_output_goes_to_stderr_not_the_wire() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STRAY], input=b"a request\n", capture_output=True, timeout=60, cwd=REPO, check=True
    )
    assert done.stdout == b"the wire\nafter serving\n"
    assert b"stray output of a library\nmore stray output\n" in done.stderr


def test_stdin_that_is_a_file_is_served_by_the_sdks_transport(tmp_path: Path) -> None:
    (tmp_path / "input").write_bytes(b"")
    check = [sys.executable, "-c", "from server import stdio_pipes; print(stdio_pipes.usable())"]
    with (tmp_path / "input").open("rb") as stdin:
        from_file = subprocess.run(check, stdin=stdin, capture_output=True, timeout=60, cwd=REPO, check=True)
    from_pipe = subprocess.run(check, input=b"", capture_output=True, timeout=60, cwd=REPO, check=True)
    assert (from_file.stdout, from_pipe.stdout) == (b"False\n", b"True\n")
