"""The SQLite store keeps records in the database and bytes as files, writes only what changed, keeps each
conversation's own names, and opens the stores of the previous version with their conversations and images."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from server.settings import Settings
from server.stores.sqlite import SqliteStore
from tests import images
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, user_content
from tools.models import Conversation, Options, Turn

# The first layout, exactly as the previous version created it.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, doc TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, meta TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, meta TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS variants (key TEXT PRIMARY KEY, mime TEXT NOT NULL, data BLOB NOT NULL,
                                     created_at REAL NOT NULL);
"""


def old_store(path: Path, photo: bytes, notes: bytes) -> dict[str, str]:
    """A database of the previous version: one conversation with a turn about an image and a pending file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_SCHEMA)
    image_id = "img_" + hashlib.sha256(photo).hexdigest()[:24]
    file_id = "file_" + hashlib.sha256(notes).hexdigest()[:24]
    image = {"image_id": image_id, "width": 64, "height": 48, "format": "PNG", "mime": "image/png", "bytes": len(photo)}
    db.execute("INSERT INTO images VALUES (?, ?, ?)", (image_id, json.dumps({**image, "name": "card.png"}), photo))
    document = {"file_id": file_id, "name": "notes.txt", "mime": "text/plain", "bytes": len(notes)}
    db.execute("INSERT INTO files VALUES (?, ?, ?)", (file_id, json.dumps(document), notes))
    db.execute("INSERT INTO variants VALUES (?, ?, ?, ?)", (f"{image_id}/64x48", "image/jpeg", b"old-variant", 1.0))
    turn = {"turn": 1, "parent": None, "prompt": "What is it?", "images": [image_id], "output": "A test card.",
            "model": "gpt-4.1-mini", "response_id": "resp_old", "stored": False, "api": "responses"}  # fmt: skip
    doc = {"id": "old", "options": {"model": "gpt-4.1-mini", "preset": "describe"}, "turns": [turn],
           "pending_images": [image_id], "pending_files": [file_id]}  # fmt: skip
    db.execute("INSERT INTO conversations VALUES (?, ?, ?)", ("old", json.dumps(doc), time.time()))
    db.commit()
    db.close()
    return {"image": image_id, "file": file_id}


async def test_a_store_of_the_previous_version_opens_with_its_conversations_and_images(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    assert settings.state_dir is not None
    photo, notes = images.png(64, 48, (10, 120, 200)), b"Notes from before.\n"
    ids = old_store(settings.state_dir / "imagechat.sqlite3", photo, notes)
    upstream.add_reply(Reply(text="Still a test card."))
    async with connect(settings, mode, store="sqlite") as client:
        turns = json.loads((await call(client, "preview", {"conversation_id": "old", "target": "conversation",
                                                           "format": "json"}))["text"])  # fmt: skip
        options = json.loads((await call(client, "preview", {"conversation_id": "old", "target": "options"}))["text"])
        resource = (await client.read_resource(f"image://{ids['image']}")).contents[0]
        shown = await call(client, "preview", {"conversation_id": "old", "target": f"image:{ids['image']}"})
        second = await call(client, "chat", {"conversation_id": "old", "prompt": "And now?", "persist_context": False})
    assert [t["output"] for t in turns] == ["A test card."] and options["preset"] == "describe"
    assert base64.b64decode(resource.blob) == photo  # type: ignore[union-attr]
    assert shown["text"].startswith("card.png: 64x48 PNG")
    assert second["turn"] == 2
    parts = user_content(upstream.responses_bodies()[-1])
    assert [p["type"] for p in parts] == ["input_text", "input_image", "input_file"]  # the pending ones, sent
    assert base64.b64decode(parts[2]["file_data"].partition(",")[2]) == notes
    db = sqlite3.connect(settings.state_dir / "imagechat.sqlite3")
    columns = {row[1] for table in ("images", "files", "variants") for row in db.execute(f"PRAGMA table_info({table})")}
    assert "data" not in columns and db.execute("PRAGMA user_version").fetchone()[0] == 2
    blob = settings.state_dir / "blobs" / hashlib.sha256(photo).hexdigest()[:2] / hashlib.sha256(photo).hexdigest()
    assert blob.read_bytes() == photo


async def test_bytes_live_in_the_blob_folder_and_records_in_the_database(
    settings: Settings, pictures: Path, mode: str
) -> None:
    async with connect(settings, mode, store="sqlite") as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        await call(client, "attach_file", {"source": str(pictures / "notes.txt")})
    assert settings.state_dir is not None
    stored = sorted(p.read_bytes() for p in (settings.state_dir / "blobs").glob("??/*"))
    # The original image and document, and the variant load_image prepared for the conversation's model.
    originals = [(pictures / "red.png").read_bytes(), (pictures / "notes.txt").read_bytes()]
    assert all(original in stored for original in originals) and len(stored) == 3
    assert [blob[:3] for blob in stored if blob not in originals] == [b"\xff\xd8\xff"]  # the JPEG variant
    assert not list((settings.state_dir / "blobs" / "tmp").iterdir())
    db = sqlite3.connect(settings.state_dir / "imagechat.sqlite3")
    largest = db.execute("SELECT max(length(meta)) FROM images").fetchone()[0]
    assert largest < 400  # a record, not the image


def statements(store: SqliteStore) -> list[str]:
    seen: list[str] = []
    store.db.set_trace_callback(seen.append)
    return seen


async def test_set_options_on_a_conversation_with_large_answers_writes_only_the_options(
    settings: Settings, mode: str
) -> None:
    assert settings.state_dir is not None
    path = settings.state_dir / "imagechat.sqlite3"
    store = SqliteStore(path)
    conversation = Conversation(id="long", options=Options(model="gpt-4.1-mini"))
    answer = "An answer of some length. " * 40_000  # about 1 MB a turn
    conversation.turns = [Turn(turn=n, parent=n - 1 or None, prompt="More?", output=answer) for n in range(1, 11)]
    await store.put_conversation(conversation)
    await store.close()
    wal = path.with_name(path.name + "-wal")
    async with connect(settings, mode, store="sqlite") as client:
        before = wal.stat().st_size if wal.exists() else 0
        for effort in ("low", "high", "low", "high", "low"):
            await call(client, "set_options", {"conversation_id": "long", "detail": effort})
        grown = (wal.stat().st_size if wal.exists() else 0) - before
        kept = json.loads((await call(client, "preview", {"conversation_id": "long", "target": "turn:10",
                                                          "format": "json"}))["text"])  # fmt: skip
    # Five changes of 10 MB of answers: a rewrite would add over 50 MB to the log; the options are a page each.
    assert grown < 5 * 16 * 1024, grown
    assert kept["output"] == answer


async def test_put_changes_writes_the_conversations_record_and_the_given_turns_only(settings: Settings) -> None:
    assert settings.state_dir is not None
    store = SqliteStore(settings.state_dir / "s.sqlite3")
    conversation = Conversation(id="c", options=Options(model="m"))
    conversation.turns = [Turn(turn=n, parent=None, prompt=f"p{n}", output="o" * 5000) for n in (1, 2, 3)]
    await store.put_conversation(conversation)
    seen = statements(store)
    head = await store.get_conversation("c", with_turns=False)
    assert head is not None and head.turns == []
    head.options.detail = "low"
    head.turns = [Turn(turn=3, parent=2, prompt="p3", output="changed")]
    await store.put_changes(head, head.turns)
    writes = [s for s in seen if s.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert len(writes) == 2 and writes[0].startswith("INSERT INTO conversations")
    assert "o" * 5000 not in " ".join(seen)  # the other turns were neither read nor written
    found = await store.get_conversation("c")
    assert found is not None and found.options.detail == "low"
    assert [t.output for t in found.turns] == ["o" * 5000, "o" * 5000, "changed"]
    await store.close()


async def test_the_same_bytes_under_two_names_keep_each_conversations_name(
    settings: Settings, pictures: Path, mode: str, tmp_path: Path
) -> None:
    (pictures / "a.png").write_bytes((pictures / "red.png").read_bytes())
    (pictures / "b.png").write_bytes((pictures / "red.png").read_bytes())
    for store in ("memory", "sqlite"):
        async with connect(settings, mode, store=store, state_dir=tmp_path / store) as client:
            first = await call(client, "load_image", {"source": str(pictures / "a.png"), "conversation_id": "one"})
            second = await call(client, "load_image", {"source": str(pictures / "b.png"), "conversation_id": "two"})
            image_id = first["images"][0]["image_id"]
            assert second["images"][0]["image_id"] == image_id  # stored once
            one = await call(client, "preview", {"conversation_id": "one", "target": f"image:{image_id}"})
            two = await call(client, "preview", {"conversation_id": "two", "target": f"image:{image_id}"})
        assert one["text"].startswith("a.png:") and two["text"].startswith("b.png:"), store


async def test_a_write_lock_held_elsewhere_makes_a_write_wait_in_a_thread_not_on_the_event_loop(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    other = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)  # as another process would
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async def release() -> None:
        await anyio.sleep(0.5)
        other.execute("COMMIT")

    async with anyio.create_task_group() as group:
        group.start_soon(tick)
        group.start_soon(release)
        started = time.monotonic()
        await store.put_changes(Conversation(id="c", options=Options(model="m")))
        waited = time.monotonic() - started
        group.cancel_scope.cancel()
    assert waited >= 0.4  # it waited for the lock ...
    assert ticks >= 15  # ... while the event loop went on
    assert await store.get_conversation("c") is not None
    other.close()
    await store.close()


async def test_a_variant_is_read_back_whole_or_not_at_all_small_ones_without_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "s.sqlite3")
    small, large = bytes(range(256)) * 800, bytes(range(256)) * 4000  # 200 KB (a tile model's), 1 MB
    await store.put_variant("img_a/1152x768", "image/jpeg", small)
    await store.put_variant("img_a/2048x1365", "image/jpeg", large)
    handed_off: list[object] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Callable[..., object], *args: object, **kwargs: Any) -> object:
        handed_off.append(getattr(func, "__name__", func))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    assert await store.get_variant("img_a/1152x768") == ("image/jpeg", small)
    assert "read" not in handed_off  # read on the event loop: a few hundred kilobytes cost less than the hand-off
    assert await store.get_variant("img_a/2048x1365") == ("image/jpeg", large)
    assert "read" in handed_off
    # A variant is written without waiting for the disk: after a power cut its file may be short. Short or gone,
    # it is missing (chat prepares it again), by either way of reading it.
    for key, data in (("img_a/1152x768", small), ("img_a/2048x1365", large)):
        blob = store.blobs.path(hashlib.sha256(data).hexdigest())
        blob.write_bytes(data[: len(data) // 2])
        assert await store.get_variant(key) is None
        blob.unlink()
        assert await store.get_variant(key) is None
    await store.close()
