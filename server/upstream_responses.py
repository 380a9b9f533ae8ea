"""The Responses API: what ComfyUI's node speaks, and OpenAI's own default."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from server.logsafe import cut, redact
from tools.batch_schema import text_format
from tools.models import Usage
from tools.ports import ChatReply, ChatRequest, ImagePart, Listener, Message, Part, TextPart, UpstreamFailure

if TYPE_CHECKING:
    from openai import AsyncOpenAI

T = TypeVar("T")


async def cut_off_guard(items: AsyncIterator[T]) -> AsyncIterator[T]:
    """The stream's items; a connection lost after the answer began is a cut-off answer, not an unreachable host."""
    try:
        async for item in items:
            yield item
    except (ToolError, anyio.get_cancelled_exc_class()):
        raise
    except Exception as exc:
        raise UpstreamFailure(
            f"The upstream cut the answer off mid-stream ({type(exc).__name__}); nothing was recorded. "
            "Try the turn again."
        ) from None


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def user_part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "input_image", "image_url": data_url(part.mime, part.data), "detail": part.detail}
    return {"type": "input_file", "filename": part.name, "file_data": data_url(part.mime, part.data)}


def content(message: Message, render: Callable[[Part], dict[str, Any]] = user_part) -> list[dict[str, Any]] | str:
    """A message's content: an assistant's as plain text, a user's as parts in their order."""
    if message.role == "assistant":
        return "".join(part.text for part in message.parts if isinstance(part, TextPart))
    return [render(part) for part in message.parts]


def body(request: ChatRequest, *, background: bool) -> dict[str, Any]:
    options = request.options
    out: dict[str, Any] = {
        "model": options.model,
        "input": [{"role": m.role, "content": content(m)} for m in request.messages],
        # Stored so the next turn can continue from it by id instead of resending the history; a stand-alone
        # turn (persist_context=False) is not asked to be kept.
        "store": request.store,
        "stream": True,
    }
    # Left out when not set (a ComfyUI chat node without Advanced Options): the upstream's defaults apply.
    if options.truncation is not None:
        out["truncation"] = options.truncation
    if options.max_output_tokens is not None:
        out["max_output_tokens"] = options.max_output_tokens
    if background:
        out["background"] = True
    if options.instructions:
        out["instructions"] = options.instructions
    if request.previous_response_id:
        out["previous_response_id"] = request.previous_response_id
    if options.reasoning_effort is not None:
        out["reasoning"] = {"effort": options.reasoning_effort}
    if options.temperature is not None:
        out["temperature"] = options.temperature
    if options.top_p is not None:
        out["top_p"] = options.top_p
    if options.response_format == "json":
        out["text"] = {"format": {"type": "json_object"}}
    if request.json_schema is not None:
        out["text"] = {"format": text_format(request.json_schema)}
    return out


def field(value: Any, name: str) -> Any:
    """`name` of a response part, whether the SDK built it as a model or it came as the stream's plain JSON."""
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def output_text(final: Any) -> str:
    """The answer's text, as the SDK's `Response.output_text` joins it: every output_text part of every message."""
    if not isinstance(final, dict):
        return str(final.output_text or "")
    return "".join(
        str(part.get("text") or "")
        for item in final.get("output") or []
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    )


def usage_of(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(
        input_tokens=field(raw, "input_tokens") or 0,
        output_tokens=field(raw, "output_tokens") or 0,
        total_tokens=field(raw, "total_tokens") or 0,
        cached_tokens=field(field(raw, "input_tokens_details"), "cached_tokens"),
        reasoning_tokens=field(field(raw, "output_tokens_details"), "reasoning_tokens"),
    )


def reply_of(
    final: Any, *, model: str, background: bool, streamed_text: str = "", stored: bool = True
) -> ChatReply | None:
    """A finished response (an SDK model, or the stream's final event as plain JSON) as a reply; None while it is
    still queued or in progress."""
    status = field(final, "status") or "completed"
    if status in ("queued", "in_progress"):
        return None
    if status == "failed":
        reason = cut(redact(str(field(field(final, "error"), "message") or "no reason given")))
        raise UpstreamFailure(f"The model failed to answer: {reason}. Try again, or change the prompt or model.")
    if status == "cancelled":
        raise UpstreamFailure("The response was cancelled upstream before it finished. Ask again.")
    return ChatReply(
        text=output_text(final) or streamed_text,
        status="incomplete" if status == "incomplete" else "completed",
        model=field(final, "model") or model,
        response_id=field(final, "id"),
        usage=usage_of(field(final, "usage")),
        api="responses",
        stored=stored,
        incomplete_reason=field(field(final, "incomplete_details"), "reason"),
        background=background,
    )


async def stream(client: AsyncOpenAI, payload: dict[str, Any], listener: Listener | None) -> ChatReply:
    from openai import AsyncStream

    background = bool(payload.get("background"))
    # The SDK makes the request (auth, retries, errors, the event stream), but `responses.create` would walk every
    # part of a payload that is already in wire format (its TypedDict transform), and validate each event against
    # the union of every event type before building it: together most of the event-loop CPU of a streamed call.
    # Posted as it is, with events as plain dicts (the final response too: building it as a model walks every
    # field through pydantic, 0.5 ms a call, for the six that are read).
    events = await client.post(
        "/responses",
        body=payload,
        cast_to=object,
        options={"security": {"bearer_auth": True}},
        stream=True,
        stream_cls=AsyncStream[object],
    )
    final: dict[str, Any] | None = None
    texts: list[str] = []
    try:
        async for item in cut_off_guard(events):
            event: dict[str, Any] = item if isinstance(item, dict) else {}
            kind = event.get("type")
            if kind == "response.output_text.delta":
                texts.append(event["delta"])
                if listener is not None:
                    await listener.text(event["delta"])
            elif kind == "response.created":
                if listener is not None:
                    await listener.started(event["response"]["id"], background)
            elif kind in ("response.completed", "response.incomplete", "response.failed"):
                final = event["response"]
            elif kind == "error":
                raise UpstreamFailure(
                    f"The upstream reported an error mid-answer: {cut(redact(str(event.get('message'))))}. "
                    "Try the turn again."
                )
    finally:
        with anyio.CancelScope(shield=True):  # even when cancelled: hang up, so the upstream stops generating
            await events.close()
    if final is None:
        raise UpstreamFailure("The upstream closed the stream before the answer was complete. Try the turn again.")
    reply = reply_of(
        final,
        model=payload["model"],
        background=background,
        streamed_text="".join(texts),
        stored=payload.get("store") is not False,
    )
    if reply is None:
        raise UpstreamFailure("The upstream ended the stream while the response was still running. Ask again.")
    return reply
