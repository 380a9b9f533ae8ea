from __future__ import annotations

import base64
from typing import Any

from mcp import Client


async def call(client: Client, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Call a tool that must succeed; returns its structured content."""
    result = await client.call_tool(name, arguments or {}, **kwargs)
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert not result.is_error, f"{name} failed: {text}"
    assert result.structured_content is not None
    content: dict[str, Any] = result.structured_content
    return content


async def fails(client: Client, name: str, arguments: dict[str, Any] | None = None) -> str:
    """Call a tool that must fail with a ToolError; returns the message the model would read."""
    result = await client.call_tool(name, arguments or {})
    assert result.is_error, f"{name} unexpectedly succeeded: {result.structured_content}"
    return " ".join(getattr(block, "text", "") for block in result.content)


def user_content(body: dict[str, Any], index: int = -1) -> list[dict[str, Any]]:
    """The content parts of a user message in a recorded Responses request."""
    users = [item for item in body["input"] if item["role"] == "user"]
    content = users[index]["content"]
    assert isinstance(content, list)
    return content


def decoded_image(part: dict[str, Any]) -> tuple[str, bytes]:
    head, _, payload = part["image_url"].partition(",")
    return head.removeprefix("data:").removesuffix(";base64"), base64.b64decode(payload)
