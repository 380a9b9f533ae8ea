"""preview, resources and prompts, as a client sees them."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from mcp_types import BlobResourceContents, ImageContent, TextResourceContents
from PIL import Image

from server.settings import Settings
from tests import images
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails


async def test_preview_targets(settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str) -> None:
    upstream.add_reply(Reply(text="first answer"))
    upstream.add_reply(Reply(text="second answer"))
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"instructions": "Be brief."})
        await call(client, "chat", {"prompt": "one", "images": []})
        await call(client, "chat", {"prompt": "two", "images": []})
        last = await call(client, "preview", {})
        turn1 = await call(client, "preview", {"target": "turn:1"})
        turn1_json = await call(client, "preview", {"target": "turn:1", "format": "json"})
        options = await call(client, "preview", {"target": "options"})
        markdown = await call(client, "preview", {"target": "conversation", "format": "markdown"})
        missing = await fails(client, "preview", {"target": "turn:9"})
    assert last["text"] == "second answer"
    assert turn1["text"] == "first answer"
    assert json.loads(turn1_json["text"])["prompt"] == "one"
    assert json.loads(options["text"])["instructions"] == "Be brief."
    assert options["text"].startswith("{\n  ")  # indented JSON, like Preview Any
    assert "## Turn 2" in markdown["text"] and "second answer" in markdown["text"]
    assert "1 to 2" in missing


async def test_image_preview_is_a_thumbnail_claude_desktop_accepts(
    settings: Settings, pictures: Path, mode: str
) -> None:
    big = Image.effect_noise((3000, 2000), 80).convert("RGB")
    out = io.BytesIO()
    big.save(out, "PNG")
    (pictures / "noise.png").write_bytes(out.getvalue())
    async with connect(settings, mode) as client:
        loaded = await call(client, "load_image", {"source": str(pictures / "noise.png")})
        image_id = loaded["images"][0]["image_id"]
        result = await client.call_tool("preview", {"target": f"image:{image_id}"})
    assert not result.is_error
    blocks = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(blocks) == 1
    data = base64.b64decode(blocks[0].data)
    assert len(blocks[0].data) < 1024 * 1024 and len(data) == result.structured_content["image_bytes"]
    with Image.open(io.BytesIO(data)) as thumb:
        assert max(thumb.size) <= 1024 and thumb.size[0] > thumb.size[1]


async def test_image_resource_returns_the_bytes_with_their_mime_type(
    settings: Settings, pictures: Path, mode: str
) -> None:
    async with connect(settings, mode) as client:
        loaded = await call(client, "load_image", {"source": [str(pictures / "red.png"), str(pictures / "blue.jpg")]})
        png_uri, jpg_uri = (image["resource_uri"] for image in loaded["images"])
        png = (await client.read_resource(png_uri)).contents[0]
        jpg = (await client.read_resource(jpg_uri)).contents[0]
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert isinstance(png, BlobResourceContents) and png.mime_type == "image/png"
    assert base64.b64decode(png.blob) == (pictures / "red.png").read_bytes()
    assert isinstance(jpg, BlobResourceContents) and jpg.mime_type == "image/jpeg"
    assert {"image://{image_id}", "conversation://{conversation_id}"} <= templates


async def test_conversation_resource_is_the_transcript(settings: Settings, upstream: FakeUpstream, mode: str) -> None:
    upstream.add_reply(Reply(text="hello back"))
    async with connect(settings, mode) as client:
        await call(client, "chat", {"prompt": "hello", "conversation_id": "greet", "images": []})
        content = (await client.read_resource("conversation://greet")).contents[0]
        ids = (await client.read_resource("conversations://all")).contents[0]
    assert isinstance(content, TextResourceContents) and content.mime_type == "application/json"
    doc = json.loads(content.text)
    assert doc["turns"][0]["prompt"] == "hello" and doc["turns"][0]["output"] == "hello back"
    assert isinstance(ids, TextResourceContents) and json.loads(ids.text) == ["greet"]


async def test_prompts_guide_the_agent_through_the_tools(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        names = {prompt.name for prompt in (await client.list_prompts()).prompts}
        got = await client.get_prompt("image-to-prompt", {"source": "/photos/cat.jpg"})
    assert {"image-to-prompt", "describe", "extract-text", "compare"} <= names
    text = got.messages[0].content.text  # type: ignore[union-attr]
    assert "load_image(source=['/photos/cat.jpg']" in text and "preset='image-to-prompt'" in text


async def test_dry_run_shows_the_exact_request_abbreviated(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    (pictures / "wide.png").write_bytes(images.png(2048, 1024))
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"model": "gpt-4o", "detail": "high"})
        await call(client, "load_image", {"source": str(pictures / "wide.png")})
        dry = await call(client, "chat", {"prompt": "What is it?", "dry_run": True})
        pending = json.loads((await call(client, "preview", {"target": "pending"}))["text"])
    assert upstream.requests == []
    body = dry["request"]["body"]
    image = body["input"][0]["content"][1]
    assert image["type"] == "input_image" and image["detail"] == "high"
    assert "sha256" in image["image_url"] and len(image["image_url"]) < 120
    estimate = dry["estimated_input_tokens"]
    # 2048x1024 at high detail on gpt-4o: 1536x768, 6 tiles: 85 + 6 * 170.
    assert estimate["images"][0]["tokens"] == 1105
    assert (estimate["images"][0]["width"], estimate["images"][0]["height"]) == (1536, 768)
    assert estimate["total"] == estimate["text"] + 1105
    assert len(pending["images"]) == 1
