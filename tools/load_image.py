"""The Load Image step: read one or more images, store them once by content, attach them to a turn."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools.deps import ConversationId, Deps, check_conversation_id, content_id_of
from tools.models import ImageRecord
from tools.sanitize import clean_text
from tools.source_label import source_label

if TYPE_CHECKING:
    from tools import image_decode

Frames = Literal["first", "all"]
IMAGE_SCHEME = "image://"

# The step's arguments; the MCP tool's parameters are these (server/mcp_tools.py).
SourceArg = Annotated[
    str | list[str],
    Field(
        description=(
            "One image or a list: a file path, a file:// URL, a data:image/...;base64, URL, or image://<id> of "
            "an image loaded before. Local files must be inside the allowed folders."
        )
    ),
]
FramesArg = Annotated[
    Frames,
    Field(
        description=(
            "For animated images: 'first' frame only, or 'all' frames (sampled evenly up to a cap) as a batch."
        )
    ),
]


class LoadedImage(BaseModel):
    image_id: str
    width: int
    height: int
    format: str
    frames: int = Field(
        description="Frames in the source; an animation loaded with frames='all' gives one image per sampled frame."
    )
    bytes: int
    resource_uri: str


class LoadImageResult(BaseModel):
    conversation_id: str
    images: list[LoadedImage]
    pending_images: int = Field(description="Images now waiting to be sent with the next chat turn.")


def _decode(data: bytes, frames: Frames, deps: Deps) -> list[tuple[image_decode.ImageInfo, bytes]]:
    from tools import image_decode, imaging  # Pillow is imported on first use, not at start-up

    limits = deps.limits
    info = image_decode.inspect_image(data, max_pixels=limits.max_pixels, max_frames=limits.max_frames)
    blobs = imaging.load_frames(data, mode=frames, max_frames=limits.max_frames, max_pixels=limits.max_pixels)
    if frames == "first":
        # The first frame stands for the whole animation: report how many frames the source had.
        if blobs[0] is not data:
            still = image_decode.inspect_image(blobs[0], max_pixels=limits.max_pixels, max_frames=1)
            info = replace(still, frames=info.frames)
        return [(info, blobs[0])]
    return [(image_decode.inspect_image(blob, max_pixels=limits.max_pixels, max_frames=1), blob) for blob in blobs]


async def read_images(deps: Deps, source: str, frames: Frames) -> list[tuple[ImageRecord, bytes | None]]:
    """One source as stored records; bytes are None for an `image://` id that is already stored."""
    if source.startswith(IMAGE_SCHEME):
        image_id = source[len(IMAGE_SCHEME) :]
        record = await deps.store.get_image_record(image_id)
        if record is None:
            raise ToolError(
                f"No image with id {image_id!r} is loaded. Call load_image with a path or URL first; "
                "its result gives the image_id."
            )
        return [(record, None)]
    read = await deps.reader.read(source, max_bytes=deps.limits.max_image_bytes, kind="image")
    from tools import image_decode

    try:
        decoded = await anyio.to_thread.run_sync(
            functools.partial(_decode, read.data, frames, deps), limiter=deps.image_workers
        )
    except image_decode.ImageRejected as exc:
        raise ToolError(f"Could not load {source_label(source)}: {exc}") from None
    records: list[tuple[ImageRecord, bytes | None]] = []
    for info, blob in decoded:
        record = ImageRecord(
            image_id=await content_id_of("img", blob),
            width=info.width,
            height=info.height,
            format=info.format,
            mime=info.mime,
            frames=info.frames,
            bytes=len(blob),
            name=clean_text(read.name) or "unnamed",  # shown back in previews: no hidden characters
        )
        records.append((record, blob))
    return records


async def load_image(
    deps: Deps, source: SourceArg, conversation_id: ConversationId = "default", frames: FramesArg = "first"
) -> LoadImageResult:
    sources = [source] if isinstance(source, str) else list(source)
    if not sources:
        raise ToolError("source is empty: give a path, a file:// or data: URL, or image://<id>.")
    check_conversation_id(conversation_id)
    # Read every source before storing anything, so one bad source leaves the conversation as it was.
    loaded: list[tuple[ImageRecord, bytes | None]] = []
    for item in sources:
        if not isinstance(item, str) or not item.strip():
            raise ToolError("Every source must be a non-empty string.")
        loaded.extend(await read_images(deps, item.strip(), frames))
    for record, blob in loaded:
        if blob is not None:
            await deps.store.put_image(record, blob)
    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id, with_turns=False)
        for record, _ in loaded:
            if record.image_id not in conversation.pending_images:
                conversation.pending_images.append(record.image_id)
            conversation.names.setdefault(record.image_id, record.name)
        conversation.updated_at = time.time()
        await deps.store.put_changes(conversation)
    return LoadImageResult(
        conversation_id=conversation_id,
        images=[
            LoadedImage(
                image_id=record.image_id,
                width=record.width,
                height=record.height,
                format=record.format,
                frames=record.frames,
                bytes=record.bytes,
                resource_uri=f"{IMAGE_SCHEME}{record.image_id}",
            )
            for record, _ in loaded
        ],
        pending_images=len(conversation.pending_images),
    )
