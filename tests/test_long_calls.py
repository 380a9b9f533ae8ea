"""Answers slower than a client will wait: status "running", fetched later, across restarts; cancellation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call


async def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        await anyio.sleep(0.05)


async def test_a_slow_answer_returns_running_then_arrives(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="Slow but sure.", delay=1.0))
    async with connect(settings, mode) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        running = await call(client, "chat", {"prompt": "Think hard", "wait_seconds": 0.2})
        peek = await call(client, "preview", {})
        pending = json.loads((await call(client, "preview", {"target": "pending"}))["text"])
        done = await call(client, "chat", {"prompt": "", "turn": running["turn"], "wait_seconds": 10})
        shown = await call(client, "preview", {})
        follow_up = await call(client, "chat", {"prompt": "And?"})
    assert running["status"] == "running" and running["turn"] == 1
    assert "still running" in peek["text"] and pending["images"] == []
    assert done["status"] == "completed" and done["text"] == "Slow but sure." and done["turn"] == 1
    assert shown["text"] == "Slow but sure."
    assert follow_up["turn"] == 2 and upstream.responses_bodies()[-1]["previous_response_id"] == done["response_id"]


async def test_a_second_chat_waits_for_the_running_turn(settings: Settings, upstream: FakeUpstream, mode: str) -> None:
    upstream.add_reply(Reply(text="first", delay=1.0))
    upstream.add_reply(Reply(text="second"))
    async with connect(settings, mode) as client:
        running = await call(client, "chat", {"prompt": "one", "wait_seconds": 0.2, "images": []})
        second = await call(client, "chat", {"prompt": "two", "wait_seconds": 10, "images": []})
        turns = json.loads((await call(client, "preview", {"target": "conversation", "format": "json"}))["text"])
    assert running["status"] == "running"
    assert second["turn"] == 2 and second["parent"] == 1 and second["text"] == "second"
    assert [(t["turn"], t["status"], t["output"]) for t in turns] == [
        (1, "completed", "first"),
        (2, "completed", "second"),
    ]


async def test_a_background_response_survives_a_restart(settings: Settings, upstream: FakeUpstream, mode: str) -> None:
    upstream.add_reply(Reply(text="Worth the wait.", delay=1.5))
    async with connect(settings, mode, store="sqlite", background="always") as client:
        running = await call(client, "chat", {"prompt": "Think for a long time", "wait_seconds": 0.3, "images": []})
    assert running["status"] == "running" and running["response_id"]
    assert upstream.responses_bodies()[0]["background"] is True
    async with connect(settings, mode, store="sqlite", background="always") as client:
        await anyio.sleep(1.5)
        shown = await call(client, "preview", {})
        turn = await call(client, "chat", {"prompt": "", "turn": 1})
    assert shown["text"] == "Worth the wait."
    assert turn["status"] == "completed" and turn["usage"]["total_tokens"] > 0
    assert any(r.method == "GET" and r.path == f"/v1/responses/{running['response_id']}" for r in upstream.requests)


async def test_a_stream_cut_by_a_restart_is_reported_and_its_images_kept(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text=" ".join(["word"] * 20), chunks=20, chunk_delay=0.2))
    async with connect(settings, mode, store="sqlite") as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        running = await call(client, "chat", {"prompt": "Long answer please", "wait_seconds": 0.5})
    async with connect(settings, mode, store="sqlite") as client:
        shown = await call(client, "preview", {"target": "turn:1"})
        pending = json.loads((await call(client, "preview", {"target": "pending"}))["text"])
        again = await call(client, "chat", {"prompt": "Once more"})
    assert running["status"] == "running"
    assert "failed" in shown["text"] and "Ask again" in shown["text"]
    assert len(pending["images"]) == 1
    assert again["turn"] == 2 and again["parent"] is None and len(again["images"]) == 1


async def test_cancelling_the_call_cancels_the_upstream_and_records_nothing(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text=" ".join(["word"] * 30), chunks=30, chunk_delay=0.1))
    async with connect(settings, mode) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        with anyio.move_on_after(0.8):
            await client.call_tool("chat", {"prompt": "Talk for a while", "images": []})
        await wait_until(lambda: upstream.disconnects > 0)
        pending = json.loads((await call(client, "preview", {"target": "pending"}))["text"])
        listing = await client.call_tool("preview", {"target": "conversation", "format": "json"})
    assert upstream.disconnects == 1
    assert len(pending["images"]) == 1
    assert listing.is_error or json.loads(listing.structured_content["text"]) == []


async def test_heartbeat_progress_while_the_model_thinks(
    settings: Settings, upstream: FakeUpstream, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tools.chat.HEARTBEAT", 0.2)
    monkeypatch.setattr("tools.chat.PROGRESS_INTERVAL", 0.1)
    upstream.add_reply(Reply(text="Done thinking.", delay=1.2))
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with connect(settings, mode) as client:
        result = await client.call_tool("chat", {"prompt": "Ponder", "images": []}, progress_callback=on_progress)
    assert not result.is_error
    thinking = [m for _, m in seen if m and m.startswith("waiting for the model")]
    assert len(thinking) >= 3
    assert [p for p, _ in seen] == sorted(p for p, _ in seen) and len({p for p, _ in seen}) == len(seen)


async def test_cancelling_a_background_call_cancels_the_response_upstream(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="never", delay=5.0))
    async with connect(settings, mode, background="always") as client:
        with anyio.move_on_after(0.5):
            await client.call_tool("chat", {"prompt": "Think", "images": []})
        await wait_until(lambda: any(r.path.endswith("/cancel") for r in upstream.requests))
        listing = await client.call_tool("preview", {"target": "conversation", "format": "json"})
    created = upstream.responses_bodies()[0]
    cancels = [r.path for r in upstream.requests if r.path.endswith("/cancel")]
    assert created["background"] is True and len(cancels) == 1
    assert listing.is_error  # no turn was recorded, so there is no conversation to show
