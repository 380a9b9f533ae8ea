"""The one upstream adapter: the official openai SDK, speaking the Responses API.

The SDK is imported on the first call, not at start-up: a server that only lists tools (or is asked for
a dry run) should not pay for importing it.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ToolError

from server.settings import Settings
from server.upstream_errors import explain
from tools.models import Usage
from tools.ports import (
    ChatReply,
    ChatRequest,
    ContextLost,
    FilePart,
    ImagePart,
    Message,
    OnText,
    TextPart,
    UpstreamFailure,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

NO_KEY = (
    "No API key is configured, so the model cannot be called. Set OPENAI_API_KEY in the server's environment "
    '(for Claude Desktop: the "env" block of this server in claude_desktop_config.json), or point '
    "OPENAI_BASE_URL at a local OpenAI-compatible server (Ollama: http://localhost:11434/v1) with any "
    "non-empty OPENAI_API_KEY. Everything else (load_image, set_options, preview, chat with dry_run=true) "
    "works without one."
)


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def responses_content(message: Message) -> list[dict[str, Any]] | str:
    if message.role == "assistant":
        return "".join(part.text for part in message.parts if isinstance(part, TextPart))
    content: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            content.append({"type": "input_text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append({"type": "input_image", "image_url": data_url(part.mime, part.data), "detail": part.detail})
        elif isinstance(part, FilePart):
            content.append({"type": "input_file", "filename": part.name, "file_data": data_url(part.mime, part.data)})
    return content


def responses_body(request: ChatRequest) -> dict[str, Any]:
    options = request.options
    body: dict[str, Any] = {
        "model": options.model,
        "input": [{"role": m.role, "content": responses_content(m)} for m in request.messages],
        "truncation": options.truncation,
        "max_output_tokens": options.max_output_tokens,
        "store": True,
    }
    if options.instructions:
        body["instructions"] = options.instructions
    if request.previous_response_id:
        body["previous_response_id"] = request.previous_response_id
    if options.reasoning_effort is not None:
        body["reasoning"] = {"effort": options.reasoning_effort}
    if options.temperature is not None:
        body["temperature"] = options.temperature
    if options.top_p is not None:
        body["top_p"] = options.top_p
    if options.response_format == "json":
        body["text"] = {"format": {"type": "json_object"}}
    return body


def usage_of(raw: Any) -> Usage | None:
    if raw is None:
        return None
    details = getattr(raw, "input_tokens_details", None)
    out_details = getattr(raw, "output_tokens_details", None)
    return Usage(
        input_tokens=getattr(raw, "input_tokens", 0) or 0,
        output_tokens=getattr(raw, "output_tokens", 0) or 0,
        total_tokens=getattr(raw, "total_tokens", 0) or 0,
        cached_tokens=getattr(details, "cached_tokens", None),
        reasoning_tokens=getattr(out_details, "reasoning_tokens", None),
    )


class OpenAIUpstream:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AsyncOpenAI | None = None

    @property
    def base_url(self) -> str:
        return self.settings.base_url or "https://api.openai.com/v1"

    def client(self) -> AsyncOpenAI:
        if self._client is None:
            if not self.settings.api_key:
                raise UpstreamFailure(NO_KEY)
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                api_key=self.settings.api_key,
                base_url=self.settings.base_url,
                timeout=self.settings.timeout,
                max_retries=self.settings.max_retries,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def render(self, request: ChatRequest) -> dict[str, Any]:
        return {
            "api": "responses",
            "endpoint": f"{self.base_url}/responses",
            "body": {**responses_body(request), "stream": True},
        }

    async def send(self, request: ChatRequest, on_text: OnText | None = None) -> ChatReply:
        client = self.client()
        body = responses_body(request)
        try:
            return await self._stream_responses(client, body, on_text)
        except ToolError:
            raise
        except Exception as exc:
            if request.previous_response_id and _is_missing_previous(exc):
                raise ContextLost(str(exc)) from exc
            raise UpstreamFailure(explain(exc, base_url=self.base_url, model=request.options.model)) from None

    async def _stream_responses(self, client: AsyncOpenAI, body: dict[str, Any], on_text: OnText | None) -> ChatReply:
        stream = await client.responses.create(**body, stream=True)
        final: Any = None
        texts: list[str] = []
        try:
            async for event in stream:
                kind = event.type
                if kind == "response.output_text.delta":
                    texts.append(event.delta)
                    if on_text is not None:
                        await on_text(event.delta)
                elif kind in ("response.completed", "response.incomplete", "response.failed"):
                    final = event.response
                elif kind == "error":
                    raise UpstreamFailure(
                        f"The upstream reported an error mid-answer: {event.message}. Try the turn again."
                    )
        finally:
            await stream.close()
        if final is None:
            raise UpstreamFailure("The upstream closed the stream before the answer was complete. Try the turn again.")
        if final.status == "failed":
            error = getattr(final, "error", None)
            raise UpstreamFailure(
                f"The model failed to answer: {getattr(error, 'message', 'no reason given')}. "
                "Try again, or change the prompt or model."
            )
        details = getattr(final, "incomplete_details", None)
        return ChatReply(
            text=final.output_text or "".join(texts),
            status=final.status or "completed",
            model=final.model or body["model"],
            response_id=final.id,
            usage=usage_of(final.usage),
            api="responses",
            stored=body.get("store", False),
            incomplete_reason=getattr(details, "reason", None),
        )


def _is_missing_previous(exc: Exception) -> bool:
    code = getattr(exc, "code", None)
    return code == "previous_response_not_found" or "previous response" in str(exc).lower()
