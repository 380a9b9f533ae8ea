"""An agent never gets something other than what it asked for (issue 10, points 2, 3 and 8), through the protocol
in both eras: a call that cannot be meant is refused with the exact guidance, nothing is sent upstream and nothing
changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp import Client

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails, user_content


def error(tool: str, message: str) -> str:
    return f"Error executing tool {tool}: {message}"


async def conversations(client: Client) -> list[str]:
    content = (await client.read_resource("conversations://all")).contents[0]
    listed: list[str] = json.loads(getattr(content, "text", "[]"))
    return listed


async def shown(client: Client, target: str, conversation_id: str = "default") -> Any:
    result = await call(client, "preview", {"conversation_id": conversation_id, "target": target, "format": "json"})
    return json.loads(result["text"])


# -- point 2: attach_file takes a list; a PDF given to load_image points to attach_file -----------------------------


async def test_attach_file_takes_a_list_and_chat_sends_every_document(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        attached = await call(
            client, "attach_file", {"source": [str(pictures / "notes.txt"), str(pictures / "doc.pdf")]}
        )
        await call(client, "chat", {"prompt": "What do these say?"})
    assert [f["name"] for f in attached["files"]] == ["notes.txt", "doc.pdf"] and attached["pending_files"] == 2
    assert attached["file"] == attached["files"][0]
    parts = user_content(upstream.responses_bodies()[0])
    assert [part["type"] for part in parts] == ["input_text", "input_file", "input_file"]


async def test_a_list_with_one_bad_document_attaches_none(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        message = await fails(
            client, "attach_file", {"source": [str(pictures / "notes.txt"), str(pictures / "red.png")]}
        )
        pending = await shown(client, "pending")
    assert message == error(
        "attach_file",
        "'red.png' is not a supported document. attach_file takes .csv, .json, .markdown, .md, .pdf, .txt files; "
        "send images with load_image.",
    )
    assert pending == {"images": [], "files": []} and upstream.requests == []


async def test_a_pdf_given_to_load_image_points_to_attach_file(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    pdf = str(pictures / "doc.pdf")
    async with connect(settings, mode) as client:
        message = await fails(client, "load_image", {"source": [str(pictures / "red.png"), pdf]})
        pending = await shown(client, "pending")
    assert message == error(
        "load_image",
        f"{pdf!r} is a PDF document, not an image: attach it with attach_file (this source as it is), then chat sends "
        "it with the images.",
    )
    assert pending == {"images": [], "files": []} and upstream.requests == []


# -- point 3: chat does not send what cannot be meant --------------------------------------------------------------


async def test_a_chat_on_a_conversation_that_does_not_exist_names_the_closest(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        before = await conversations(client)
        message = await fails(client, "chat", {"prompt": "What is it?", "conversation_id": "defualt"})
        after = await conversations(client)
    assert message == error(
        "chat",
        "No conversation 'defualt' yet, so there is nothing to ask about. Did you mean 'default'? Known "
        "conversations: 'default'. To start 'defualt', load images into it first (load_image(source, "
        "conversation_id='defualt')), or pass images=[...] (images=[] for a text-only turn). Nothing was sent.",
    )
    assert before == after == ["default"] and upstream.requests == []


async def test_a_chat_with_nothing_to_look_at_is_refused(settings: Settings, upstream: FakeUpstream, mode: str) -> None:
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"detail": "low"})  # the conversation exists, with nothing in it
        message = await fails(client, "chat", {"prompt": "What is in the picture?"})
        turns = await shown(client, "conversation")
    assert message == error(
        "chat",
        "Nothing to look at: 'default' has no images or files waiting and no earlier turn to continue. Load images "
        "with load_image (documents with attach_file) first, or pass images=[] to send a text-only turn. Nothing "
        "was sent.",
    )
    assert turns == [] and upstream.requests == []


async def test_a_text_only_first_turn_is_sent_when_asked_for(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        result = await call(client, "chat", {"prompt": "Say hello.", "conversation_id": "notes", "images": []})
    assert result["status"] == "completed" and result["turn"] == 1
    assert [part["type"] for part in user_content(upstream.responses_bodies()[0])] == ["input_text"]


async def test_chat_turn_n_needs_no_prompt_and_no_prompt_at_all_is_one_sentence(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="Slow but sure.", delay=0.8))
    async with connect(settings, mode) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        running = await call(client, "chat", {"prompt": "Take your time", "wait_seconds": 0.1})
        done = await call(client, "chat", {"turn": running["turn"], "wait_seconds": 10})
        sent = len(upstream.requests)
        missing = await fails(client, "chat", {})
    assert running["status"] == "running" and done["status"] == "completed" and done["text"] == "Slow but sure."
    assert missing == error(
        "chat",
        "chat needs a prompt saying what to ask the model about the images, or turn=<n> to fetch an answer that "
        "came back 'running'.",
    )
    assert len(upstream.requests) == sent


# -- point 8: small truths -------------------------------------------------------------------------------------------


async def test_descriptions_say_what_turn_n_returns_and_where_input_dir_defaults(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    target = tools["preview"].input_schema["properties"]["target"]["description"]
    input_dir = tools["run_workflow"].input_schema["properties"]["input_dir"]["description"]
    assert "'turn:<n>' (its answer; the whole turn with format='json')" in target
    assert "default: IMAGECHAT_INPUT_DIR, else the first allowed folder" in input_dir


async def test_context_too_long_suggests_auto_truncation_only_when_it_is_disabled(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    for _ in range(2):
        upstream.fail(400, code="context_length_exceeded", message="This model's maximum context length is 128000.")
    async with connect(settings, mode) as client:
        auto = await fails(client, "chat", {"prompt": "hi", "images": []})
        await call(client, "set_options", {"truncation": "disabled"})
        disabled = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert "even with truncation 'auto'" in auto and "set_options(truncation='auto')" not in auto
    assert "or use set_options(truncation='auto')" in disabled
