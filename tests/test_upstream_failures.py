"""Failures say what the upstream said, how often it was retried, and what would get past them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails

# What LiteLLM answers when its Responses-to-Chat conversion fails before the stream starts.
LITELLM_500 = {"message": "Error processing stream start"}
LITELLM_BAD_MODEL = (
    "Invalid model name passed in model=gpt-99. Call `/v1/models` to view available models for your key."
)


@pytest.fixture
def gateway() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


async def test_a_5xx_quotes_the_upstream_and_says_no_retries_were_made(
    settings: Settings, gateway: FakeUpstream, mode: str
) -> None:
    gateway.fail(500, json_body=LITELLM_500)
    async with connect(settings, mode, base_url=gateway.base_url, api="responses") as client:
        message = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert f"The upstream at {gateway.base_url} failed (500)." in message
    assert 'Upstream said: "Error processing stream start"' in message
    assert "No retries were made (IMAGECHAT_MAX_RETRIES=0" in message and "even after retries" not in message
    # IMAGECHAT_API=responses was chosen: the caller is told what would get past it instead of a silent switch.
    assert "IMAGECHAT_API=chat" in message
    assert [r.path for r in gateway.requests] == ["/v1/responses"]


async def test_a_5xx_says_how_many_retries_were_made(settings: Settings, gateway: FakeUpstream) -> None:
    gateway.fail(503, message="Backend overloaded, shard 7.", times=3)
    async with connect(settings, base_url=gateway.base_url, api="chat", max_retries=2) as client:
        message = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert "failed (503). The request was retried 2 times (IMAGECHAT_MAX_RETRIES)." in message
    assert 'Upstream said: "Backend overloaded, shard 7."' in message
    assert "IMAGECHAT_API=chat" not in message  # already on Chat Completions: nothing to switch to
    assert len(gateway.requests) == 3


async def test_under_auto_a_failing_responses_route_falls_back_to_chat_completions(
    settings: Settings, gateway: FakeUpstream, mode: str
) -> None:
    gateway.fail(500, json_body=LITELLM_500, path="/v1/responses")
    gateway.add_reply(Reply(text="A red card."))
    gateway.add_reply(Reply(text="Still red."))
    async with connect(settings, mode, base_url=gateway.base_url) as client:
        first = await call(client, "chat", {"prompt": "What is it?", "images": []})
        second = await call(client, "chat", {"prompt": "Sure?", "images": []})
    assert (first["text"], second["text"]) == ("A red card.", "Still red.")
    paths = [r.path for r in gateway.requests]
    assert paths == ["/v1/responses", "/v1/chat/completions", "/v1/chat/completions"]


async def test_under_auto_when_both_apis_fail_both_failures_are_told(settings: Settings, gateway: FakeUpstream) -> None:
    gateway.fail(500, json_body=LITELLM_500, path="/v1/responses", times=2)
    gateway.fail(502, raw_body="Bad gateway: no healthy deployments", path="/v1/chat/completions")
    async with connect(settings, base_url=gateway.base_url) as client:
        message = await fails(client, "chat", {"prompt": "hi", "images": []})
        again = await call(client, "chat", {"prompt": "hi", "images": []})
    assert 'Upstream said: "Error processing stream start"' in message
    assert "Chat Completions, tried instead, failed too" in message and "no healthy deployments" in message
    # Neither worked, so the next turn tries the Responses API again (and, failing, Chat Completions).
    paths = [r.path for r in gateway.requests]
    assert paths == ["/v1/responses", "/v1/chat/completions", "/v1/responses", "/v1/chat/completions"]
    assert again["status"] == "completed"


async def test_an_invalid_model_400_lists_the_served_models(
    settings: Settings, gateway: FakeUpstream, mode: str
) -> None:
    gateway.fail(400, message=LITELLM_BAD_MODEL, code="400", param="model")
    async with connect(settings, mode, base_url=gateway.base_url, api="chat") as client:
        message = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert "The upstream does not serve model 'gpt-4.1-mini'" in message
    assert "Models it serves: gpt-4.1-mini, gpt-4o, gpt-5, o3." in message
    assert "Invalid model name passed in model=gpt-99" in message


async def test_a_pdf_goes_to_chat_completions_as_a_file_part(settings: Settings, pictures: Path, mode: str) -> None:
    with FakeUpstream(serve_responses=False) as chat_only:
        chat_only.add_reply(Reply(text="A one-page PDF."))
        async with connect(settings, mode, base_url=chat_only.base_url, api="chat") as client:
            await call(client, "attach_file", {"source": str(pictures / "doc.pdf")})
            result = await call(client, "chat", {"prompt": "Summarise"})
    assert result["text"] == "A one-page PDF."
    [body] = chat_only.chat_bodies()
    prompt, pdf = body["messages"][0]["content"]
    assert prompt == {"type": "text", "text": "Summarise"}
    assert pdf["type"] == "file" and pdf["file"]["filename"] == "doc.pdf"
    assert pdf["file"]["file_data"].startswith("data:application/pdf;base64,")


async def test_a_server_that_cannot_take_the_pdf_is_named_with_a_way_out(
    settings: Settings, pictures: Path, mode: str
) -> None:
    with FakeUpstream(serve_responses=False, chat_files=False) as local:
        async with connect(settings, mode, base_url=local.base_url) as client:
            await call(client, "attach_file", {"source": str(pictures / "doc.pdf")})
            message = await fails(client, "chat", {"prompt": "Summarise"})
            pending = json.loads((await call(client, "preview", {"target": "pending"}))["text"])
    assert f"The upstream at {local.base_url} does not take PDF documents on Chat Completions" in message
    assert "'doc.pdf' could not be sent" in message and 'it said: "Unknown part type: file"' in message
    assert "IMAGECHAT_API=responses" in message and "text export" in message
    assert len(pending["files"]) == 1
