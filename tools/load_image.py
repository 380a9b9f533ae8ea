"""The Load Image step: read one or more images, store them once by content, attach them to a turn."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools.attach_file import DOCUMENT_TYPES
from tools.deps import ConversationId, Deps, check_conversation_id, content_id
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
            "One image or a list: a path or file:// URL inside the allowed folders, a data:image/...;base64, URL, "
            "or image://<id> of a loaded image."
        )
    ),
]
FramesArg = Annotated[
    Frames,
    Field(description=("Animated images: the 'first' frame, or 'all' frames (sampled evenly up to a cap) as a batch.")),
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
    notes: list[str] = Field(default_factory=list, description="Which frames of an animation were taken.")


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
    # Each sampled frame is a still of its own; its record still says how many frames the source had.
    return [
        (
            replace(image_decode.inspect_image(blob, max_pixels=limits.max_pixels, max_frames=1), frames=info.frames),
            blob,
        )
        for blob in blobs
    ]


def document_kind(name: str, data: bytes) -> str | None:
    """What kind of document (PDF, text) the bytes are, when they are one that attach_file takes."""
    if data.lstrip()[:5] == b"%PDF-":
        return "PDF"
    suffix = PurePosixPath(name).suffix.lower()
    return suffix.lstrip(".").upper() if suffix in DOCUMENT_TYPES else None


def frames_note(source: str, frames: Frames, count: int, max_frames: int) -> str | None:
    """What was taken from an animation of `count` frames."""
    if count <= 1:
        return None
    if frames == "first":
        return f"{source_label(source)} has {count} frames: only the first was taken (frames='all' takes a batch)."
    from tools.imaging import frame_indices

    taken = frame_indices(count, max_frames)
    which = ", ".join(str(index + 1) for index in taken)
    return f"{source_label(source)}: frames='all' took {len(taken)} of {count} frames (frames {which})."


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
    document = document_kind(read.name, read.data)
    if document:
        raise ToolError(
            f"{source_label(source)} is a {document} document, not an image: attach it with attach_file (this "
            "source as it is), then chat sends it with the images."
        )
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
            image_id=content_id("img", blob),
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
    notes: list[str] = []
    for item in sources:
        if not isinstance(item, str) or not item.strip():
            raise ToolError("Every source must be a non-empty string.")
        read = await read_images(deps, item.strip(), frames)
        loaded.extend(read)
        note = frames_note(item.strip(), frames, read[0][0].frames, deps.limits.max_frames)
        if note and not item.strip().startswith(IMAGE_SCHEME):
            notes.append(note)
    for record, blob in loaded:
        if blob is not None:
            await deps.store.put_image(record, blob)
    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id)
        for record, _ in loaded:
            if record.image_id not in conversation.pending_images:
                conversation.pending_images.append(record.image_id)
        conversation.updated_at = time.time()
        await deps.store.put_conversation(conversation)
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
        notes=notes,
    )
