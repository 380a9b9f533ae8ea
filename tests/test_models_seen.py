"""Models are checked, what the model sees is said, and prices are there when a cost is asked (issue 10, points 4
and 5), through the protocol in both eras."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp import Client

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails
from tests.test_run_workflow import FIXTURE


def error(tool: str, message: str) -> str:
    return f"Error executing tool {tool}: {message}"


def posts(upstream: FakeUpstream) -> list[Any]:
    """What would have been billed: every request but the model list."""
    return [r for r in upstream.requests if r.method != "GET"]


async def options(client: Client) -> dict[str, Any]:
    result = await call(client, "preview", {"target": "options"})
    found: dict[str, Any] = json.loads(result["text"])
    return found


# -- point 4: models are checked ---------------------------------------------------------------------------------


async def test_a_misspelt_model_is_refused_with_the_closest_the_upstream_serves(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        before = await options(client)
        refused = await fails(client, "set_options", {"model": "gpt-4.1-mnii"})
        rehearsed = await fails(client, "chat", {"prompt": "hi", "images": [], "model": "gpt4o", "dry_run": True})
        after = await options(client)
    assert refused == error(
        "set_options",
        "The upstream does not serve model 'gpt-4.1-mnii'. Did you mean 'gpt-4.1-mini'? It serves: gpt-4.1-mini, "
        "gpt-4o, gpt-5, o3. Nothing was changed.",
    )
    assert rehearsed == error(
        "chat",
        "The upstream does not serve model 'gpt4o'. Did you mean 'gpt-4o'? It serves: gpt-4.1-mini, gpt-4o, "
        "gpt-5, o3. Choose one with set_options(model=...) or chat(model=...). Nothing was sent.",
    )
    assert before == after and posts(upstream) == []


async def test_an_unknown_model_passes_with_a_note_where_the_upstream_lists_none(settings: Settings, mode: str) -> None:
    # Nothing listens on port 9: the upstream cannot be asked for its models.
    async with connect(settings, mode, base_url="http://127.0.0.1:9/v1") as client:
        result = await call(client, "set_options", {"model": "llava:13b"})
    assert result["options"]["model"] == "llava:13b"
    assert result["model_note"] == (
        "'llava:13b' is not a model this server knows, and the upstream does not list its models, so it is used "
        "as named: images are sized for the largest known model and no cost can be estimated."
    )


async def test_images_are_refused_for_a_model_that_takes_none(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        chosen = await call(client, "set_options", {"model": "o3-mini"})
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        message = await fails(client, "chat", {"prompt": "What is it?"})
        pending = json.loads((await call(client, "preview", {"target": "pending"}))["text"])
    assert chosen["images"] == "o3-mini takes no images: chat refuses a turn with images while it is the model."
    assert message == error(
        "chat",
        "o3-mini takes no images (it reads text only), and this turn has 1. Choose a vision model (e.g. "
        "gpt-4.1-mini, o3) with set_options(model=...) or chat(model=...), or send a text-only turn with images=[]. "
        "Nothing was sent.",
    )
    assert len(pending["images"]) == 1 and posts(upstream) == []


# -- point 4: what the model will see is said ----------------------------------------------------------------------


async def test_set_options_says_what_detail_means_on_the_model(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        patch = await call(client, "set_options", {"model": "gpt-4.1-mini", "detail": "low"})
        tile = await call(client, "set_options", {"model": "gpt-4o"})
    described = tools["set_options"].input_schema["properties"]["detail"]["description"]
    assert "512 px on gpt-4o, gpt-4.1, gpt-5, o3, larger on others" in described and "(cheap, 512 px)" not in described
    assert patch["images"] == (
        "On gpt-4.1-mini, detail 'low' sends a 4000x3000 photo at 2048x1536 px, about 4977 tokens. This model has no "
        "512 px low detail (the tile models, e.g. gpt-4o, gpt-4.1, gpt-5, o3, do)."
    )
    assert tile["images"] == "On gpt-4o, detail 'low' sends a 4000x3000 photo at 512x384 px, about 85 tokens."


async def test_the_result_and_the_turn_say_how_each_image_was_sent(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"model": "gpt-4o", "detail": "low"})
        loaded = await call(client, "load_image", {"source": [str(pictures / "red.png"), str(pictures / "blue.jpg")]})
        result = await call(client, "chat", {"prompt": "Compare them."})
        recorded = json.loads((await call(client, "preview", {"target": "turn:1", "format": "json"}))["text"])
    ids = [image["image_id"] for image in loaded["images"]]
    expected = [
        {"image_id": ids[0], "width": 64, "height": 48, "detail": "low", "tokens": 85},
        {"image_id": ids[1], "width": 80, "height": 60, "detail": "low", "tokens": 85},
    ]
    assert result["sent"] == expected and recorded["sent"] == expected


async def test_frames_all_says_how_many_frames_of_how_many_and_which(
    settings: Settings, pictures: Path, mode: str
) -> None:
    gif = str(pictures / "anim.gif")
    async with connect(settings, mode, max_frames=3) as client:
        first = await call(client, "load_image", {"source": gif, "conversation_id": "one"})
        every = await call(client, "load_image", {"source": gif, "frames": "all", "conversation_id": "all"})
    assert first["notes"] == [f"{gif!r} has 5 frames: only the first was taken (frames='all' takes a batch)."]
    assert every["notes"] == [f"{gif!r}: frames='all' took 3 of 5 frames (frames 1, 3, 5)."]
    assert len(every["images"]) == 3


async def test_json_mode_always_holds(settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str) -> None:
    upstream.add_reply(Reply(text='{"colour": "red"}'))
    upstream.add_reply(Reply(text='{"colour": "red"}'))
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"response_format": "json", "instructions": "Be brief."})
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        added = await call(client, "chat", {"prompt": "What colour is it?"})
        said = await call(client, "chat", {"prompt": "Give the colour as json."})
    first, second = upstream.responses_bodies()
    assert first["instructions"] == "Be brief.\n\nAnswer with a JSON object."
    assert first["text"]["format"]["type"] == "json_object"
    assert added["notes"] == [
        "response_format is 'json' and neither the instructions nor the prompt mention JSON, which OpenAI "
        "requires: the instruction 'Answer with a JSON object.' was added to this turn."
    ]
    assert second["instructions"] == "Be brief." and said["notes"] == []


# -- point 5: prices are there when a cost is asked --------------------------------------------------------------


async def test_the_models_resource_gives_prices_images_details_and_options(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        content = (await client.read_resource("imagechat://models")).contents[0]
    listed = json.loads(getattr(content, "text", "{}"))
    assert listed["served"] == ["gpt-4.1-mini", "gpt-4o", "gpt-5", "o3"]
    assert listed["known"]["gpt-4o"] == {
        "usd_per_million_tokens": {"input": 2.5, "output": 10.0},
        "images": True,
        "details": ["auto", "low", "high"],
        "reasoning_efforts": [],
        "temperature_top_p": True,
        "apis": ["responses", "chat"],
    }
    assert listed["known"]["o3-mini"]["images"] is False and listed["known"]["o3-mini"]["details"] == []
    assert listed["known"]["o1-pro"]["usd_per_million_tokens"] == {"input": 150.0, "output": 600.0}


async def test_a_workflow_dry_run_estimates_every_chat_node_and_sends_nothing(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.models.append("o1-pro")  # the template's model
    inputs = pictures / "input"
    inputs.mkdir()
    (inputs / "example.png").write_bytes((pictures / "red.png").read_bytes())
    (inputs / "input.txt").write_text("Shot on a rainy afternoon.\n", encoding="utf-8")
    workflow = json.loads(FIXTURE.read_text(encoding="utf-8"))
    async with connect(settings, mode) as client:
        result = await client.call_tool(
            "run_workflow", {"workflow": workflow, "input_dir": str(inputs), "dry_run": True}
        )
        stored = (await client.read_resource("conversations://all")).contents[0]
    assert not result.is_error and result.structured_content is not None
    estimate = result.structured_content["estimate"]
    chat = estimate["chats"]["3"]
    assert chat["model"] == "o1-pro" and chat["images"] == 1 and chat["input_tokens"] > 0
    assert chat["cost_usd"]["prices_per_million"] == [150.0, 600.0]
    assert estimate["total_usd"] == round(chat["cost_usd"]["input"] + chat["cost_usd"]["output_max"], 6)
    assert result.structured_content["chats"] == {} and result.structured_content["previews"] == {}
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert "OpenAIChatNode 3 (o1-pro): about" in text and "Whole workflow: at most $" in text
    assert posts(upstream) == [] and json.loads(getattr(stored, "text", "")) == []  # nothing sent, nothing stored
