"""Bad input gets a ToolError that says what to do, and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream
from tests.helpers import call, fails


async def test_missing_file_names_the_source_and_attaches_nothing(
    settings: Settings, pictures: Path, mode: str
) -> None:
    async with connect(settings, mode) as client:
        message = await fails(client, "load_image", {"source": [str(pictures / "red.png"), str(pictures / "nope.png")]})
        pending = await call(client, "preview", {"target": "pending"})
    assert "nope.png" in message
    assert json.loads(pending["text"]) == {"images": [], "files": []}


async def test_a_text_file_named_png_is_not_an_image(settings: Settings, pictures: Path, mode: str) -> None:
    (pictures / "fake.png").write_text("not an image", encoding="utf-8")
    async with connect(settings, mode) as client:
        message = await fails(client, "load_image", {"source": str(pictures / "fake.png")})
    assert "fake.png" in message


async def test_bare_base64_is_refused_with_a_hint(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        message = await fails(client, "load_image", {"source": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAA" * 3})
    assert "data:image/png;base64," in message


async def test_unknown_image_and_conversation_ids(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        image = await fails(client, "load_image", {"source": "image://img_doesnotexist"})
        chat = await fails(client, "chat", {"prompt": "hi", "images": ["img_doesnotexist"], "dry_run": True})
        convo = await fails(client, "preview", {"conversation_id": "ghost"})
        turn = await fails(client, "chat", {"prompt": "hi", "starting_point": 7, "images": []})
        target = await fails(client, "preview", {"target": "everything"})
    assert "img_doesnotexist" in image and "load_image" in image
    assert "img_doesnotexist" in chat
    assert "No conversation 'ghost'" in convo
    assert "starting_point 7" in turn and "'start'" in turn
    assert "Unknown target 'everything'" in target


async def test_documents_are_checked_against_their_type(settings: Settings, pictures: Path, mode: str) -> None:
    (pictures / "fake.pdf").write_text("hello", encoding="utf-8")
    (pictures / "bad.json").write_text("{nope", encoding="utf-8")
    (pictures / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    async with connect(settings, mode) as client:
        assert "not one" in await fails(client, "attach_file", {"source": str(pictures / "fake.pdf")})
        assert "not valid JSON" in await fails(client, "attach_file", {"source": str(pictures / "bad.json")})
        assert "UTF-8" in await fails(client, "attach_file", {"source": str(pictures / "latin1.txt")})
        assert "load_image" in await fails(client, "attach_file", {"source": str(pictures / "red.png")})
        ok = await call(client, "attach_file", {"source": str(pictures / "doc.pdf")})
    assert ok["file"]["mime"] == "application/pdf" and ok["pending_files"] == 1


async def test_empty_and_huge_prompts_are_refused(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        assert "prompt is empty" in await fails(client, "chat", {"prompt": "   "})
        assert "IMAGECHAT_MAX_PROMPT_CHARS" in await fails(client, "chat", {"prompt": "x" * 1_000_001})


async def test_without_a_key_chat_explains_and_dry_run_still_works(
    settings: Settings, pictures: Path, mode: str
) -> None:
    async with connect(settings, mode, api_key=None) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        message = await fails(client, "chat", {"prompt": "What is it?"})
        dry = await call(client, "chat", {"prompt": "What is it?", "dry_run": True})
        pending = await call(client, "preview", {"target": "pending"})
    assert "OPENAI_API_KEY" in message and "OPENAI_BASE_URL" in message and "dry_run" in message
    assert dry["status"] == "dry_run" and dry["turn"] is None
    assert len(json.loads(pending["text"])["images"]) == 1  # nothing was consumed


async def test_upstream_failure_leaves_the_conversation_as_it_was(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        await call(client, "chat", {"prompt": "first", "images": []})
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        upstream.fail(401, code="invalid_api_key", message="Incorrect API key provided: sk-test-key.")
        message = await fails(client, "chat", {"prompt": "second"})
        conversation = json.loads((await call(client, "preview", {"target": "conversation", "format": "json"}))["text"])
        pending = json.loads((await call(client, "preview", {"target": "pending"}))["text"])
        retried = await call(client, "chat", {"prompt": "second"})
    assert "OPENAI_API_KEY" in message and "sk-test-key" not in message
    assert [turn["prompt"] for turn in conversation] == ["first"]
    assert len(pending["images"]) == 1
    assert retried["turn"] == 2 and len(retried["images"]) == 1


async def test_unknown_model_is_named(settings: Settings, upstream: FakeUpstream, mode: str) -> None:
    async with connect(settings, mode) as client:
        message = await fails(client, "chat", {"prompt": "hi", "model": "gpt-99", "images": []})
    assert "gpt-99" in message and "set_options" in message
