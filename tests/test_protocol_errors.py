"""A request the server cannot serve as asked is a JSON-RPC invalid-params error (-32602) in both protocol
eras, with a message that says what is known or missing, and no traceback in the log: prompts/get as
resources/read."""

from __future__ import annotations

import logging

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from server.settings import Settings
from tests.conftest import connect

INVALID_PARAMS = -32602
TAKES = "it takes: source (required), question, conversation_id, model."


async def prompt_names(client: Client) -> str:
    return ", ".join(prompt.name for prompt in (await client.list_prompts()).prompts)


async def refusal(client: Client, name: str, arguments: dict[str, str]) -> MCPError:
    with pytest.raises(MCPError) as raised:
        await client.get_prompt(name, arguments)
    assert raised.value.code == INVALID_PARAMS
    return raised.value


async def test_an_unknown_prompt_is_invalid_params_naming_the_closest_and_the_known_ones(
    settings: Settings, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with connect(settings, mode) as client:
        known = await prompt_names(client)
        misspelt = await refusal(client, "descibe", {"source": "cat.jpg"})
        unheard = await refusal(client, "summarise", {"source": "cat.jpg"})
    assert misspelt.message == f"unknown prompt 'descibe'; did you mean 'describe'? the prompts are: {known}."
    assert unheard.message == f"unknown prompt 'summarise'; the prompts are: {known}."
    assert {"describe", "image-to-prompt", "extract-text", "compare"} <= set(known.split(", "))
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"


async def test_a_missing_or_blank_required_argument_is_invalid_params_saying_what_it_is(
    settings: Settings, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with connect(settings, mode) as client:
        missing = await refusal(client, "describe", {})
        blank = await refusal(client, "image-to-prompt", {"source": "  \n "})
    needs = "needs the argument 'source' (Image path or URL; several separated by newlines)"
    assert missing.message == f"prompt 'describe' {needs}; {TAKES}"
    assert blank.message == f"prompt 'image-to-prompt' {needs}; {TAKES}"
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"


async def test_an_argument_a_prompt_does_not_take_is_invalid_params_with_the_closest_one(
    settings: Settings, mode: str
) -> None:
    async with connect(settings, mode) as client:
        misspelt = await refusal(client, "describe", {"sources": "cat.jpg"})
        unheard = await refusal(client, "describe", {"source": "cat.jpg", "colour": "red"})
    assert misspelt.message == f"prompt 'describe' has no argument 'sources'; did you mean 'source'? {TAKES}"
    assert unheard.message == f"prompt 'describe' has no argument 'colour'; {TAKES}"


async def test_a_good_prompt_request_still_renders_and_resources_read_still_says_invalid_params(
    settings: Settings, mode: str
) -> None:
    async with connect(settings, mode) as client:
        rendered = await client.get_prompt("describe", {"source": "cat.jpg\ndog.png", "model": "gpt-4o"})
        with pytest.raises(MCPError) as unknown_resource:
            await client.read_resource("imagechat://nothing-here")
    text = getattr(rendered.messages[0].content, "text", "")
    assert "load_image(source=['cat.jpg', 'dog.png'], conversation_id='default')" in text
    assert "model='gpt-4o'" in text
    assert unknown_resource.value.code == INVALID_PARAMS
