"""An argument a tool does not take, or a value it cannot take, is refused in the server's own words, in both
protocol eras: the refusal names the argument, the closest real one (or the tool it belongs to), what was
given and what is accepted; nothing is sent upstream and the conversation is exactly as it was."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pytest
from mcp import Client
from pydantic import Field

from server.boundary import ImageChatServer
from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails


async def conversation(client: Client, conversation_id: str = "default") -> Any:
    result = await client.read_resource(f"conversation://{conversation_id}")
    return json.loads(getattr(result.contents[0], "text", ""))


async def takes(client: Client, tool: str) -> str:
    """The argument list a refusal ends with: the tool's advertised arguments, in order."""
    listed = {entry.name: entry for entry in (await client.list_tools()).tools}
    return f"{tool} takes: {', '.join(listed[tool].input_schema['properties'])}."


@asynccontextmanager
async def primed(settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str) -> AsyncIterator[Client]:
    """A client on a conversation with one turn, options set and an image waiting."""
    async with connect(settings, mode) as connected:
        upstream.add_reply(Reply(text="A red square."))
        await call(connected, "set_options", {"model": "gpt-4o", "detail": "low"})
        await call(connected, "load_image", {"source": str(pictures / "blue.jpg")})
        await call(connected, "chat", {"prompt": "What is it?"})
        await call(connected, "load_image", {"source": str(pictures / "red.png")})
        yield connected


async def refused(client: Client, upstream: FakeUpstream, tool: str, arguments: dict[str, Any]) -> str:
    """The refusal of one call, after checking that it sent nothing upstream and changed nothing."""
    before, sent = await conversation(client), len(upstream.requests)
    message = await fails(client, tool, arguments)
    assert len(upstream.requests) == sent
    assert await conversation(client) == before
    assert "\n" not in message and "pydantic" not in message
    return message


UNKNOWN = [
    ("set_options", {"detial": "low"}, "unknown argument 'detial'; did you mean 'detail'?"),
    ("load_image", {"source": "red.png", "frame": "all"}, "unknown argument 'frame'; did you mean 'frames'?"),
    ("chat", {"prompt": "Again", "detail": "high"}, "unknown argument 'detail'; detail is set with set_options."),
    (
        "chat",
        {"prompt": "As JSON", "response_format": "json"},
        "unknown argument 'response_format'; response_format is set with set_options.",
    ),
    (
        "chat",
        {"prompt": "Describe", "preset": "describe"},
        "unknown argument 'preset'; preset is set with set_options.",
    ),
    (
        "chat",
        {"prompt": "Look", "source": "red.png"},
        "unknown argument 'source'; source is set with load_image or attach_file.",
    ),
    (
        "chat",
        {"prompt": "Look", "detial": "low"},
        "unknown argument 'detial'; did you mean 'detail'? detail is set with set_options.",
    ),
    ("preview", {"targets": "last"}, "unknown argument 'targets'; did you mean 'target'?"),
    ("set_options", {"colour": "red"}, "unknown argument 'colour';"),
    (
        "chat",
        {"prompt": "Look", "detail": "low", "preset": "describe", "colour": "red"},
        "unknown arguments 'detail', 'preset', 'colour'; detail is set with set_options; "
        "preset is set with set_options.",
    ),
]


@pytest.mark.parametrize(("tool", "arguments", "guidance"), UNKNOWN)
async def test_an_unknown_argument_is_refused_with_the_closest_real_one(
    settings: Settings,
    pictures: Path,
    upstream: FakeUpstream,
    mode: str,
    tool: str,
    arguments: dict[str, Any],
    guidance: str,
) -> None:
    async with primed(settings, pictures, upstream, mode) as client:
        message = await refused(client, upstream, tool, arguments)
        assert message == f"Error executing tool {tool}: {guidance} {await takes(client, tool)}"


