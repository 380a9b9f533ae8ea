"""Resources: images by id, conversations as JSON, and what a client needs to discover them."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from prompts import presets
from tools.deps import Deps


def register_resources(server: MCPServer[Deps]) -> None:
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
        description="Options, every turn (prompt, attachments, answer, usage) and pending inputs.",
        mime_type="application/json",
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
