"""The presets as MCP prompts: each one tells the calling agent how to run the workflow with our tools."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer, UserMessage
from mcp.server.mcpserver.prompts.base import Message
from pydantic import Field

from prompts import Preset, presets


def _steps(preset: Preset, sources: list[str], conversation_id: str, question: str, model: str | None) -> str:
    quoted = ", ".join(repr(s) for s in sources)
    model_arg = f", model={model!r}" if model else ""
    return (
        f"{preset.title}: {preset.description}\n\n"
        "Use the imagechat tools:\n"
        f"1. load_image(source=[{quoted}], conversation_id={conversation_id!r})\n"
        f"2. set_options(conversation_id={conversation_id!r}, preset={preset.name!r}{model_arg})\n"
        f"3. chat(prompt={question!r}, conversation_id={conversation_id!r})\n"
        f"4. Show me the answer as it is (preview(conversation_id={conversation_id!r}) shows it again).\n"
        "If a step fails, tell me its error message and what it suggests."
    )


def make_prompt(preset: Preset) -> Any:
    def prompt(
        source: Annotated[str, Field(description="Image path or URL; several separated by newlines.")],
        question: Annotated[str | None, Field(description="What to ask; the preset's usual question if empty.")] = None,
        conversation_id: Annotated[str, Field(description="Conversation to use.")] = "default",
        model: Annotated[str | None, Field(description="Model to use, e.g. gpt-4.1-mini.")] = None,
    ) -> list[Message]:
        sources = [line.strip() for line in source.splitlines() if line.strip()]
        return [UserMessage(_steps(preset, sources, conversation_id, question or preset.ask, model))]

    return prompt


def register_prompts(server: MCPServer[Any]) -> None:
    for preset in presets().values():
        server.prompt(name=preset.name, title=preset.title, description=preset.description)(make_prompt(preset))
