"""A new image is hashed, checked, prepared and written at once, and nothing of a refused one stays behind.

load_image decodes a new image while it hashes it, and writes the original out (synced) while it decodes; a
prepared variant is a cache, written without waiting for the disk, so a power cut may leave it short: then it
is made again. These tests look at what a user of the SQLite store would see: the files in the state folder,
the image ids, and what reaches the upstream."""

from __future__ import annotations

import io
import sqlite3
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from PIL import Image

from server.settings import Settings
from server.stores.blobs import blob_key
from server.stores.sqlite import SqliteStore
from tests import images
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream
from tests.helpers import call, decoded_image, fails, user_content
from tools import image_sizing
from tools.deps import content_id
from tools.models import ImageRecord

MODEL = "gpt-5"


@pytest.fixture
def sqlite_settings(settings: Settings) -> Settings:
    return replace(settings, store="sqlite")


def state_files(settings: Settings) -> tuple[list[Path], list[Path]]:
    """(blob files, temporary files) in the state folder."""
    blobs = settings.resolved_state_dir() / "blobs"
    return sorted(blobs.glob("??/*")), sorted((blobs / "tmp").glob("*"))


def photo(path: Path, width: int = 1600, height: int = 1200) -> Path:
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    out = io.BytesIO()
    Image.blend(Image.new("RGB", (width, height), (30, 120, 200)), noise, 0.3).save(out, "JPEG", quality=90)
    path.write_bytes(out.getvalue())
    return path


def sent_size(upstream: FakeUpstream) -> tuple[int, int]:
    part = next(p for p in user_content(upstream.responses_bodies()[-1]) if p["type"] == "input_image")
    with Image.open(io.BytesIO(decoded_image(part)[1])) as img:
        img.load()  # a short file fails here
        return img.size


async def test_a_refused_image_leaves_no_file_in_the_state_folder(
    sqlite_settings: Settings, pictures: Path, mode: str
) -> None:
    good = images.jpeg(1200, 900)
    (pictures / "cut.jpg").write_bytes(good[: len(good) // 2])  # a transfer cut short: refused in the decode
    async with connect(sqlite_settings, mode) as client:
        before = state_files(sqlite_settings)
        text = await fails(client, "load_image", {"source": "cut.jpg", "conversation_id": "c"})
        assert "cut.jpg" in text
        assert state_files(sqlite_settings) == before  # nothing written ahead of the check is kept
        loaded = await call(client, "load_image", {"source": "blue.jpg", "conversation_id": "c"})
        assert loaded["pending_images"] == 1  # the refused one was never attached


async def test_a_new_image_is_stored_whole_and_its_temporary_file_is_gone(
    sqlite_settings: Settings, pictures: Path, mode: str
) -> None:
    source = photo(pictures / "photo.jpg")
    async with connect(sqlite_settings, mode) as client:
        await call(client, "set_options", {"conversation_id": "c", "model": MODEL, "detail": "high"})
        loaded = await call(client, "load_image", {"source": "photo.jpg", "conversation_id": "c"})
    blobs, temporary = state_files(sqlite_settings)
    assert temporary == []
    original = source.read_bytes()
    assert any(path.read_bytes() == original for path in blobs)
    assert loaded["images"][0]["bytes"] == len(original)


async def test_the_same_photo_loaded_twice_at_once_is_one_image_and_one_file(
    sqlite_settings: Settings, pictures: Path, mode: str
) -> None:
    source = photo(pictures / "photo.jpg")
    (pictures / "copy.jpg").write_bytes(source.read_bytes())
    ids: dict[str, str] = {}
    async with connect(sqlite_settings, mode) as client:

        async def load(name: str, conversation: str) -> None:
            result = await call(client, "load_image", {"source": name, "conversation_id": conversation})
            ids[conversation] = result["images"][0]["image_id"]

        async with anyio.create_task_group() as group:
            group.start_soon(load, "photo.jpg", "a")
            group.start_soon(load, "copy.jpg", "b")
        again = await call(client, "load_image", {"source": "copy.jpg", "conversation_id": "c"})
    assert ids["a"] == ids["b"] == again["images"][0]["image_id"]
    blobs, temporary = state_files(sqlite_settings)
    assert temporary == []
    assert sum(path.read_bytes() == source.read_bytes() for path in blobs) == 1


async def test_a_variant_cut_short_by_a_power_cut_is_prepared_again(
    sqlite_settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    photo(pictures / "photo.jpg")
    expected = image_sizing.target(1600, 1200, detail="high", model=MODEL).size
    async with connect(sqlite_settings, mode) as client:
        await call(client, "set_options", {"conversation_id": "c", "model": MODEL, "detail": "high"})
        await call(client, "load_image", {"source": "photo.jpg", "conversation_id": "c"})
    state = sqlite_settings.resolved_state_dir()
    db = sqlite3.connect(state / "imagechat.sqlite3")
    ((blob, size),) = db.execute("SELECT blob, bytes FROM variants").fetchall()
    db.close()
    variant = state / "blobs" / blob[:2] / blob
    variant.write_bytes(variant.read_bytes()[: size // 3])  # what a power cut can leave of an unsynced write
    async with connect(sqlite_settings, mode) as client:
        reply = await call(client, "chat", {"prompt": "What is it?", "conversation_id": "c"})
    assert reply["status"] == "completed"
    assert sent_size(upstream) == expected  # the whole image, prepared again from the original
    assert variant.stat().st_size == size  # and the cache is whole again


def store_pair(state: Path) -> tuple[SqliteStore, SqliteStore]:
    """Two stores on one state folder, as two server processes have them: each its own connection and blobs."""
    path = state / "imagechat.sqlite3"
    return SqliteStore(path), SqliteStore(path)


def record_of(data: bytes) -> ImageRecord:
    return ImageRecord(
        image_id=content_id("img", data),
        width=1,
        height=1,
        format="JPEG",
        mime="image/jpeg",
        frames=1,
        bytes=len(data),
        name="photo.jpg",
    )


async def test_a_staged_original_stays_for_the_process_that_stored_it_when_another_gives_up(tmp_path: Path) -> None:
    data = images.jpeg(640, 480)
    key, record = blob_key(data), record_of(data)
    first, second = store_pair(tmp_path)
    try:
        await first.blobs.stage(data, key)  # written under its key while the image is checked
        await second.blobs.stage(data, key)  # the same bytes in another process: found there already
        await second.put_image(record, data, key=key)
        await first.blobs.unstage(key)  # the first load gave up: its file is kept, since a record names it
        found = await first.get_image(record.image_id)
        assert found is not None and found[1] == data
    finally:
        await first.close()
        await second.close()


async def test_a_staged_original_removed_by_a_load_that_gave_up_is_written_again_before_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = images.jpeg(640, 480)
    key, record = blob_key(data), record_of(data)
    first, second = store_pair(tmp_path)
    try:
        await first.blobs.stage(data, key)
        await second.blobs.stage(data, key)
        put = second.blobs.put

        async def put_then_the_other_gives_up(data: bytes, *, key: str | None = None, durable: bool = True) -> str:
            stored = await put(data, key=key, durable=durable)
            await first.blobs.unstage(key or stored)  # between the second's put and its record: the file goes
            return stored

        monkeypatch.setattr(second.blobs, "put", put_then_the_other_gives_up)
        await second.put_image(record, data, key=key)
        found = await second.get_image(record.image_id)
        assert found is not None and found[1] == data  # the record names a whole blob: written again
        await second.blobs.unstage(key)
        assert (await first.get_image(record.image_id)) is not None
    finally:
        await first.close()
        await second.close()
