"""The fake upstream, driven by the real `openai` SDK over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator

import anyio
import openai
import pytest

from tests.fake_upstream import FakeUpstream, Reply


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
async def client(upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=upstream.base_url, api_key="test", max_retries=0) as c:
        yield c


def _fake_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fake-upstream")]


async def test_non_streaming_response_has_text_usage_and_echoes_the_request(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.add_reply(Reply(text="Two cats on a sofa.", usage={"input_tokens": 120, "output_tokens": 5}))

    response = await client.responses.create(
        model="gpt-4.1-mini",
        input="What is in the image?",
        instructions="Be brief.",
        max_output_tokens=300,
        temperature=0.2,
        truncation="auto",
    )

    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == "gpt-4.1-mini"
    assert response.output_text == "Two cats on a sofa."
    assert response.instructions == "Be brief."
    assert response.max_output_tokens == 300
    assert response.temperature == 0.2
    assert response.truncation == "auto"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        120,
        5,
        125,
    )
    [recorded] = upstream.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/responses")
    assert recorded.headers["authorization"] == "Bearer test"
    assert upstream.responses_bodies()[0]["input"] == "What is in the image?"


async def test_default_usage_is_computed_from_the_request_and_the_text(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(model="gpt-4o", input="one two three")

    assert response.usage is not None
    assert response.usage.input_tokens == 3
    assert response.usage.output_tokens == 7  # words in the default reply
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


async def test_streamed_response_emits_the_full_event_sequence(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.add_reply(text="Hello there, world", chunks=3)

    stream = await client.responses.create(model="gpt-4o", input="hi", stream=True)
    events = [event async for event in stream]

    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello there, world"
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == "Hello there, world"
    assert final.response.usage is not None and final.response.usage.output_tokens == 3


async def test_all_parts_of_a_multi_part_reply_are_returned(upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    parts = ["First part. ", "Second part. ", "Third part."]
    upstream.add_reply(parts=parts)
    upstream.add_reply(parts=parts)

    plain = await client.responses.create(model="gpt-4o", input="hi")
    async with client.responses.stream(model="gpt-4o", input="hi") as stream:
        streamed = await stream.get_final_response()

    for response in (plain, streamed):
        assert response.output_text == "".join(parts)
        message = response.output[0]
        assert message.type == "message"
        assert [c.text for c in message.content if c.type == "output_text"] == parts


def test_sync_stream_helper_gives_the_final_response(upstream: FakeUpstream) -> None:
    upstream.add_reply(text="Sync works.", chunks=4)
    sync_client = openai.OpenAI(base_url=upstream.base_url, api_key="test", max_retries=0)
    with sync_client, sync_client.responses.stream(model="o3", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == "Sync works."
    assert len(deltas) == 4
    assert final.output_text == "Sync works."
    assert final.usage is not None


async def test_incomplete_reply_reports_the_reason(upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    upstream.add_reply(text="Cut sh", status="incomplete", incomplete_reason="max_output_tokens")
    upstream.add_reply(text="Cut sh", status="incomplete")

    response = await client.responses.create(model="gpt-4o", input="hi", max_output_tokens=16)
    stream = await client.responses.create(model="gpt-4o", input="hi", stream=True)
    events = [event async for event in stream]

    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Cut sh"
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"
    assert last.response.output_text == "Cut sh"
    assert all(e.type != "response.completed" for e in events)


async def test_previous_response_id_must_name_a_stored_response(client: openai.AsyncOpenAI) -> None:
    first = await client.responses.create(model="gpt-4o", input="hi")
    second = await client.responses.create(model="gpt-4o", input="more", previous_response_id=first.id)
    unstored = await client.responses.create(model="gpt-4o", input="hi", store=False)

    assert second.previous_response_id == first.id
    for missing in ("resp_unknown", unstored.id):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="gpt-4o", input="more", previous_response_id=missing)
        assert caught.value.code == "previous_response_not_found"
        assert caught.value.param == "previous_response_id"
        assert f"Previous response with id '{missing}' not found." in str(caught.value)


async def test_stored_responses_can_be_retrieved_but_unstored_ones_cannot(client: openai.AsyncOpenAI) -> None:
    stored = await client.responses.create(model="gpt-4o", input="hi")
    unstored = await client.responses.create(model="gpt-4o", input="hi", store=False)

    again = await client.responses.retrieve(stored.id)

    assert again.id == stored.id
    assert again.output_text == stored.output_text
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)


async def test_background_response_completes_later(upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    upstream.add_reply(text="Done in the background.", delay=0.2)

    created = await client.responses.create(model="gpt-4o", input="hi", background=True)
    seen = [created.status]
    current = created
    for _ in range(200):
        if current.status not in ("queued", "in_progress"):
            break
        await anyio.sleep(0.02)
        current = await client.responses.retrieve(created.id)
        seen.append(current.status)

    assert created.status == "queued"
    assert created.output == []
    assert current.status == "completed"
    assert current.output_text == "Done in the background."
    assert current.usage is not None
    assert set(seen) <= {"queued", "in_progress", "completed"}


async def test_background_response_can_be_cancelled(upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    upstream.add_reply(delay=30)
    created = await client.responses.create(model="gpt-4o", input="hi", background=True)

    cancelled = await client.responses.cancel(created.id)
    again = await client.responses.retrieve(created.id)

    assert cancelled.status == "cancelled"
    assert again.status == "cancelled"
    foreground = await client.responses.create(model="gpt-4o", input="hi")
    with pytest.raises(openai.BadRequestError):
        await client.responses.cancel(foreground.id)


async def test_chat_completion_streams_deltas_and_usage(upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    upstream.add_reply(text="A small blue bird.", chunks=4, usage={"input_tokens": 50, "output_tokens": 4})

    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "What is it?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "A small blue bird."
    assert all(c.id == chunks[0].id and c.id.startswith("chatcmpl-") for c in chunks)
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (50, 4)
    assert usage_chunk.usage.total_tokens == 54
    assert upstream.chat_bodies()[0]["messages"][0]["content"] == "What is it?"


async def test_chat_completion_without_usage_option_sends_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]

    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_non_streaming_chat_completion_reports_length_when_incomplete(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.add_reply(parts=["Half ", "an answer"], status="incomplete")

    completion = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Half an answer"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


async def test_rate_limit_with_retry_after_is_retried_by_the_sdk(upstream: FakeUpstream) -> None:
    upstream.fail(429, headers={"Retry-After": "0.01"})
    upstream.fail(429, headers={"Retry-After": "0.01"})

    async with openai.AsyncOpenAI(base_url=upstream.base_url, api_key="test", max_retries=0) as no_retry:
        with pytest.raises(openai.RateLimitError) as caught:
            await no_retry.responses.create(model="gpt-4o", input="hi")
    async with openai.AsyncOpenAI(base_url=upstream.base_url, api_key="test", max_retries=1) as retrying:
        response = await retrying.responses.create(model="gpt-4o", input="hi")

    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "0.01"
    assert response.output_text == "A red square on a white background."
    assert len(upstream.responses_bodies()) == 3


async def test_failures_only_hit_the_matching_path(upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    upstream.fail(500, path="/v1/chat/completions")

    response = await client.responses.create(model="gpt-4o", input="hi")
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    completion = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    assert response.status == "completed"
    assert caught.value.type == "server_error"
    assert completion.choices[0].message.content


async def test_scripted_errors_carry_openai_codes(upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    upstream.fail(400, code="context_length_exceeded", message="Your input exceeds the context window.")
    upstream.fail(400, code="content_policy_violation", message="Rejected by the safety system.")
    upstream.fail(502, raw_body="<html>Bad gateway</html>")

    codes = []
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="gpt-4o", input="hi")
        codes.append(caught.value.code)
    with pytest.raises(openai.InternalServerError) as gateway:
        await client.responses.create(model="gpt-4o", input="hi")

    assert codes == ["context_length_exceeded", "content_policy_violation"]
    assert gateway.value.status_code == 502
    assert "Bad gateway" in str(gateway.value.body)


async def test_api_key_is_enforced_when_set() -> None:
    with FakeUpstream(api_key="sk-right-key-1234") as fake:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-wrong-key-9876", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as caught:
                await bad.models.list()
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-right-key-1234", max_retries=0) as good:
            models = await good.models.list()

        assert caught.value.code == "invalid_api_key"
        assert "sk-wrong-key" not in str(caught.value)
        assert [m.id for m in models.data][:1] == ["gpt-4.1-mini"]
        assert [r.headers["authorization"] for r in fake.requests] == [
            "Bearer sk-wrong-key-9876",
            "Bearer sk-right-key-1234",
        ]


async def test_unknown_model_is_rejected_like_openai(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as chat:
        await client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as responses:
        await client.responses.create(model="gpt-9", input="hi")

    assert chat.value.code == "model_not_found"
    assert "The model `gpt-9` does not exist or you do not have access to it." in str(chat.value)
    assert responses.value.code == "model_not_found"
    assert responses.value.param == "model"


async def test_a_chat_only_server_answers_404_for_responses() -> None:
    with FakeUpstream(serve_responses=False) as fake:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0) as c:
            with pytest.raises(openai.NotFoundError) as caught:
                await c.responses.create(model="gpt-4o", input="hi")
            completion = await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])

    assert caught.value.body == "404 page not found"
    assert completion.choices[0].message.content == "A red square on a white background."


async def test_a_responses_only_server_answers_404_for_chat() -> None:
    with FakeUpstream(serve_chat=False) as fake:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=0) as c:
            with pytest.raises(openai.NotFoundError):
                await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()

    assert [m.id for m in page.data] == ["gpt-4.1-mini", "gpt-4o", "o3", "gpt-5"]
    assert all(m.object == "model" and m.owned_by for m in page.data)


async def test_a_dropped_stream_surfaces_as_a_connection_error(
    upstream: FakeUpstream, client: openai.AsyncOpenAI
) -> None:
    upstream.add_reply(text="This answer never finishes.", chunks=5, drop_after=2)

    deltas: list[str] = []
    stream = await client.responses.create(model="gpt-4o", input="hi", stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)

    assert len(deltas) == 2


async def test_client_disconnecting_mid_stream_leaves_the_server_healthy(
    upstream: FakeUpstream, client: openai.AsyncOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.add_reply(text="a b c d e f g h", chunks=8, chunk_delay=0.02)

    stream = await client.responses.create(model="gpt-4o", input="hi", stream=True)
    async for event in stream:
        if event.type == "response.output_text.delta":
            break
    await stream.close()
    after = await client.responses.create(model="gpt-4o", input="hi")
    await anyio.sleep(0.1)  # let the abandoned stream's thread hit the closed socket
    upstream.stop()

    assert after.status == "completed"
    assert "Traceback" not in capsys.readouterr().err
    assert _fake_threads() == []


async def test_stop_interrupts_a_slow_request(upstream: FakeUpstream, client: openai.AsyncOpenAI) -> None:
    upstream.add_reply(delay=30)
    errors: list[BaseException] = []

    async def slow_call() -> None:
        try:
            await client.responses.create(model="gpt-4o", input="hi")
        except openai.APIConnectionError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_call)
        await anyio.to_thread.run_sync(upstream.wait_for_requests, 1)
        await anyio.to_thread.run_sync(upstream.stop)

    assert len(errors) == 1
    assert _fake_threads() == []
