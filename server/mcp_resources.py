"""Resources: images by id, conversations as JSON, and what a client needs to discover them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from mcp.server.mcpserver import Context, MCPServer, ResourceSecurity
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from prompts import presets
from tools import model_rules
from tools.deps import Deps


def conversation_uri(conversation_id: str) -> str:
    """The resource URI of a conversation: the id percent-encoded (the SDK decodes it when the URI is read)."""
    return "conversation://" + quote(conversation_id, safe="")


def register_resources(server: MCPServer[Deps], current: Callable[[], Deps | None]) -> None:
    @server.resource(
        "image://{image_id}",
        name="image",
        title="Loaded image",
        description="The bytes of a loaded image, as loaded (its own mime type).",
        mime_type="application/octet-stream",
    )
    async def image(image_id: str, ctx: Context[Deps, Any]) -> bytes:
        found = await ctx.request_context.lifespan_context.store.get_image(image_id)
        if found is None:
            raise ResourceNotFoundError(f"No image {image_id!r}: load it with load_image first.")
        return found[1]

    @server.resource(
        "conversation://{conversation_id}",
        name="conversation",
        title="Conversation transcript",
        description="Options, every turn (prompt, attachments, answer, usage) and pending inputs. The id is "
        "percent-encoded in the URI: conversation 'cats/2024' is conversation://cats%2F2024.",
        mime_type="application/json",
        # A conversation id is a key in the store, never a path: 'a/../b' or '/tmp' are ids like any other.
        security=ResourceSecurity(exempt_params={"conversation_id"}),
    )
    async def conversation(conversation_id: str, ctx: Context[Deps, Any]) -> str:
        found = await ctx.request_context.lifespan_context.store.get_conversation(conversation_id)
        if found is None:
            raise ResourceNotFoundError(f"No conversation {conversation_id!r}.")
        return found.model_dump_json(indent=2)

    @server.resource(
        "conversations://{scope}",
        name="conversations",
        title="Conversation ids",
        description="Every stored conversation id (use scope 'all').",
        mime_type="application/json",
    )
    async def conversations(scope: str, ctx: Context[Deps, Any]) -> str:
        if scope != "all":
            raise ResourceNotFoundError("Use conversations://all.")
        return json.dumps(await ctx.request_context.lifespan_context.store.list_conversations())

    @server.resource(
        "imagechat://presets",
        name="presets",
        title="Instruction presets",
        description="The named instructions set_options(preset=...) accepts.",
        mime_type="application/json",
    )
    def preset_texts() -> str:
        return json.dumps(
            {
                name: {"title": p.title, "description": p.description, "instructions": p.instructions}
                for name, p in presets().items()
            },
            indent=2,
        )

    @server.resource(
        "imagechat://models",
        name="models",
        title="Models: what each costs and takes, and what the upstream serves",
        description="Per known model: USD per million input/output tokens, whether it takes images, its detail "
        "levels, reasoning efforts and sampling; and the model ids the upstream lists at /v1/models.",
        mime_type="application/json",
    )
    async def models() -> str:
        deps = current()
        if deps is None:
            raise ResourceError("The server is not running.")
        try:
            served: list[str] | str = await deps.upstream.list_models()
        except ToolError as exc:
            served = f"The upstream's list could not be read: {exc}"
        return json.dumps({"known": model_rules.catalogue(), "served": served}, indent=2)
