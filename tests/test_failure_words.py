"""Every failure has words: none ends in a bare "Error executing tool X" or a traceback.

As found: a deeply nested JSON file through attach_file, a deeply nested workflow, a workflow node id "²", a full
disk during load_image, set_options and chat (which paid for an answer and lost it), a state folder on a
read-only disk (a traceback at start), conversation ids with '/' or '%' that no conversation:// URI could read,
and abandoned HTTP connections that logged an ERROR traceback each.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from server.mcp_resources import conversation_uri
from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails

DEEP = 100_000


def worded(message: str, tool: str) -> str:
    """The message after the SDK's prefix; a bare prefix (a crash) fails the test."""
    prefix = f"Error executing tool {tool}"
    assert message != prefix and message.startswith(prefix + ": "), message
    return message[len(prefix) + 2 :]


async def test_a_deeply_nested_json_file_is_refused_in_words(settings: Settings, pictures: Path, mode: str) -> None:
    (pictures / "deep.json").write_text("[" * DEEP + "]" * DEEP, encoding="utf-8")
    async with connect(settings, mode) as client:
        message = worded(await fails(client, "attach_file", {"source": str(pictures / "deep.json")}), "attach_file")
    assert "'deep.json' is JSON nested too deeply" in message and "attach it as .txt" in message


async def test_a_deeply_nested_workflow_is_refused_in_words(settings: Settings, pictures: Path) -> None:
    nested = '{"1": {"class_type": "PreviewAny", "inputs": {"source": ' + "[" * DEEP + "]" * DEEP + "}}}"
    (pictures / "deep_flow.json").write_text(nested, encoding="utf-8")
    async with connect(settings) as client:
        from_file = await fails(client, "run_workflow", {"workflow": str(pictures / "deep_flow.json")})
        inline = await fails(client, "run_workflow", {"workflow": nested})
    assert "'deep_flow.json' is nested too deeply to read" in worded(from_file, "run_workflow")
    assert "The workflow text is nested too deeply to read" in worded(inline, "run_workflow")


async def test_odd_node_ids_run_like_any_other(settings: Settings, upstream: FakeUpstream) -> None:
    upstream.add_reply(Reply(text="Hello there."))
    workflow = {
        "²": {"class_type": "OpenAIChatNode", "inputs": {"prompt": "Say hello"}},
        "1": {"class_type": "PreviewAny", "inputs": {"source": ["²", 0]}},
    }
    async with connect(settings) as client:
        result = await call(client, "run_workflow", {"workflow": json.dumps(workflow)})
    assert result["previews"] == {"1": "Hello there."} and list(result["chats"]) == ["²"]


# -- a full disk, on a small tmpfs ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (the state folder lives on it); skipped where mounting is impossible (not root, no tmpfs)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write until the disk is full; the filler file (remove it to make room again)."""
    filler = disk / "filler"
    # Unbuffered: a write cut short by the full disk leaves nothing in a buffer for the close to fail on.
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


async def test_a_full_disk_is_said_in_words_and_chat_pays_nothing(
    settings: Settings, pictures: Path, upstream: FakeUpstream, small_disk: Path, mode: str
) -> None:
    async with connect(settings, mode, store="sqlite", state_dir=small_disk / "state") as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        filler = fill(small_disk)
        load = worded(await fails(client, "load_image", {"source": str(pictures / "blue.jpg")}), "load_image")
        options = worded(await fails(client, "set_options", {"temperature": 0.3}), "set_options")
        chat = worded(await fails(client, "chat", {"prompt": "Describe it"}), "chat")
        filler.unlink()
        answer = await call(client, "chat", {"prompt": "Describe it"})
    for message in (load, options):
        assert "is full, so nothing was stored or changed" in message and "IMAGECHAT_STATE_DIR" in message
    assert "cannot be stored" in chat and "nothing was billed" in chat and "IMAGECHAT_STATE_DIR" in chat
    # The refused chat never reached the model; the one after it sent the waiting image.
    assert len(upstream.responses_bodies()) == 1
    assert answer["status"] == "completed" and answer["turn"] == 1 and len(answer["images"]) == 1


async def test_an_answer_paid_for_is_returned_even_when_the_disk_fills_while_it_comes(
    settings: Settings, pictures: Path, upstream: FakeUpstream, small_disk: Path
) -> None:
    upstream.add_reply(Reply(text="A red card, paid for.", delay=1.0))
    async with connect(settings, store="sqlite", state_dir=small_disk / "state") as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        filled: list[Path] = []

        async def fill_when_asked() -> None:
            while not upstream.responses_bodies():
                await anyio.sleep(0.02)
            filled.append(await anyio.to_thread.run_sync(fill, small_disk))

        async with anyio.create_task_group() as group:
            group.start_soon(fill_when_asked)
            answer = await call(client, "chat", {"prompt": "Describe it"})
        again = await call(client, "chat", {"prompt": "-", "turn": answer["turn"]})
        filled[0].unlink()
    assert answer["status"] == "completed" and answer["text"] == "A red card, paid for."
    assert any("could not be stored" in note and "only in this reply" in note for note in answer["notes"])
    assert again["text"] == "A red card, paid for."  # held for chat(turn=N) too


# -- the state folder on a read-only disk -------------------------------------------------------------


def test_a_read_only_state_folder_stops_the_server_with_words(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        env = {**os.environ, "OPENAI_API_KEY": "sk-test", "IMAGECHAT_STATE_DIR": str(mount / "state")}
        started = subprocess.run(
            [sys.executable, "-m", "server"], env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL
        )
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    stderr = started.stderr.decode()
    assert started.returncode == 2 and started.stdout == b""
    assert "Traceback" not in stderr and stderr.count("\n") == 1, stderr
    assert f"The state folder {mount / 'state'}" in stderr and "IMAGECHAT_STATE_DIR" in stderr


# -- conversation ids that need encoding in a URI -----------------------------------------------------


@pytest.mark.parametrize("conversation_id", ["cats/2024", "50%", "%2F", "/etc/passwd", "../up", "é ?#&"])
async def test_any_conversation_id_reads_back_through_its_encoded_uri(settings: Settings, conversation_id: str) -> None:
    async with connect(settings) as client:
        await call(client, "set_options", {"conversation_id": conversation_id, "temperature": 0.5})
        read = await client.read_resource(conversation_uri(conversation_id))
    found = json.loads(getattr(read.contents[0], "text", ""))
    assert found["id"] == conversation_id and found["options"]["temperature"] == 0.5


# -- abandoned HTTP connections -----------------------------------------------------------------------


def test_an_abandoned_http_request_logs_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "IMAGECHAT_STORE": "memory"}
    command = [sys.executable, "-m", "server", "--transport", "streamable-http", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and process.poll() is None, "the server did not start"
            time.sleep(0.1)
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\nContent-Length: 200\r\n\r\n"
        )
        for body in ('{"jsonrpc":', ""):  # abandoned half-way, and a slow client that never sends its body
            with socket.create_connection(("127.0.0.1", port)) as client:
                client.sendall(head.encode() + body.encode())
                time.sleep(0.5)
        time.sleep(1.0)
    finally:
        process.terminate()
        _, stderr_bytes = process.communicate(timeout=20)
    lines = [line for line in stderr_bytes.decode().splitlines() if "mcp.server.streamable_http" in line]
    assert "Traceback" not in stderr_bytes.decode()
    assert len(lines) == 2 and all("the client went away" in line and "ERROR" not in line for line in lines)
