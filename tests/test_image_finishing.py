"""load_image answers once its image is checked; the variant for the model finishes beside the answer.

The decode of every byte is the check; the resize and encode after it finish in the server's task group. A chat
that comes before the variant is stored waits for it instead of decoding the image again; a variant that fails to
finish is prepared again from the original; one still finishing at shutdown is stored before the server stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.settings import Settings
from tests.fake_upstream import FakeUpstream
from tests.helpers import call, fails
from tests.test_image_bounds import served, until, watch_jobs
from tests.test_image_prep import MODELS, encode, photo, save, sent_images
from tools import imaging
from tools.finishing import Finishing
from tools.image_sizing import variant_key


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=MODELS) as fake:
        yield fake


@dataclass
class Preparations:
    """Every decode for the model and every finish (resize, encode) in this process; finishes can be held."""

    decodes: int = 0
    finishes_started: int = 0
    finishes_done: int = 0
    fail_next: bool = False
    held: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.held.set()  # not held until hold()

    def hold(self) -> None:
        self.held.clear()

    def release(self) -> None:
        self.held.set()


@pytest.fixture
def preparations(monkeypatch: pytest.MonkeyPatch) -> Preparations:
    seen = Preparations()
    real_decode, real_finish = imaging.decode_for, imaging.finish

    def decode_for(data: bytes, **kwargs: Any) -> imaging.Decoded | imaging.Prepared:
        seen.decodes += 1
        return real_decode(data, **kwargs)

    def finish(decoded: imaging.Decoded | imaging.Prepared, **kwargs: Any) -> imaging.Prepared:
        seen.finishes_started += 1
        assert seen.held.wait(20), "a finish was held for too long"
        if seen.fail_next:
            seen.fail_next = False
            raise RuntimeError("out of memory while resizing")
        result = real_finish(decoded, **kwargs)
        seen.finishes_done += 1
        return result

    monkeypatch.setattr(imaging, "decode_for", decode_for)
    monkeypatch.setattr(imaging, "finish", finish)
    return seen


def waiting_for_variants(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The variant keys chats have asked Finishing for (they wait there while one finishes)."""
    asked: list[str] = []
    real = Finishing.variant

    async def variant(self: Finishing, store: object, key: str) -> imaging.Prepared | None:
        asked.append(key)
        return await real(self, store, key)

    monkeypatch.setattr(Finishing, "variant", variant)
    return asked


async def test_load_image_answers_once_checked_and_chat_waits_for_the_variant_instead_of_decoding_again(
    settings: Settings,
    pictures: Path,
    upstream: FakeUpstream,
    mode: str,
    preparations: Preparations,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = save(pictures, "photo.jpg", encode(photo(3000, 2000), "JPEG", quality=90))
    asked = waiting_for_variants(monkeypatch)
    async with served(settings, mode) as (client, deps):
        await call(client, "set_options", {"model": "gpt-4o", "detail": "high"})
        preparations.hold()
        [image] = (await call(client, "load_image", {"source": path}))["images"]
        # Answered with the checked image while its variant is still being finished.
        assert (image["width"], image["height"], image["format"]) == (3000, 2000, "JPEG")
        await until(lambda: preparations.finishes_started == 1)
        assert (preparations.decodes, preparations.finishes_done) == (1, 0)
        key = variant_key(image["image_id"], 1152, 768)
        assert await deps.store.get_variant(key) is None
        replies: list[dict[str, Any]] = []
        async with anyio.create_task_group() as group:

            async def ask() -> None:
                replies.append(await call(client, "chat", {"prompt": "What is this?"}))

            group.start_soon(ask)
            await until(lambda: key in asked)  # the chat waits for the variant being finished
            assert upstream.responses_bodies() == []  # nothing is sent before the image is ready
            preparations.release()
        assert replies[0]["status"] == "completed"
        [(mime, sent, _)] = sent_images(upstream)
        assert mime == "image/jpeg" and sent.size == (1152, 768)
        # One decode and one finish in all: the chat took the load's variant, and the store holds it now.
        assert (preparations.decodes, preparations.finishes_done) == (1, 1)
        await until(lambda: not deps.finishing.has(deps.store, key))
        stored = await deps.store.get_variant(key)
        assert stored is not None and stored[0] == "image/jpeg"
        await call(client, "chat", {"prompt": "Again?", "images": [image["image_id"]]})
        assert sent_images(upstream)[0][2]["image_url"] == sent_images(upstream, 0)[0][2]["image_url"]
        assert preparations.decodes == 1


async def test_a_variant_that_fails_to_finish_is_prepared_again_from_the_original(
    settings: Settings,
    pictures: Path,
    upstream: FakeUpstream,
    mode: str,
    preparations: Preparations,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = save(pictures, "photo.jpg", encode(photo(3000, 2000), "JPEG", quality=90))
    preparations.fail_next = True
    async with served(settings, mode) as (client, deps):
        await call(client, "set_options", {"model": "gpt-4o", "detail": "high"})
        with caplog.at_level(logging.WARNING, logger="tools.finishing"):
            [image] = (await call(client, "load_image", {"source": path}))["images"]
            key = variant_key(image["image_id"], 1152, 768)
            await until(lambda: not deps.finishing.has(deps.store, key))
        assert "preparing it failed (out of memory while resizing)" in caplog.text
        assert await deps.store.get_variant(key) is None  # nothing half-made was stored
        reply = await call(client, "chat", {"prompt": "What is this?"})
        assert reply["status"] == "completed"
        [(_, sent, _)] = sent_images(upstream)
        assert sent.size == (1152, 768)
        assert preparations.decodes == 2  # the load's check, then chat's preparation from the original
        assert await deps.store.get_variant(key) is not None


async def test_a_variant_still_finishing_at_shutdown_is_stored_for_the_next_start(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str, preparations: Preparations
) -> None:
    path = save(pictures, "photo.jpg", encode(photo(3000, 2000), "JPEG", quality=90))
    async with served(settings, mode, store="sqlite") as (client, _):
        await call(client, "set_options", {"model": "gpt-4o", "detail": "high"})
        preparations.hold()
        await call(client, "load_image", {"source": path})
        assert preparations.finishes_done == 0
        # The server stops while the variant is held; it is let go a moment later, during the shutdown.
        threading.Timer(0.3, preparations.release).start()
    assert preparations.finishes_done == 1
    async with served(settings, mode, store="sqlite") as (client, _):
        await call(client, "chat", {"prompt": "What is this?"})
    assert preparations.decodes == 1  # the new process found the variant the old one finished while stopping
    [(_, sent, _)] = sent_images(upstream)
    assert sent.size == (1152, 768)


async def test_a_load_refused_after_its_first_image_was_checked_stops_that_image_s_variant(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str, preparations: Preparations
) -> None:
    path = save(pictures, "photo.jpg", encode(photo(3000, 2000), "JPEG", quality=90))
    async with served(settings, mode) as (client, deps):
        jobs = watch_jobs(deps)
        await call(client, "set_options", {"model": "gpt-4o", "detail": "high"})
        preparations.hold()
        text = await fails(client, "load_image", {"source": [path, str(pictures / "missing.jpg")]})
        assert "missing.jpg' was not found" in text
        preparations.release()
        await until(lambda: deps.images.budget.in_use == 0 and all(job.finished.is_set() for job in jobs))
        assert any(job.cancelled for job in jobs)  # the photo's work was stopped, not finished for nothing
        assert preparations.finishes_done == 0
        pending = await call(client, "preview", {"target": "pending"})
        assert '"images": []' in pending["text"]  # the conversation is as it was
    assert upstream.responses_bodies() == []
