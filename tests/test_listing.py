"""Half the reading (issue 10, point 6): tools/list under 11 KB in both eras, app-only tools only for MCP Apps hosts,
and a result's text a short summary rather than a second copy of its structured content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client

from server.settings import Settings
from tests.apps_client import connect_as_apps_host
from tests.conftest import MODES, connect
from tests.fake_upstream import FakeUpstream, Reply

BUDGET = 11_000  # bytes of tools/list as it goes over the wire
APP_ONLY = {"app_images", "app_chat", "app_rerun", "app_set_options", "app_remove_attachment"}


async def listed_bytes(client: Client) -> tuple[int, set[str]]:
    listed = await client.list_tools()
    return len(listed.model_dump_json(by_alias=True, exclude_none=True).encode()), {t.name for t in listed.tools}


async def test_tools_list_stays_under_11_kb_in_both_eras(settings: Settings) -> None:
    sizes: dict[str, int] = {}
    for mode in MODES:
        async with connect(settings, mode) as client:
            sizes[mode], names = await listed_bytes(client)
        assert not names & APP_ONLY, "a client without MCP Apps was listed the app-only tools"
        async with connect_as_apps_host(settings, mode) as client:
            sizes[f"{mode}, MCP Apps host"], names = await listed_bytes(client)
        assert names >= APP_ONLY
    print(f"\ntools/list bytes: {sizes}")
    plain = {mode: sizes[mode] for mode in MODES}
    assert all(size <= BUDGET for size in plain.values()), f"tools/list is {plain} bytes; the budget is {BUDGET}"


@pytest.mark.parametrize("mode", MODES)
async def test_a_results_text_is_a_summary_with_the_answer_ids_and_next_step(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="A red test card."))
    async with connect(settings, mode) as client:
        loaded = await client.call_tool("load_image", {"source": str(pictures / "red.png")})
        answered = await client.call_tool("chat", {"prompt": "What is it?"})
    assert loaded.structured_content is not None and answered.structured_content is not None
    loaded_text = getattr(loaded.content[0], "text", "")
    answer_text = getattr(answered.content[0], "text", "")
    image_id = loaded.structured_content["images"][0]["image_id"]
    assert loaded_text == (
        f"Loaded 1 image into 'default': {image_id} (64x48 PNG). 1 image now waits for the next chat turn: "
        "chat(prompt=...) sends it."
    )
    usage = answered.structured_content["usage"]
    sent = answered.structured_content["sent"][0]
    assert answer_text.splitlines() == [
        f"Turn 1 of 'default' (gpt-4.1-mini, completed; {usage['input_tokens']} tokens in, "
        f"{usage['output_tokens']} out):",
        "A red test card.",
        f"Image {image_id} sent at 64x48, detail auto, about {sent['tokens']} tokens.",
    ]
    for text in (loaded_text, answer_text):
        with pytest.raises(ValueError):
            json.loads(text)  # no second copy of the structured content