async def test_every_tool_refuses_an_argument_it_does_not_have(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with primed(settings, pictures, upstream, mode) as client:
        for tool in (await client.list_tools()).tools:
            message = await refused(client, upstream, tool.name, {"zz_unheard_of": 1})
            assert message == f"Error executing tool {tool.name}: unknown argument 'zz_unheard_of'; " + await takes(
                client, tool.name
            )


async def test_a_refused_chat_argument_leaves_the_image_waiting_for_the_next_turn(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with primed(settings, pictures, upstream, mode) as client:
        await refused(client, upstream, "chat", {"prompt": "Again", "detail": "high"})
        upstream.add_reply(Reply(text="Still red."))
        answer = await call(client, "chat", {"prompt": "Again"})
        assert answer["text"] == "Still red."
        sent = upstream.responses_bodies()[-1]
        assert [part["type"] for part in sent["input"][-1]["content"]] == ["input_text", "input_image"]


WRONG = [
    (
        "set_options",
        {"detail": "lo"},
        "detail must be one of 'auto', 'low', 'high', 'original'; got 'lo'.",
    ),
    (
        "set_options",
        {"max_output_tokens": 5},
        "max_output_tokens must be a whole number from 16 to 128000; got 5.",
    ),
    ("set_options", {"temperature": 3.5}, "temperature must be a number from 0 to 2; got 3.5."),
    ("set_options", {"top_p": "most"}, "top_p must be a number from 0 to 1; got 'most'."),
    ("set_options", {"reset": "yes please"}, "reset must be true or false; got 'yes please'."),
    ("load_image", {"source": 42}, "source must be a string or a list of strings; got 42."),
    ("load_image", {"source": "red.png", "frames": "some"}, "frames must be one of 'first', 'all'; got 'some'."),
    ("load_image", {}, "load_image needs source (a string or a list of strings), and it was not given."),
    (
        "preview",
        {"target": ["last", "options"]},
        'target must be a string; got ["last", "options"] (a list of 2 items).',
    ),
    (
        "preview",
        {"conversation_id": "c" * 300},
        "conversation_id must be a string of at most 128 characters; got a string of 300 characters.",
    ),
    ("chat", {"prompt": "Again", "images": "red.png"}, "images must be a list of strings; got 'red.png'."),
    ("chat", {"prompt": "Again", "wait_seconds": 5000}, "wait_seconds must be a number from 0 to 3600; got 5000."),
    (
        "set_options",
        {"detail": "lo", "temperature": -1},
        "detail must be one of 'auto', 'low', 'high', 'original'; got 'lo'. "
        "temperature must be a number from 0 to 2; got -1.",
    ),
]


@pytest.mark.parametrize(("tool", "arguments", "sentence"), WRONG)
async def test_a_wrong_value_is_one_sentence_naming_the_argument_the_value_and_what_is_accepted(
    settings: Settings,
    pictures: Path,
    upstream: FakeUpstream,
    mode: str,
    tool: str,
    arguments: dict[str, Any],
    sentence: str,
) -> None:
    async with primed(settings, pictures, upstream, mode) as client:
        message = await refused(client, upstream, tool, arguments)
        assert message == f"Error executing tool {tool}: {sentence}"


async def test_every_listed_choice_is_named_when_a_value_is_not_one_of_them(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with primed(settings, pictures, upstream, mode) as client:
        for tool in (await client.list_tools()).tools:
            for name, prop in tool.input_schema["properties"].items():
                choices = next((option["enum"] for option in [prop, *prop.get("anyOf", [])] if "enum" in option), None)
                if choices is None:
                    continue
                message = await refused(client, upstream, tool.name, {name: "zz-none-of-these"})
                listed = ", ".join(repr(choice) for choice in choices)
                assert f"{name} must be one of {listed}; got 'zz-none-of-these'." in message, message


class Shade(StrEnum):
    light = "light"
    dark = "dark"


Count = Annotated[int, Field(ge=1, le=9, description="How many.")]


def probe_server() -> ImageChatServer:
    """A server of the same class with tools declared in other ways (an enum behind a $ref, an Annotated alias,
    no arguments at all): the checks read the advertised schema, not our tools' signatures."""
    server = ImageChatServer("probe")

    @server.tool()
    def paint(shade: Shade, count: Count = 1) -> str:
        return f"{count} {shade.value}"

    @server.tool()
    def ping() -> str:
        return "pong"

    return server


async def test_the_checks_follow_whatever_schema_a_tool_advertises(mode: str) -> None:
    async with Client(probe_server(), mode=mode) as client:
        shade = await fails(client, "paint", {"shade": "grey"})
        count = await fails(client, "paint", {"shade": "dark", "count": 10})
        unknown = await fails(client, "paint", {"shade": "dark", "cuont": 2})
        nothing = await fails(client, "ping", {"shade": "dark"})
        painted = await client.call_tool("paint", {"shade": "dark", "count": 2})
    assert shade == "Error executing tool paint: shade must be one of 'light', 'dark'; got 'grey'."
    assert count == "Error executing tool paint: count must be a whole number from 1 to 9; got 10."
    assert unknown == (
        "Error executing tool paint: unknown argument 'cuont'; did you mean 'count'? paint takes: shade, count."
    )
    assert nothing == (
        "Error executing tool ping: unknown argument 'shade'; shade is set with paint. ping takes no arguments."
    )
    assert not painted.is_error and getattr(painted.content[0], "text", "") == "2 dark"
