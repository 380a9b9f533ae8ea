"""No wedged conversation and no endless turn.

As found: 65 waiting images made every later default chat fail ("the limit is 64") with no tool to clear them;
an upstream dripping a byte every 0.5 s kept a turn alive 105 s at IMAGECHAT_TIMEOUT=5 while other chats of
the conversation were refused; chat(wait_seconds=0) was always refused as if another turn were running.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import anyio

from server.settings import Settings
from tests import images
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails
from tools.models import Conversation, Options
from tools.pending import drop_pending


def data_url(index: int) -> str:
    png = images.png(8, 8, (index % 256, index // 256, 7))
    return "data:image/png;base64," + base64.b64encode(png).decode()


async def test_a_load_past_the_per_turn_limit_is_refused_and_clear_pending_unwedges(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        loaded = await call(client, "load_image", {"source": [data_url(i) for i in range(64)]})
        assert loaded["pending_images"] == 64
        message = await fails(client, "load_image", {"source": str(pictures / "red.png")})
        assert "already has 64 images waiting" in message and "none of them was attached" in message
        assert "clear_pending" in message and "chat" in message
        pending = await call(client, "preview", {"target": "pending", "format": "json"})
        assert pending["text"].count("img_") == 64
        # The 64 waiting still go with a default chat: the conversation is not wedged.
        assert (await call(client, "chat", {"prompt": "Describe them"}))["status"] == "completed"
        assert len(upstream.responses_bodies()) == 1

        await call(client, "load_image", {"source": [data_url(i) for i in range(100, 164)]})
        cleared = await call(client, "clear_pending", {})
        assert len(cleared["dropped_images"]) == 64 and cleared["pending_images"] == 0
        again = await call(client, "load_image", {"source": str(pictures / "red.png")})
        assert again["pending_images"] == 1


async def test_clear_pending_drops_the_ids_given_and_refuses_ones_not_waiting(
    settings: Settings, pictures: Path
) -> None:
    async with connect(settings) as client:
        red = (await call(client, "load_image", {"source": str(pictures / "red.png")}))["images"][0]["image_id"]
        await call(client, "load_image", {"source": str(pictures / "blue.jpg")})
        note = (await call(client, "attach_file", {"source": str(pictures / "notes.txt")}))["file"]["file_id"]
        message = await fails(client, "clear_pending", {"images": ["img_nope"]})
        assert "'img_nope' is not waiting" in message and red in message and "nothing was dropped" in message
        dropped = await call(client, "clear_pending", {"images": [f"image://{red}"]})
        assert dropped["dropped_images"] == [red] and dropped["dropped_files"] == []
        assert dropped["pending_images"] == 1 and dropped["pending_files"] == 1
        files = await call(client, "clear_pending", {"files": [note]})
        assert files["dropped_files"] == [note] and files["pending_images"] == 1 and files["pending_files"] == 0


def test_drop_pending_is_all_or_the_ids_given() -> None:
    conversation = Conversation(
        id="c", options=Options(model="gpt-4.1-mini"), pending_images=["a", "b"], pending_files=["f"]
    )
    assert drop_pending(conversation, images=["b"]) == (["b"], [])
    assert conversation.pending_images == ["a"] and conversation.pending_files == ["f"]
    assert drop_pending(conversation) == (["a"], ["f"])
    assert conversation.pending_images == [] and conversation.pending_files == []


async def test_a_dripping_upstream_cannot_hold_a_turn_past_its_deadline(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="never", delay=60.0, drip=0.5))
    upstream.add_reply(Reply(text="A red card."))
    async with connect(settings, mode, timeout=5.0, turn_timeout=2.0) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        started = time.monotonic()
        message = await fails(client, "chat", {"prompt": "Describe it", "wait_seconds": 30})
        took = time.monotonic() - started
        assert "longer than 2 s in all (IMAGECHAT_TURN_TIMEOUT)" in message and "wait for the next turn" in message
        assert took < 8, took
        # Nothing was recorded, the image still waits, and the conversation takes the next turn at once.
        answer = await call(client, "chat", {"prompt": "Describe it"})
        assert answer["status"] == "completed" and answer["turn"] == 1 and len(answer["images"]) == 1


async def test_an_announced_turn_that_passes_its_deadline_is_recorded_failed_and_gives_its_images_back(
    settings: Settings, pictures: Path, upstream: FakeUpstream
) -> None:
    upstream.add_reply(Reply(text="never", delay=60.0, drip=0.5))
    async with connect(settings, timeout=5.0, turn_timeout=2.0) as client:
        red = (await call(client, "load_image", {"source": str(pictures / "red.png")}))["images"][0]["image_id"]
        running = await call(client, "chat", {"prompt": "Describe it", "wait_seconds": 0.5})
        assert running["status"] == "running"
        message = await fails(client, "chat", {"prompt": "-", "turn": running["turn"], "wait_seconds": 10})
        assert "IMAGECHAT_TURN_TIMEOUT" in message
        recorded = await call(client, "preview", {"target": f"turn:{running['turn']}", "format": "json"})
        assert '"status": "failed"' in recorded["text"] and "IMAGECHAT_TURN_TIMEOUT" in recorded["text"]
        pending = await call(client, "preview", {"target": "pending", "format": "json"})
        assert red in pending["text"]


async def test_wait_seconds_zero_starts_the_turn_and_answers_running_at_once(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="Slow but sure.", delay=4.0))
    async with connect(settings, mode) as client:
        started = time.monotonic()
        running = await call(client, "chat", {"images": [], "prompt": "Think", "wait_seconds": 0})
        assert running["status"] == "running" and running["turn"] == 1
        assert time.monotonic() - started < 3
        # A second chat while it runs is still refused: one turn at a time.
        busy = await fails(client, "chat", {"images": [], "prompt": "Another", "wait_seconds": 0})
        assert "Another turn of 'default' is still being answered" in busy
        done = await call(client, "chat", {"prompt": "-", "turn": 1, "wait_seconds": 10})
        assert done["status"] == "completed" and done["text"] == "Slow but sure."


async def test_an_agent_can_cancel_a_running_turn(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="never", delay=60.0, drip=0.5))
    upstream.add_reply(Reply(text="A red card."))
    async with connect(settings, mode) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        running = await call(client, "chat", {"prompt": "Describe it", "wait_seconds": 0})
        assert running["status"] == "running"
        with anyio.fail_after(10):
            while not upstream.responses_bodies():  # the request is out: the upstream is generating
                await anyio.sleep(0.05)
        started = time.monotonic()
        cancelled = await call(client, "chat", {"prompt": "-", "turn": running["turn"], "cancel": True})
        assert time.monotonic() - started < 5
        assert cancelled["status"] == "failed" and "Cancelled" in cancelled["error"]
        with anyio.fail_after(5):
            while upstream.disconnects < 1:  # the stream was hung up on: generating stopped
                await anyio.sleep(0.05)
        answer = await call(client, "chat", {"prompt": "Describe it"})
        assert answer["status"] == "completed" and len(answer["images"]) == 1  # the image waited for it
        again = await call(client, "chat", {"prompt": "-", "turn": running["turn"], "cancel": True})
        assert again["status"] == "failed" and "nothing to cancel" in " ".join(again["notes"])
        message = await fails(client, "chat", {"prompt": "-", "cancel": True})
        assert "turn=<n>" in message


async def test_cancelling_a_background_turn_cancels_it_upstream(settings: Settings, upstream: FakeUpstream) -> None:
    upstream.add_reply(Reply(text="never", delay=30.0))
    async with connect(settings, background="always") as client:
        running = await call(client, "chat", {"images": [], "prompt": "Think", "wait_seconds": 0.3})
        assert running["status"] == "running"
        cancelled = await call(client, "chat", {"prompt": "-", "turn": running["turn"], "cancel": True})
        assert cancelled["status"] == "failed"
    assert [r.path for r in upstream.requests if r.path.endswith("/cancel")]
