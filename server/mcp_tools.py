"""The workflow steps as MCP tools: schemas and descriptions for the calling model, nothing else."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from tools import attach_file as attach_step
from tools import chat as chat_step
from tools import load_image as load_step
from tools import options as options_step
from tools import preview as preview_step
from tools.deps import Deps
from tools.models import Detail, ReasoningEffort, ResponseFormat, Truncation

ConversationId = Annotated[str, Field(description="Which conversation; created on first use.", max_length=128)]


def deps_of(ctx: Context[Deps, Any]) -> Deps:
    return ctx.request_context.lifespan_context


def register_tools(server: MCPServer[Deps]) -> None:
    @server.tool(
        title="Load image",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
    )
    async def load_image(
        source: Annotated[
            str | list[str],
            Field(
                description=(
                    "One image or a list: a file path, a file:// URL, a data:image/...;base64, URL, or image://<id> of "
                    "an image loaded before. Local files must be inside the allowed folders."
                )
            ),
        ],
        ctx: Context[Deps, Any],
        conversation_id: ConversationId = "default",
        frames: Annotated[
            load_step.Frames,
            Field(
                description=(
                    "For animated images: 'first' frame only, or 'all' frames (sampled evenly up to a cap) as a batch."
                )
            ),
        ] = "first",
    ) -> load_step.LoadImageResult:
        """Load images and attach them to the conversation's next chat turn (Load Image / Batch Images).

        Images are stored once by content (loading twice gives the same image_id) and EXIF-rotated.
        If any source fails, nothing is attached and the error names that source."""
        return await load_step.load_image(deps_of(ctx), source, conversation_id, frames)

    @server.tool(
        title="Attach file",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
    )
    async def attach_file(
        source: Annotated[
            str,
            Field(
                description="Path, file:// or data: URL of a .txt, .md, .csv, .json or .pdf "
                "document inside the allowed folders."
            ),
        ],
        ctx: Context[Deps, Any],
        conversation_id: ConversationId = "default",
    ) -> attach_step.AttachFileResult:
        """Attach a document to the conversation's next chat turn (ComfyUI's Input Files node)."""
        return await attach_step.attach_file(deps_of(ctx), source, conversation_id)

    @server.tool(
        title="Set options",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def set_options(
        ctx: Context[Deps, Any],
        conversation_id: ConversationId = "default",
        model: Annotated[str | None, Field(description="Model, e.g. gpt-4.1-mini, gpt-4o, o3, gpt-5.")] = None,
        instructions: Annotated[str | None, Field(description="System instructions; '' clears them.")] = None,
        preset: Annotated[
            str | None,
            Field(description=("Named instructions: image-to-prompt, describe, extract-text, compare.")),
        ] = None,
        truncation: Annotated[
            Truncation | None,
            Field(description=("'auto' drops the oldest context when it overflows; 'disabled' fails instead.")),
        ] = None,
        max_output_tokens: Annotated[
            int | None,
            Field(
                ge=16,
                le=128_000,
                description=("Upper bound on the answer, reasoning included. Default 4096."),
            ),
        ] = None,
        reasoning_effort: Annotated[
            ReasoningEffort | None,
            Field(description=("Reasoning models only (o-series, gpt-5); levels depend on the model.")),
        ] = None,
        temperature: Annotated[float | None, Field(ge=0, le=2, description="Non-reasoning models only.")] = None,
        top_p: Annotated[float | None, Field(ge=0, le=1, description="Non-reasoning models only.")] = None,
        detail: Annotated[
            Detail | None,
            Field(
                description=(
                    "How closely the model looks: low (cheap, 512 px), high, auto, or original (full resolution)."
                )
            ),
        ] = None,
        response_format: Annotated[ResponseFormat | None, Field(description="'json' asks for a JSON object.")] = None,
        reset: Annotated[bool, Field(description="Start from the defaults before applying the rest.")] = False,
    ) -> options_step.OptionsResult:
        """Set the conversation's options (ComfyUI's Advanced Options node, and more). Only the arguments
        given change; returns the effective options. Values the model cannot take are refused."""
        return await options_step.set_options(
            deps_of(ctx),
            conversation_id,
            model=model,
            instructions=instructions,
            preset=preset,
            truncation=truncation,
            max_output_tokens=max_output_tokens,
            reasoning_effort=reasoning_effort,
            temperature=temperature,
            top_p=top_p,
            detail=detail,
            response_format=response_format,
            reset=reset,
        )

    @server.tool(
        title="Chat about the images",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
        ),
    )
    async def chat(
        prompt: chat_step.Prompt,
        ctx: Context[Deps, Any],
        conversation_id: ConversationId = "default",
        images: chat_step.ImageIds = None,
        files: chat_step.FileIds = None,
        persist_context: chat_step.PersistContext = True,
        starting_point: chat_step.ContinueFrom = None,
        model: chat_step.TurnModel = None,
        dry_run: chat_step.DryRun = False,
        wait_seconds: chat_step.WaitSeconds = None,
        turn: chat_step.TurnNumber = None,
    ) -> chat_step.ChatResult:
        """Send one turn to the model (ComfyUI's OpenAI Chat node): the prompt, then the images, then the
        files. Returns the answer text with status, usage and the turn number. A slow answer returns
        status 'running' with its turn number; chat(turn=<n>) or preview fetches it when it is done."""

        async def progress(done: float, total: float | None, message: str) -> None:
            await ctx.report_progress(done, total, message)

        return await chat_step.chat(
            deps_of(ctx),
            prompt,
            conversation_id,
            images=images,
            files=files,
            persist_context=persist_context,
            starting_point=starting_point,
            model=model,
            dry_run=dry_run,
            progress=progress,
            wait_seconds=wait_seconds,
            turn=turn,
        )

    @server.tool(
        title="Preview",
        # Not read-only and not closed-world: after a restart it fetches a background answer from the upstream
        # and records it. Idempotent all the same: asking again shows the same thing and changes nothing more.
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
    )
    async def preview(
        ctx: Context[Deps, Any],
        conversation_id: ConversationId = "default",
        target: Annotated[
            str,
            Field(
                description=(
                    "'last' answer, 'conversation' (every turn), 'options', 'pending' attachments, 'turn:<n>', "
                    "or 'image:<image_id>' (a small thumbnail)."
                )
            ),
        ] = "last",
        format: Annotated[
            preview_step.PreviewFormat,
            Field(
                description=(
                    "'text': strings as they are, other values as JSON; 'json': always JSON; 'markdown': a readable "
                    "transcript for target='conversation'."
                )
            ),
        ] = "text",
    ) -> Annotated[CallToolResult, preview_step.PreviewResult]:
        """Show a result again (ComfyUI's Preview Any): the last answer by default."""
        result = await preview_step.preview(deps_of(ctx), conversation_id, target, format)
        content: list[Any] = [TextContent(type="text", text=result.text)]
        if result.image is not None and result.image_mime is not None:
            import base64

            content.append(
                ImageContent(type="image", data=base64.b64encode(result.image).decode(), mime_type=result.image_mime)
            )
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))
