"""The workflow steps as MCP tools: schemas and descriptions for the calling model, nothing else.

Each argument is declared once, beside its step (an `Annotated` alias with its bounds and description); a tool
takes its step's parameters as its own (`parameters_of`), so its input schema comes from those declarations.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations

from tools import attach_file as attach_step
from tools import chat as chat_step
from tools import load_image as load_step
from tools import options as options_step
from tools import pending as pending_step
from tools import preview as preview_step
from tools.chat import Progress
from tools.deps import ConversationId, Deps

F = TypeVar("F", bound=Callable[..., Any])


def parameters_of(
    step: Callable[..., Any], leave_out: frozenset[str] | set[str] = frozenset()
) -> list[inspect.Parameter]:
    """A step's parameters after `deps`, as the tool's keyword arguments (less those the MCP layer fills in)."""
    parameters = list(inspect.signature(step, eval_str=True).parameters.values())[1:]
    return [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters if p.name not in leave_out]


def takes(parameters: Iterable[inspect.Parameter]) -> Callable[[F], F]:
    """Give a tool function `parameters` in place of its `**arguments`: the SDK builds the input schema from the
    signature, so the schema is the step's declarations, written nowhere else."""

    def decorate(tool: F) -> F:
        own = inspect.signature(tool, eval_str=True)
        kept = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        tool.__signature__ = own.replace(parameters=[*kept, *parameters])  # type: ignore[attr-defined]
        return tool

    return decorate


def deps_of(ctx: Context[Deps, Any]) -> Deps:
    return ctx.request_context.lifespan_context


def progress_of(ctx: Context[Deps, Any]) -> Progress:
    """The step's progress callback, as MCP progress notifications to this call's client."""

    async def progress(done: float, total: float | None, message: str) -> None:
        await ctx.report_progress(done, total, message)

    return progress


def register_tools(server: MCPServer[Deps]) -> None:
    @server.tool(
        title="Load image",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
    )
    @takes(parameters_of(load_step.load_image))
    async def load_image(ctx: Context[Deps, Any], **arguments: Any) -> load_step.LoadImageResult:
        """Load images for the next chat turn (Load Image / Batch Images), EXIF-rotated; if any source fails,
        none is attached."""
        return await load_step.load_image(deps_of(ctx), **arguments)

    @server.tool(
        title="Attach file",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
    )
    @takes(parameters_of(attach_step.attach_file))
    async def attach_file(ctx: Context[Deps, Any], **arguments: Any) -> attach_step.AttachFileResult:
        """Attach documents for the next chat turn (ComfyUI's Input Files node)."""
        return await attach_step.attach_file(deps_of(ctx), **arguments)

    @server.tool(
        title="Set options",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    @takes(
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=declared, default=default)
        for name, declared, default in options_step.arguments()
    )
    async def set_options(
        ctx: Context[Deps, Any], conversation_id: ConversationId = "default", **changes: Any
    ) -> options_step.OptionsResult:
        """Set the conversation's options (ComfyUI's Advanced Options node, and more): only those given change;
        values the model cannot take are refused."""
        return await options_step.set_options(deps_of(ctx), conversation_id, options_step.OptionChanges(**changes))

    @server.tool(
        title="Chat about the images",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
        ),
    )
    @takes(parameters_of(chat_step.chat, leave_out={"progress"}))
    async def chat(ctx: Context[Deps, Any], **arguments: Any) -> chat_step.ChatResult:
        """Send one turn (ComfyUI's OpenAI Chat node): prompt, then images, then files. A slow answer returns
        status 'running': fetch it with chat(turn=<n>)."""
        return await chat_step.chat(deps_of(ctx), progress=progress_of(ctx), **arguments)

    @server.tool(
        title="Drop waiting attachments",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
    )
    @takes(parameters_of(pending_step.clear_pending))
    async def clear_pending(ctx: Context[Deps, Any], **arguments: Any) -> pending_step.ClearPendingResult:
        """Drop attachments waiting for the next chat turn (all, or the ids given); they stay stored."""
        return await pending_step.clear_pending(deps_of(ctx), **arguments)

    @server.tool(
        title="Preview",
        # Not read-only and not closed-world: after a restart it fetches a background answer from the upstream
        # and records it. Idempotent all the same: asking again shows the same thing and changes nothing more.
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
    )
    @takes(parameters_of(preview_step.preview))
    async def preview(
        ctx: Context[Deps, Any], **arguments: Any
    ) -> Annotated[CallToolResult, preview_step.PreviewResult]:
        """Show a result again (ComfyUI's Preview Any): the last answer by default."""
        result = await preview_step.preview(deps_of(ctx), **arguments)
        content: list[Any] = [TextContent(type="text", text=result.text)]
        if result.image is not None and result.image_mime is not None:
            import base64

            content.append(
                ImageContent(type="image", data=base64.b64encode(result.image).decode(), mime_type=result.image_mime)
            )
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))
