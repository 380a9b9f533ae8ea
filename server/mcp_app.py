"""The conversation as an MCP App: one `ui://` page, the tool that opens it, and the app-only tools it calls.

`show_conversation` is the model's tool: hosts with MCP Apps render the page beside its result (the tool's
`_meta.ui.resourceUri`, plus the flat `ui/resourceUri` key older hosts read); hosts without them get the
whole conversation as text. The `app_*` tools have visibility ["app"]: hosts list them to the page, never to
the model. Each goes through the same workflow step as the model's tools (chat, set_options), with the same
checks. The page gets its images as data from `app_images`, so it needs no network access of its own.
"""

from __future__ import annotations

import base64
import functools
from importlib import resources
from typing import Annotated, Any, Literal

import anyio
from mcp.server.apps import Apps, ResourceCsp
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from tools import chat as chat_step
from tools import options as options_step
from tools.conversation_view import ConversationView, Running, build_view, referenced, rerun_of, view_text
from tools.deps import ConversationId, Deps, check_conversation_id
from tools.models import Detail, FileRecord, ImageRecord
from tools.pending import change_pending, remove_pending
from tools.recovery import refresh
from tools.turn import live

APP_URI = "ui://imagechat/conversation.html"
# The page inlines everything (a hand-written bridge, no ext-apps bundle): hosts fetch it on every render.
HTML_BUDGET = 48_000
THUMB = {"thumb": (192, 30_000), "large": (1024, 400_000)}  # longest side in px, bytes (under Claude's 1 MiB)
MAX_IMAGES_PER_CALL = 64
APP_WAIT_SECONDS = 1.0  # the page shows progress by polling, so it does not hold a request open for the answer

WaitSeconds = Annotated[
    float, Field(ge=0, le=60, description="How long to wait for the answer before returning status 'running'.")
]
APP_ONLY = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)


class ImageData(BaseModel):
    image_id: str
    mime: str
    data: str = Field(description="Base64 of a preview image (JPEG or WebP).")


class ImagesResult(BaseModel):
    images: list[ImageData]
    missing: list[str] = Field(default_factory=list, description="Ids with no stored image.")


class PendingResult(BaseModel):
    conversation_id: str
    removed: str
    kind: str
    pending_images: list[str]
    pending_files: list[str]


def page() -> str:
    return resources.files("server").joinpath("ui/conversation.html").read_text(encoding="utf-8")


def deps_of(ctx: Context[Deps, Any]) -> Deps:
    return ctx.request_context.lifespan_context


async def load_view(deps: Deps, conversation_id: str) -> ConversationView:
    check_conversation_id(conversation_id)
    conversation = await refresh(deps, conversation_id) or deps.new_conversation(conversation_id)
    image_ids, file_ids = referenced(conversation)
    images: dict[str, ImageRecord] = {}
    for image_id in image_ids:
        record = await deps.store.get_image_record(image_id)
        if record is not None:
            images[image_id] = record
    files: dict[str, FileRecord] = {}
    for file_id in file_ids:
        found = await deps.store.get_file(file_id)
        if found is not None:
            files[file_id] = found[0]
    running: dict[int, Running] = {}
    for turn in conversation.turns:
        run = live(deps, conversation_id, turn.turn) if turn.status == "running" else None
        if run is not None:
            running[turn.turn] = Running(deltas=len(run.deltas), elapsed=run.elapsed, text="".join(run.deltas))
    return build_view(conversation, images, files, running)


async def preview_image(deps: Deps, image_id: str, size: Literal["thumb", "large"]) -> ImageData | None:
    """A small rendition of a stored image, made once and kept with the image's other variants."""
    key = f"app-{size}:{image_id}"
    cached = await deps.store.get_variant(key)
    if cached is None:
        found = await deps.store.get_image(image_id)
        if found is None:
            return None
        from tools import imaging  # Pillow is imported on first use, not at start-up

        side, budget = THUMB[size]
        make = functools.partial(
            imaging.thumbnail, found[1], max_bytes=budget, max_side=side, max_pixels=deps.limits.max_pixels
        )
        data, mime = await anyio.to_thread.run_sync(make, limiter=deps.image_workers)
        await deps.store.put_variant(key, mime, data)
        cached = (mime, data)
    return ImageData(image_id=image_id, mime=cached[0], data=base64.b64encode(cached[1]).decode())


def build_apps() -> Apps:
    """The app page and its tools, for `MCPServer(extensions=[...])`."""
    apps = Apps()
    apps.add_html_resource(
        APP_URI,
        page(),
        name="conversation-app",
        title="imagechat conversation",
        description="The conversation with its images, turns, branches, options and pending attachments.",
        # No domains at all: the page loads nothing and connects nowhere; images arrive as data through the host.
        csp=ResourceCsp(connect_domains=[], resource_domains=[], frame_domains=[], base_uri_domains=[]),
        prefers_border=True,
    )
    register_view_tools(apps)
    register_action_tools(apps)
    return apps


