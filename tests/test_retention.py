"""Retention: `imagechat-mcp prune` removes what the keep_* settings do not keep, and never an image or file that a
kept conversation refers to (pending or in a turn)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from server.settings import Settings
from server.stores.memory import MemoryStore
from server.stores.retention import DAY, Retention
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call

ROOT = Path(__file__).parent.parent
LONG_AGO = time.time() - 100 * DAY


def prune(state: Path, *flags: str) -> str:
    env = {"IMAGECHAT_STATE_DIR": str(state), "HOME": str(state.parent), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "server", "prune", *flags], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def age_everything(state: Path, keep: str) -> None:
    """Every record and blob as if written 100 days ago, except the conversation `keep` (changed just now)."""
    db = sqlite3.connect(state / "imagechat.sqlite3")
    db.execute("UPDATE conversations SET updated_at = ? WHERE id != ?", (LONG_AGO, keep))
    for table in ("images", "files", "variants"):
        db.execute(f"UPDATE {table} SET created_at = ?", (LONG_AGO,))
    db.commit()
    db.close()
    for blob in (state / "blobs").glob("??/*"):
        os.utime(blob, (LONG_AGO, LONG_AGO))


def stored(state: Path) -> dict[str, set[str]]:
    db = sqlite3.connect(state / "imagechat.sqlite3")
    found = {
        "conversations": {row[0] for row in db.execute("SELECT id FROM conversations")},
        "images": {row[0] for row in db.execute("SELECT id FROM images")},
        "files": {row[0] for row in db.execute("SELECT id FROM files")},
        "variants": {row[0] for row in db.execute("SELECT key FROM variants")},
        "turns": {row[0] for row in db.execute("SELECT DISTINCT conversation FROM turns")},
    }
    named = {row[0] for t in ("images", "files", "variants") for row in db.execute(f"SELECT blob FROM {t}")}
    db.close()
    found["blob files"] = {p.name for p in (state / "blobs").glob("??/*")}
    found["named blobs"] = named
    return found


async def test_prune_removes_old_conversations_and_keeps_what_a_kept_conversation_refers_to(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    assert settings.state_dir is not None
    state = settings.state_dir
    upstream.add_reply(Reply(text="Red and blue."))
    async with connect(settings, mode, store="sqlite") as client:
        red = await call(client, "load_image", {"source": str(pictures / "red.png"), "conversation_id": "old"})
        blue = await call(client, "load_image", {"source": str(pictures / "blue.jpg"), "conversation_id": "old"})
        await call(client, "chat", {"conversation_id": "old", "prompt": "Colours?"})  # both sent in turn 1
        await call(client, "attach_file", {"source": str(pictures / "notes.txt"), "conversation_id": "old"})
        # "kept" refers to the blue image (pending) only.
        await call(client, "load_image", {"source": str(pictures / "blue.jpg"), "conversation_id": "kept"})
    red_id, blue_id = red["images"][0]["image_id"], blue["images"][0]["image_id"]
    age_everything(state, keep="kept")
    before = stored(state)
    assert before["conversations"] == {"old", "kept"} and len(before["variants"]) == 2

    said = prune(state, "--dry-run", "--keep-conversations-days", "30")
    assert said.startswith("Would remove 1 conversations, 1 images, 1 files, 2 prepared variants, ")
    assert stored(state) == before  # a dry run removes nothing

    said = prune(state, "--keep-conversations-days", "30")
    after = stored(state)
    assert said.startswith("Removed 1 conversations, 1 images, 1 files, 2 prepared variants, ")
    assert after["conversations"] == {"kept"} and after["turns"] == set()
    assert after["images"] == {blue_id} and red_id not in after["images"]  # blue is pending in "kept"
    assert after["files"] == set() and after["variants"] == set()  # variants 100 days old go by default
    assert (
        after["blob files"]
        == after["named blobs"]
        == {hashlib.sha256((pictures / "blue.jpg").read_bytes()).hexdigest()}
    )
    async with connect(settings, mode, store="sqlite") as client:
        shown = await call(client, "preview", {"conversation_id": "kept", "target": f"image:{blue_id}"})
        assert shown["text"].startswith("blue.jpg:")


async def test_by_default_prune_keeps_every_conversation_and_its_images(
    settings: Settings, pictures: Path, mode: str
) -> None:
    assert settings.state_dir is not None
    async with connect(settings, mode, store="sqlite") as client:
        await call(client, "load_image", {"source": str(pictures / "red.png"), "conversation_id": "a"})
        await call(client, "attach_file", {"source": str(pictures / "notes.txt"), "conversation_id": "b"})
    age_everything(settings.state_dir, keep="")
    before = stored(settings.state_dir)
    assert prune(settings.state_dir).startswith("Removed 0 conversations, 0 images, 0 files")
    assert stored(settings.state_dir) == before


async def test_a_size_limit_removes_the_least_recently_changed_conversations_first() -> None:
    store = MemoryStore()
    from tools.models import Conversation, ImageRecord, Options

    now = time.time()
    for number in range(5):
        conversation = Conversation(id=f"c{number}", options=Options(model="m"))
        data = bytes([number]) * 300_000
        record = ImageRecord(image_id=f"img_{number}", width=1, height=1, format="PNG", mime="image/png", bytes=1)
        await store.put_image(record, data)
        conversation.pending_images.append(record.image_id)
        await store.put_conversation(conversation)
        store.updated[conversation.id] = now - (5 - number) * DAY  # c4 is the most recent
    for image_id, (meta, key, _) in list(store.images.items()):
        store.images[image_id] = (meta, key, now - 10 * DAY)
        store.blobs.added[key] = now - 10 * DAY
    pruned = await store.prune(Retention(conversation_mb=1.0), now=now)  # three 300 KB images fit, not four
    assert sorted(pruned.conversations) == ["c0", "c1"] and sorted(pruned.images) == ["img_0", "img_1"]
    assert await store.list_conversations() == ["c2", "c3", "c4"]
    assert await store.get_image("img_2") is not None and await store.get_image("img_0") is None
    assert len(store.blobs.data) == 3
