"""SQLite state survives a restart; the store protocol behaves the same in memory and on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.settings import Settings
from server.stores.memory import MemoryStore
from server.stores.sqlite import SqliteStore
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call
from tools.models import Conversation, FileRecord, ImageRecord, Options, Turn
from tools.ports import Store


async def test_conversation_survives_a_restart(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="It is red."))
    async with connect(settings, mode, store="sqlite") as client:
        loaded = await call(client, "load_image", {"source": str(pictures / "red.png")})
        await call(client, "set_options", {"preset": "describe"})
        first = await call(client, "chat", {"prompt": "Colour?"})
    async with connect(settings, mode, store="sqlite") as client:
        turns = json.loads((await call(client, "preview", {"target": "conversation", "format": "json"}))["text"])
        options = json.loads((await call(client, "preview", {"target": "options"}))["text"])
        image = await client.read_resource(loaded["images"][0]["resource_uri"])
        second = await call(client, "chat", {"prompt": "Sure?"})
    assert turns[0]["prompt"] == "Colour?" and turns[0]["output"] == "It is red."
    assert options["preset"] == "describe"
    assert image.contents
    assert second["turn"] == 2
    assert upstream.responses_bodies()[-1]["previous_response_id"] == first["response_id"]
    assert (settings.state_dir / "imagechat.sqlite3").exists()  # type: ignore[operator]


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.sqlite3")


async def test_store_round_trips(store: Store) -> None:
    conversation = Conversation(id="c", options=Options(model="m"))
    conversation.turns.append(Turn(turn=1, parent=None, prompt="p", output="o"))
    await store.put_conversation(conversation)
    conversation.turns.clear()  # the stored copy is not affected by changes to the object
    found = await store.get_conversation("c")
    assert found is not None and found.turns[0].output == "o"
    record = ImageRecord(image_id="img_1", width=1, height=2, format="PNG", mime="image/png", bytes=3)
    await store.put_image(record, b"abc")
    assert await store.get_image("img_1") == (record, b"abc")
    assert await store.get_image_record("img_2") is None
    doc = FileRecord(file_id="file_1", name="a.txt", mime="text/plain", bytes=1)
    await store.put_file(doc, b"x")
    assert await store.get_file("file_1") == (doc, b"x")
    await store.put_variant("img_1/1x2", "image/jpeg", b"j")
    assert await store.get_variant("img_1/1x2") == ("image/jpeg", b"j")
    assert await store.list_conversations() == ["c"]
    await store.close()