def register_view_tools(apps: Apps) -> None:
    @apps.tool(
        resource_uri=APP_URI,
        visibility=["model", "app"],
        meta={"ui/resourceUri": APP_URI},
        title="Show the conversation",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def show_conversation(
        ctx: Context[Deps, Any], conversation_id: ConversationId = "default"
    ) -> Annotated[CallToolResult, ConversationView]:
        """Show the person the conversation (images, turns, branches, options, cost): interactive in MCP Apps
        hosts, as text elsewhere."""
        view = await load_view(deps_of(ctx), conversation_id)
        return CallToolResult(
            content=[TextContent(type="text", text=view_text(view))], structured_content=view.model_dump(mode="json")
        )

    @apps.tool(
        resource_uri=APP_URI,
        visibility=["app"],
        title="Image previews for the app",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
    async def app_images(
        ctx: Context[Deps, Any],
        image_ids: Annotated[list[str], Field(max_length=MAX_IMAGES_PER_CALL, description="Image ids to show.")],
        size: Annotated[Literal["thumb", "large"], Field(description="'thumb' (192 px) or 'large' (1024 px).")] = (
            "thumb"
        ),
    ) -> ImagesResult:
        """Small previews of loaded images as base64 data (the app has no network access of its own)."""
        deps = deps_of(ctx)
        shown: list[ImageData] = []
        missing: list[str] = []
        for image_id in dict.fromkeys(image_ids):
            found = await preview_image(deps, image_id, size)
            if found is None:
                missing.append(image_id)
            else:
                shown.append(found)
        return ImagesResult(images=shown, missing=missing)


def register_action_tools(apps: Apps) -> None:
    @apps.tool(resource_uri=APP_URI, visibility=["app"], title="Send a prompt from the app", annotations=APP_ONLY)
    async def app_chat(
        ctx: Context[Deps, Any],
        prompt: Annotated[str, Field(description="What to ask about the pending images.")],
        conversation_id: ConversationId = "default",
        starting_point: Annotated[
            int | str | None,
            Field(description="Rewind: continue from this earlier turn (or 'start') instead of the last."),
        ] = None,
        wait_seconds: WaitSeconds = APP_WAIT_SECONDS,
    ) -> chat_step.ChatResult:
        """One chat turn, as the chat tool sends it; with starting_point, a rewind to an earlier turn."""
        return await chat_step.chat(
            deps_of(ctx), prompt, conversation_id, starting_point=starting_point, wait_seconds=wait_seconds
        )

    @apps.tool(resource_uri=APP_URI, visibility=["app"], title="Re-run a turn from the app", annotations=APP_ONLY)
    async def app_rerun(
        ctx: Context[Deps, Any],
        turn: Annotated[int, Field(ge=1, description="The turn to ask again.")],
        conversation_id: ConversationId = "default",
        wait_seconds: WaitSeconds = APP_WAIT_SECONDS,
    ) -> chat_step.ChatResult:
        """Ask a turn's prompt again with its images and files, from the same earlier point, with the
        options in force now. The old turn is kept: the new one is a sibling branch."""
        deps = deps_of(ctx)
        again = rerun_of(await deps.conversation(conversation_id), turn)
        return await chat_step.chat(
            deps,
            again.prompt,
            conversation_id,
            images=again.images,
            files=again.files,
            starting_point=again.starting_point,
            wait_seconds=wait_seconds,
        )

    @apps.tool(resource_uri=APP_URI, visibility=["app"], title="Change options from the app", annotations=APP_ONLY)
    async def app_set_options(
        ctx: Context[Deps, Any],
        conversation_id: ConversationId = "default",
        model: Annotated[str | None, Field(description="Model for the next turns.")] = None,
        detail: Annotated[Detail | None, Field(description="How closely the model looks at images.")] = None,
        instructions: Annotated[str | None, Field(description="System instructions; '' clears them.")] = None,
        preset: Annotated[str | None, Field(description="Named instructions, e.g. describe.")] = None,
    ) -> options_step.OptionsResult:
        """The set_options step with the settings the app offers; values the model cannot take are refused."""
        changes = options_step.OptionChanges(model=model, detail=detail, instructions=instructions, preset=preset)
        return await options_step.set_options(deps_of(ctx), conversation_id, changes)

    @apps.tool(resource_uri=APP_URI, visibility=["app"], title="Remove a pending attachment", annotations=APP_ONLY)
    async def app_remove_attachment(
        ctx: Context[Deps, Any],
        attachment_id: Annotated[str, Field(description="A pending image or file id.")],
        conversation_id: ConversationId = "default",
    ) -> PendingResult:
        """Take an image or file off the next turn before it is sent (the loaded bytes are kept)."""
        deps = deps_of(ctx)
        conversation, kind = await change_pending(deps, conversation_id, lambda c: remove_pending(c, attachment_id))
        return PendingResult(
            conversation_id=conversation_id,
            removed=attachment_id,
            kind=kind,
            pending_images=conversation.pending_images,
            pending_files=conversation.pending_files,
        )
