"""Chat Completions: what Ollama, vLLM, LM Studio and llama.cpp serve.

The history is always replayed (nothing is stored upstream), instructions become the system message, text
documents travel inline as text and PDFs as `file` parts (OpenAI's and LiteLLM's Chat Completions take them;
a server that does not is told apart by its 400, see `is_file_refusal`). Images keep their detail, except
"original", which this API does not have: they go out as "high" (see model_rules.detail_for_api).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from server.upstream_errors import upstream_message
from server.upstream_responses import content, cut_off_guard, data_url
from tools.batch_schema import text_format
from tools.model_rules import detail_for_api
from tools.models import Usage
from tools.ports import ChatReply, ChatRequest, FilePart, ImagePart, Listener, Part, TextPart

if TYPE_CHECKING:
    from openai import AsyncOpenAI


PDF = "application/pdf"


def file_text(part: FilePart) -> str:
    text = part.data.decode("utf-8-sig", "replace")
    return f"Attached file {part.name}:\n{text}"


def user_part(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        url = data_url(part.mime, part.data)
        return {"type": "image_url", "image_url": {"url": url, "detail": detail_for_api(part.detail, "chat")}}
    if part.mime == PDF:
        return {"type": "file", "file": {"filename": part.name, "file_data": data_url(part.mime, part.data)}}
    return {"type": "text", "text": file_text(part)}


def pdf_names(request: ChatRequest) -> list[str]:
    return [
        part.name
        for message in request.messages
        for part in message.parts
        if isinstance(part, FilePart) and part.mime == PDF
    ]


def is_file_refusal(exc: Exception, request: ChatRequest) -> bool:
    """A 4xx that is about the PDF's `file` part: the server does not take files on this API."""
    said = upstream_message(exc).lower()
    about_files = any(word in said for word in ("file", "part type", "content type", "unsupported content"))
    return getattr(exc, "status_code", None) in (400, 415, 422) and bool(pdf_names(request)) and about_files


def file_refusal(exc: Exception, request: ChatRequest, where: str) -> str:
    names = ", ".join(repr(name) for name in pdf_names(request))
    return (
        f"The upstream at {where} does not take PDF documents on Chat Completions, so {names} could not be sent "
        f'(it said: "{upstream_message(exc)}"). Use an upstream that serves the Responses API '
        "(IMAGECHAT_API=responses or auto), or attach a text export of the document (.txt or .md) instead. "
        "Nothing was recorded."
    )


def body(request: ChatRequest, *, openai_host: bool) -> dict[str, Any]:
    options = request.options
    messages: list[dict[str, Any]] = []
    if options.instructions:
        # OpenAI's reasoning models call it "developer"; every server accepts "system".
        messages.append({"role": "system", "content": options.instructions})
    messages += [{"role": m.role, "content": content(m, user_part)} for m in request.messages]
    out: dict[str, Any] = {
        "model": options.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # OpenAI's reasoning models take only max_completion_tokens; most local servers know only max_tokens.
    if options.max_output_tokens is not None:
        out["max_completion_tokens" if openai_host else "max_tokens"] = options.max_output_tokens
    if options.reasoning_effort is not None:
        out["reasoning_effort"] = options.reasoning_effort
    if options.temperature is not None:
        out["temperature"] = options.temperature
    if options.top_p is not None:
        out["top_p"] = options.top_p
    if options.response_format == "json":
        out["response_format"] = {"type": "json_object"}
    if request.json_schema is not None:
        named = {key: value for key, value in text_format(request.json_schema).items() if key != "type"}
        out["response_format"] = {"type": "json_schema", "json_schema": named}
    return out


async def stream(client: AsyncOpenAI, payload: dict[str, Any], listener: Listener | None) -> ChatReply:
    chunks = await client.chat.completions.create(**payload)
    texts: list[str] = []
    finish: str | None = None
    usage: Usage | None = None
    response_id: str | None = None
    model = payload["model"]
    try:
        async for chunk in cut_off_guard(chunks):
            if response_id is None and chunk.id:
                response_id = chunk.id
                if listener is not None:
                    await listener.started(chunk.id, False)
            model = chunk.model or model
            for choice in chunk.choices:
                delta = choice.delta.content if choice.delta else None
                if delta:
                    texts.append(delta)
                    if listener is not None:
                        await listener.text(delta)
                if choice.finish_reason:
                    finish = choice.finish_reason
            if chunk.usage is not None:
                usage = Usage(
                    input_tokens=chunk.usage.prompt_tokens,
                    output_tokens=chunk.usage.completion_tokens,
                    total_tokens=chunk.usage.total_tokens,
                )
    finally:
        with anyio.CancelScope(shield=True):  # even when cancelled: hang up, so the upstream stops generating
            await chunks.close()
    incomplete = finish in ("length", "content_filter")
    return ChatReply(
        text="".join(texts),
        status="incomplete" if incomplete else "completed",
        model=model,
        response_id=response_id,
        usage=usage,
        api="chat",
        stored=False,
        incomplete_reason=("max_output_tokens" if finish == "length" else finish) if incomplete else None,
    )
