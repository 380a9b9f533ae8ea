"""Any OpenAI-compatible upstream: Responses or Chat Completions, errors a user can act on, dry runs."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_types import TextResourceContents

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails


@pytest.fixture
def chat_only() -> Iterator[FakeUpstream]:
    with FakeUpstream(serve_responses=False) as fake:
        yield fake


async def test_auto_falls_back_to_chat_completions_once(
    settings: Settings, pictures: Path, chat_only: FakeUpstream, mode: str
) -> None:
    chat_only.add_reply(Reply(text="A red card."))
    chat_only.add_reply(Reply(text="Yes."))
    async with connect(settings, mode, base_url=chat_only.base_url, api_key="ollama") as client:
        await call(client, "set_options", {"instructions": "Be brief.", "model": "gpt-4o", "detail": "low"})
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        await call(client, "attach_file", {"source": str(pictures / "notes.txt")})
        first = await call(client, "chat", {"prompt": "What is it?"})
        second = await call(client, "chat", {"prompt": "Sure?"})
    paths = [r.path for r in chat_only.requests]
    assert paths == ["/v1/responses", "/v1/chat/completions", "/v1/chat/completions"]
    assert (first["text"], second["text"]) == ("A red card.", "Yes.")
    one, two = chat_only.chat_bodies()
    assert one["messages"][0] == {"role": "system", "content": "Be brief."}
    user = one["messages"][1]["content"]
    assert [p["type"] for p in user] == ["text", "image_url", "text"]
    assert user[1]["image_url"]["url"].startswith("data:image/") and user[1]["image_url"]["detail"] == "low"
    assert user[2]["text"] == "Attached file notes.txt:\nThe red one is a test card.\n"
    assert one["stream"] is True and one["stream_options"] == {"include_usage": True} and one["max_tokens"] == 4096
    # Nothing is stored upstream with Chat Completions: the second turn replays the first.
    assert [m["role"] for m in two["messages"]] == ["system", "user", "assistant", "user"]
    assert two["messages"][2]["content"] == "A red card."
    assert first["usage"]["total_tokens"] > 0


async def test_chat_api_refuses_pdf_where_the_server_cannot_take_it(
    settings: Settings, pictures: Path, mode: str
) -> None:
    # Chat Completions takes PDF file parts (OpenAI, LiteLLM): only a server that refuses them gets this answer.
    with FakeUpstream(serve_responses=False, chat_files=False) as chat_only:
        async with connect(settings, mode, base_url=chat_only.base_url, api="chat") as client:
            await call(client, "attach_file", {"source": str(pictures / "doc.pdf")})
            message = await fails(client, "chat", {"prompt": "Summarise"})
            pending = json.loads((await call(client, "preview", {"target": "pending"}))["text"])
    assert "PDF" in message and "Responses API" in message and "IMAGECHAT_API=responses" in message
    assert [r.path for r in chat_only.requests] == ["/v1/chat/completions"] and len(pending["files"]) == 1


async def test_rate_limit_is_retried_as_the_upstream_asks(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    upstream.fail(429, headers={"Retry-After": "0"}, message="Rate limit reached for requests")
    async with connect(settings, mode, max_retries=1) as client:
        result = await call(client, "chat", {"prompt": "hi", "images": []})
    assert result["status"] == "completed" and len(upstream.responses_bodies()) == 2


async def test_rate_limit_after_retries_names_the_wait(settings: Settings, upstream: FakeUpstream, mode: str) -> None:
    upstream.fail(429, headers={"Retry-After": "7"}, message="Rate limit reached for requests")
    async with connect(settings, mode) as client:
        message = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert "Rate limited" in message and "wait 7 s" in message


async def test_quota_context_and_policy_errors_say_what_to_do(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    upstream.fail(429, code="insufficient_quota", err_type="insufficient_quota", message="You exceeded your quota.")
    upstream.fail(400, code="context_length_exceeded", message="This model's maximum context length is 128000.")
    upstream.fail(400, code="content_policy_violation", message="Your request was rejected by the safety system.")
    async with connect(settings, mode) as client:
        quota = await fails(client, "chat", {"prompt": "hi", "images": []})
        context = await fails(client, "chat", {"prompt": "hi", "images": []})
        policy = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert "quota" in quota and "billing" in quota
    # truncation is 'auto' already (the default): the message does not suggest it again.
    assert "starting_point" in context and "even with truncation 'auto'" in context
    assert "set_options(truncation='auto')" not in context
    assert "content policy" in policy


async def test_unknown_model_lists_what_the_upstream_serves(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        message = await fails(client, "chat", {"prompt": "hi", "model": "gpt-99", "images": []})
    assert "gpt-99" in message and "Models it serves: gpt-4.1-mini, gpt-4o, gpt-5, o3." in message


async def test_unreachable_upstream_names_the_base_url(settings: Settings, mode: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    async with connect(settings, mode, base_url=base_url) as client:
        message = await fails(client, "chat", {"prompt": "hi", "images": []})
        pending = await call(client, "preview", {"target": "options"})
    assert f"Could not reach the upstream at {base_url}" in message and "OPENAI_BASE_URL" in message
    assert pending["text"]


async def test_a_local_server_needs_no_real_key(settings: Settings, chat_only: FakeUpstream, mode: str) -> None:
    async with connect(settings, mode, base_url=chat_only.base_url, api_key="anything", api="chat") as client:
        result = await call(client, "chat", {"prompt": "hi", "images": []})
    assert result["status"] == "completed"
    assert chat_only.requests[0].headers["authorization"] == "Bearer anything"


async def test_models_resource_lists_the_upstreams_models(settings: Settings, mode: str) -> None:
    with FakeUpstream(models=("llava:13b", "qwen2.5vl:7b")) as fake:
        async with connect(settings, mode, base_url=fake.base_url) as client:
            content = (await client.read_resource("imagechat://models")).contents[0]
    # The resource also describes the known models (prices, images, details); the upstream's ids are under "served".
    assert isinstance(content, TextResourceContents)
    assert json.loads(content.text)["served"] == ["llava:13b", "qwen2.5vl:7b"]


async def test_dry_run_estimates_cost_and_renders_the_api_in_use(
    settings: Settings, pictures: Path, upstream: FakeUpstream, chat_only: FakeUpstream, mode: str
) -> None:
    upstream.models.append("llava:13b")  # a model the upstream serves and the server has no price for
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"model": "gpt-4o", "max_output_tokens": 1000})
        priced = await call(client, "chat", {"prompt": "hi", "dry_run": True, "images": []})
        unpriced = await call(client, "chat", {"prompt": "hi", "dry_run": True, "model": "llava:13b", "images": []})
    async with connect(settings, mode, base_url=chat_only.base_url, api="chat") as client:
        await call(client, "load_image", {"source": str(pictures / "red.png")})
        rendered = await call(client, "chat", {"prompt": "hi", "dry_run": True})
    cost = priced["estimated_cost_usd"]
    assert cost["prices_per_million"] == [2.5, 10.0]
    assert cost["input"] == pytest.approx(priced["estimated_input_tokens"]["total"] * 2.5 / 1e6)
    assert cost["output_max"] == pytest.approx(0.01)
    assert unpriced["estimated_cost_usd"] is None
    assert rendered["request"]["api"] == "chat" and rendered["request"]["endpoint"].endswith("/chat/completions")
    image = rendered["request"]["body"]["messages"][0]["content"][1]["image_url"]["url"]
    assert "sha256" in image and len(image) < 120
    assert chat_only.requests == []


async def test_a_per_turn_model_drops_options_it_cannot_take(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"model": "gpt-4o", "temperature": 0.2})
        result = await call(client, "chat", {"prompt": "hi", "model": "o3", "images": []})
        options = json.loads((await call(client, "preview", {"target": "options"}))["text"])
    body = upstream.responses_bodies()[-1]
    assert body["model"] == "o3" and "temperature" not in body
    assert result["notes"] == ["temperature dropped: o3 does not take it."]
    assert options["temperature"] == 0.2 and options["model"] == "gpt-4o"  # the conversation's options are kept
