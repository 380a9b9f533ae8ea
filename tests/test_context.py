"""What the upstream is asked to keep and what it must already have: store, chaining or replay, and a background
answer's id kept the moment it arrives (issue 11, points 1, 2 and 3)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

from server.settings import Settings
from tests import images
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, decoded_image, fails, user_content


@pytest.fixture
def gateway() -> Iterator[FakeUpstream]:
    """A gateway that accepts previous_response_id and drops it (LiteLLM's Responses-to-Chat routes)."""
    with FakeUpstream(keeps_responses=False) as fake:
        yield fake


def texts(body: dict[str, Any]) -> list[str]:
    """Every text the model received in a Responses request, in order (assistant answers included)."""
    found: list[str] = []
    for item in body["input"]:
        content = item["content"]
        if isinstance(content, str):
            found.append(content)
        else:
            found += [part["text"] for part in content if part["type"] == "input_text"]
    return found


def image_count(body: dict[str, Any]) -> int:
    return sum(
        1
        for item in body["input"]
        if isinstance(item["content"], list)
        for part in item["content"]
        if part["type"] == "input_image"
    )


async def three_turns(settings: Settings, pictures: Path, mode: str) -> list[dict[str, Any]]:
    async with connect(settings, mode) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        results = [await call(client, "chat", {"prompt": "What colour is the card?"})]
        results.append(await call(client, "chat", {"prompt": "And its shape?"}))
        results.append(await call(client, "chat", {"prompt": "Sum it up."}))
    return results


async def test_a_gateway_that_drops_previous_response_id_gets_the_history_replayed(
    settings: Settings, pictures: Path, gateway: FakeUpstream, mode: str
) -> None:
    for text in ("It is red.", "A rectangle.", "A red rectangle."):
        gateway.add_reply(Reply(text=text))
    results = await three_turns(replace(settings, base_url=gateway.base_url), pictures, mode)
    first, second, third = gateway.responses_bodies()
    # What the model received on turns 2 and 3: the earlier image, prompts and answers, not the new prompt alone.
    assert "previous_response_id" not in second and "previous_response_id" not in third
    assert texts(second) == ["What colour is the card?", "It is red.", "And its shape?"]
    assert texts(third) == [
        "What colour is the card?",
        "It is red.",
        "And its shape?",
        "A rectangle.",
        "Sum it up.",
    ]
    assert image_count(second) == image_count(third) == 1 == image_count(first)
    assert user_content(third, 0)[1]["type"] == "input_image"
    assert results[2]["text"] == "A red rectangle." and results[2]["parent"] == 2
    assert any("sent again" in note and "IMAGECHAT_CONTEXT=chain" in note for note in results[1]["notes"])
    # It was asked whether it still had the earlier response, and could not hand it back.
    asked = [r.path for r in gateway.requests if r.method == "GET" and r.path.startswith("/v1/responses/")]
    assert asked == [f"/v1/responses/{results[0]['response_id']}", f"/v1/responses/{results[1]['response_id']}"]


async def test_chaining_is_kept_where_the_setting_trusts_the_gateway(
    settings: Settings, pictures: Path, gateway: FakeUpstream, mode: str
) -> None:
    results = await three_turns(replace(settings, base_url=gateway.base_url, context="chain"), pictures, mode)
    bodies = gateway.responses_bodies()
    assert bodies[1]["previous_response_id"] == results[0]["response_id"]
    assert texts(bodies[1]) == ["And its shape?"] and image_count(bodies[1]) == 0
    assert not any(r.method == "GET" and r.path.startswith("/v1/responses/") for r in gateway.requests)


async def test_replay_setting_sends_the_history_even_where_responses_are_kept(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    results = await three_turns(replace(settings, context="replay"), pictures, mode)
    bodies = upstream.responses_bodies()
    assert all("previous_response_id" not in body for body in bodies)
    assert len(texts(bodies[2])) == 5 and image_count(bodies[2]) == 1
    assert "IMAGECHAT_CONTEXT=replay" in " ".join(results[2]["notes"])


async def test_an_upstream_that_hands_responses_back_stays_chained(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    results = await three_turns(settings, pictures, mode)
    bodies = upstream.responses_bodies()
    assert bodies[2]["previous_response_id"] == results[1]["response_id"]
    assert texts(bodies[2]) == ["Sum it up."] and not results[2]["notes"]


async def test_a_stand_alone_turn_does_not_ask_the_upstream_to_keep_it(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        kept = await call(client, "chat", {"prompt": "Describe it"})
        alone = await call(client, "chat", {"images": [], "prompt": "Just this once", "persist_context": False})
        after = await call(client, "chat", {"prompt": "Go on"})
    first, second, third = upstream.responses_bodies()
    assert first["store"] is True and second["store"] is False
    assert kept["response_id"] in upstream.stored_ids() and alone["response_id"] not in upstream.stored_ids()
    # The turn after it continues from it by replaying it, since nothing of it was kept upstream.
    assert after["parent"] == alone["turn"] and "previous_response_id" not in third
    assert texts(third) == ["Just this once", alone["text"], "Go on"]


async def test_chat_completions_notes_reach_the_caller(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.models.append("gpt-5.4")
    async with connect(settings, mode, api="chat") as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        await call(client, "set_options", {"model": "gpt-5.4", "detail": "original"})
        result = await call(client, "chat", {"prompt": "Read the small print"})
    [body] = upstream.chat_bodies()
    image = body["messages"][-1]["content"][1]
    assert image["image_url"]["detail"] == "high"
    assert any("not part of Chat Completions" in note for note in result["notes"])


async def test_set_options_says_at_once_that_chat_completions_will_refuse_a_responses_only_model(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode, api="chat") as client:
        chosen = await call(client, "set_options", {"model": "o1-pro"})
        refused = await fails(client, "chat", {"images": [], "prompt": "Think hard"})
    [note] = chosen["notes"]
    assert note.startswith("chat will refuse this model: o1-pro is served only through OpenAI's Responses API")
    assert "o1-pro is served only through OpenAI's Responses API" in refused
    assert upstream.requests == []


async def test_a_background_answer_announced_before_its_id_arrived_survives_a_restart(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    # The order that lost it: the caller's wait runs out and the turn is announced "running"; only then does
    # response.created name the response; then the process stops while the model still works.
    upstream.models.append("o1-pro")
    upstream.add_reply(Reply(text="Proven at last.", created_delay=0.6, delay=2.0))
    sqlite = {"store": "sqlite", "background": "always"}
    async with connect(settings, mode, **sqlite) as client:
        await call(client, "set_options", {"model": "o1-pro"})
        running = await call(client, "chat", {"images": [], "prompt": "Prove it", "wait_seconds": 0.1})
        assert running["status"] == "running" and running["response_id"] is None
        deadline = time.monotonic() + 5
        recorded: dict[str, Any] = {}
        while time.monotonic() < deadline and not recorded.get("response_id"):
            await anyio.sleep(0.05)
            shown = await call(client, "preview", {"target": "conversation", "format": "json"})
            recorded = json.loads(shown["text"])[0]
    [created] = upstream.responses_bodies()
    assert created["background"] is True and recorded["status"] == "running"
    assert recorded["response_id"] == upstream.stored_ids()[0]
    async with connect(settings, mode, **sqlite) as client:
        turn = await call(client, "chat", {"prompt": "", "turn": 1, "wait_seconds": 10})
        if turn["status"] == "running":  # the model is still at it: fetch again once it is done
            await anyio.sleep(2.2)
            turn = await call(client, "chat", {"prompt": "", "turn": 1})
    assert turn["status"] == "completed" and turn["text"] == "Proven at last."
    retrieved = f"/v1/responses/{recorded['response_id']}"
    assert any(r.method == "GET" and r.path == retrieved for r in upstream.requests)


async def test_a_local_model_gets_a_large_photo_at_2048_px_and_is_told_so(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.models.append("my-local-vlm")
    (pictures / "photo.jpg").write_bytes(images.jpeg(4000, 3000))
    async with connect(settings, mode, api="chat") as client:
        await call(client, "set_options", {"model": "my-local-vlm"})
        await call(client, "load_image", {"source": str(pictures / "photo.jpg")})
        first = await call(client, "chat", {"prompt": "What is it?"})
        await call(client, "load_image", {"source": str(pictures / "photo.jpg")})
        second = await call(client, "chat", {"prompt": "And now?"})
        await call(client, "set_options", {"detail": "original"})
        await call(client, "load_image", {"source": str(pictures / "photo.jpg")})
        await call(client, "chat", {"prompt": "In full?"})
    sizes = []
    for body in upstream.chat_bodies():
        part = body["messages"][-1]["content"][1]["image_url"]
        sizes.append(Image.open(io.BytesIO(decoded_image({"image_url": part["url"]})[1])).size)
    assert sizes == [(2048, 1536), (2048, 1536), (4000, 3000)]
    assert any("at most 2048 px a side" in note and "detail='original'" in note for note in first["notes"])
    assert not second["notes"]


async def test_a_dry_run_on_a_gateway_says_the_chain_is_checked_first(
    settings: Settings, pictures: Path, gateway: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode, base_url=gateway.base_url) as client:
        await call(client, "chat", {"images": [], "prompt": "First"})
        dry = await call(client, "chat", {"prompt": "Second", "dry_run": True})
    assert dry["request"]["body"]["previous_response_id"]
    assert any("hands the previous response back by id" in note for note in dry["request"]["notes"])
