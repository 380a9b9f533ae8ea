"""The conversation MCP App through the real protocol in both eras: its page, its tools, and the text fallback."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from PIL import Image

from server.mcp_app import APP_URI, HTML_BUDGET
from server.settings import Settings
from tests.apps_client import connect_as_apps_host
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails, user_content

APP_TOOLS = {"app_images", "app_chat", "app_rerun", "app_set_options", "app_remove_attachment"}
MODEL_TOOLS = {
    "load_image",
    "attach_file",
    "set_options",
    "chat",
    "preview",
    "run_workflow",
    "show_conversation",
    "clear_pending",
    "run_batch",
}


def visibility(meta: dict[str, Any] | None) -> list[str]:
    ui = (meta or {}).get("ui") or {}
    return list(ui.get("visibility") or ["model", "app"])


async def view(client: Client, conversation_id: str = "default") -> tuple[dict[str, Any], str]:
    result = await client.call_tool("show_conversation", {"conversation_id": conversation_id})
    assert not result.is_error and result.structured_content is not None
    return result.structured_content, " ".join(getattr(block, "text", "") for block in result.content)


async def test_show_conversation_opens_the_app_and_the_app_tools_stay_away_from_the_model(
    settings: Settings, mode: str
) -> None:
    # App-only tools are listed to hosts that declared MCP Apps (the others cannot show the app that calls them).
    async with connect_as_apps_host(settings, mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    shown = tools["show_conversation"].meta or {}
    assert shown["ui"]["resourceUri"] == APP_URI and shown["ui/resourceUri"] == APP_URI
    # A host hands the model only the tools visible to it: what the model sees.
    assert {name for name, tool in tools.items() if "model" in visibility(tool.meta)} == MODEL_TOOLS
    for name in APP_TOOLS:
        assert visibility(tools[name].meta) == ["app"], name
        assert (tools[name].meta or {})["ui"]["resourceUri"] == APP_URI


async def test_the_page_is_one_self_contained_mcp_app_within_its_budget(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        contents = (await client.read_resource(APP_URI)).contents[0]
    assert listed[APP_URI].mime_type == "text/html;profile=mcp-app"
    assert contents.mime_type == "text/html;profile=mcp-app"
    html = getattr(contents, "text", "")
    assert len(html.encode()) <= HTML_BUDGET, f"the page is {len(html.encode())} bytes; the budget is {HTML_BUDGET}"
    # The CSP it asks for names no domain at all: the hosts' default, no network.
    csp = (contents.meta or {})["ui"]["csp"]
    assert csp and all(domains == [] for domains in csp.values())
    # Nothing that would reach the network, load code or parse text as HTML.
    assert not re.search(r"https?://|<script\s+src|<link\b|@import|\bfetch\(|XMLHttpRequest|WebSocket", html)
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(", html)
    assert "ui/initialize" in html and "tools/call" in html


async def test_hosts_without_apps_get_the_whole_conversation_as_text(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="A red card and a blue card."))
    upstream.add_reply(Reply(text="Red is warmer."))
    upstream.add_reply(Reply(text="Starting over: two cards."))
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"preset": "describe", "detail": "low"})
        await call(client, "load_image", {"source": [str(pictures / "red.png"), str(pictures / "blue.jpg")]})
        await call(client, "chat", {"prompt": "What is this?"})
        await call(client, "chat", {"prompt": "Which is warmer?"})
        await call(client, "chat", {"prompt": "Say it again", "starting_point": 1})
        await call(client, "load_image", {"source": str(pictures / "anim.gif")})
        structured, text = await view(client)
    for expected in (
        "What is this?",
        "A red card and a blue card.",
        "Which is warmer?",
        "Red is warmer.",
        "## Turn 2 (gpt-4.1-mini, completed, after turn 1",
        "## Turn 3 (gpt-4.1-mini, completed, continued from turn 1",
        "Sent with: red.png (64x48 PNG); blue.jpg (80x60 JPEG)",
        "Waiting for the next turn: anim.gif (32x32 ",
        "Model gpt-4.1-mini, detail low",
        "preset describe",
        "Instructions: ",
        " in / ",
        "Total cost: $",
    ):
        assert expected in text, expected
    assert [(t["turn"], t["parent"], t["branched"]) for t in structured["turns"]] == [
        (1, None, False),
        (2, 1, False),
        (3, 1, True),
    ]
    assert structured["turns"][0]["cost_usd"] > 0 and structured["running"] is False


async def test_rewind_and_rerun_from_the_app_go_through_chat(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        await call(client, "load_image", {"source": [str(pictures / "red.png"), str(pictures / "blue.jpg")]})
        first = await call(client, "chat", {"prompt": "Describe"})
        await call(client, "chat", {"prompt": "More"})
        rewound = await call(client, "app_chat", {"prompt": "Shorter please", "starting_point": 1, "wait_seconds": 10})
        rerun = await call(client, "app_rerun", {"turn": 1, "wait_seconds": 10})
        empty = await fails(client, "app_chat", {"prompt": "  "})
        unknown = await fails(client, "app_rerun", {"turn": 9})
        bad_start = await fails(client, "app_chat", {"prompt": "x", "starting_point": 7})
    assert rewound["turn"] == 3 and rewound["parent"] == 1
    assert upstream.responses_bodies()[2]["previous_response_id"] == first["response_id"]
    # Re-running turn 1 asks the same question with the same images, from the same (empty) start.
    assert rerun["turn"] == 4 and rerun["parent"] is None and rerun["images"] == first["images"]
    body = upstream.responses_bodies()[3]
    assert "previous_response_id" not in body or body["previous_response_id"] is None
    parts = user_content(body)
    assert [p["type"] for p in parts] == ["input_text", "input_image", "input_image"]
    assert parts[0]["text"] == "Describe"
    assert "prompt is empty" in empty
    assert "no turn 9" in unknown and "not a finished turn" in bad_start


async def test_options_and_attachments_change_from_the_app_with_the_same_checks(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        loaded = await call(client, "load_image", {"source": [str(pictures / "red.png"), str(pictures / "blue.jpg")]})
        red, blue = (image["image_id"] for image in loaded["images"])
        options = await call(client, "app_set_options", {"detail": "low", "instructions": "Be brief."})
        refused = await fails(client, "app_set_options", {"preset": "no-such-preset"})
        removed = await call(client, "app_remove_attachment", {"attachment_id": f"image://{red}"})
        not_pending = await fails(client, "app_remove_attachment", {"attachment_id": red})
        structured, _ = await view(client)
        await call(client, "chat", {"prompt": "Describe"})
    assert options["options"]["detail"] == "low" and options["options"]["instructions"] == "Be brief."
    assert "Unknown preset" in refused and "describe" in refused
    assert removed["kind"] == "image" and removed["pending_images"] == [blue]
    assert red in not_pending and blue in not_pending
    assert structured["pending_images"] == [blue] and structured["options"]["detail"] == "low"
    sent = [p for p in user_content(upstream.responses_bodies()[-1]) if p["type"] == "input_image"]
    assert len(sent) == 1 and sent[0]["detail"] == "low"


async def test_the_app_gets_small_previews_as_data(settings: Settings, pictures: Path, mode: str) -> None:
    async with connect(settings, mode) as client:
        loaded = await call(client, "load_image", {"source": str(pictures / "blue.jpg")})
        image_id = loaded["images"][0]["image_id"]
        thumbs = await call(client, "app_images", {"image_ids": [image_id, "img_missing"]})
        large = await call(client, "app_images", {"image_ids": [image_id], "size": "large"})
    assert thumbs["missing"] == ["img_missing"]
    for result, side, budget in ((thumbs, 192, 30_000), (large, 1024, 400_000)):
        (image,) = result["images"]
        data = base64.b64decode(image["data"])
        assert image["mime"] == "image/jpeg" and len(data) <= budget
        with Image.open(io.BytesIO(data)) as decoded:
            assert max(decoded.size) <= side and decoded.size == (80, 60)


async def test_a_running_turn_shows_its_progress_in_the_view(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text=" ".join(f"w{i}" for i in range(10)), chunks=10, chunk_delay=0.25))
    async with connect(settings, mode) as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})  # something to ask about
        started = await call(client, "app_chat", {"prompt": "Take your time", "wait_seconds": 0.2})
        seen: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            structured, text = await view(client)
            if not structured["running"]:
                break
            seen.append(structured["turns"][0]["progress"])
            assert "Status: " in text
            await anyio.sleep(0.3)
        final, _ = await view(client)
    assert started["status"] == "running"
    counts = [int(m.group(1)) for s in seen if (m := re.search(r"(\d+) tokens so far", s))]
    assert len(set(counts)) >= 2 and counts == sorted(counts), seen
    assert final["turns"][0]["status"] == "completed" and final["turns"][0]["progress"] is None
    assert json.dumps(final).count("w9") == 1
