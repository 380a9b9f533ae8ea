"""The Load Image step: read one or more images, store them once by content, attach them to a turn."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import image_sizing
from tools.attach_file import DOCUMENT_TYPES
from tools.deps import ConversationId, Deps, Limits, check_conversation_id, content_id, digest_of, id_of_digest
from tools.image_mime import sniff_mime
from tools.image_sizing import Target, variant_key
from tools.models import IMAGE_SCHEME, ImageRecord, Options
from tools.pending import check_room
from tools.sanitize import clean_text
from tools.source_label import source_label

if TYPE_CHECKING:
    from tools import image_decode
    from tools.imaging import Prepared

log = logging.getLogger(__name__)
Frames = Literal["first", "all"]

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
    pending_images: int
    notes: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Loaded:
    """One image read from a source, ready to store."""

    record: ImageRecord
    blob: bytes | None  # None: the bytes are stored already
    variant: Prepared | None = None  # prepared for the conversation's model and detail while it was checked
    key: str | None = None  # the blob's sha256 when it was computed already (the original's)


@dataclass(frozen=True)
class _Checked:
    image_id: str | None  # None: the source's own bytes, whose id is known once they are hashed
    info: image_decode.ImageInfo
    blob: bytes
    variant: Prepared | None


Sizing = Callable[[int, int], Target | None]
# Formats Pillow decodes by reading the file in blocks, so that a decode can be stopped between two of them.
STOPPABLE = frozenset({"image/jpeg", "image/png"})


def sizing_for(options: Options | None) -> Sizing:
    """The size to prepare an image at for `options`' model and detail; None when there is nothing to prepare
    for (no conversation yet, or a detail the model refuses: chat says what to change)."""

    def size(width: int, height: int) -> Target | None:
        if options is None:
            return None
        try:
            return image_sizing.target(width, height, detail=options.detail, model=options.model)
        except image_sizing.DetailNotSupported:
            return None

    return size


def _decode(data: bytes, frames: Frames, limits: Limits, sizing: Sizing) -> list[_Checked]:
    from tools import image_decode, imaging  # Pillow is imported on first use, not at start-up

    info = image_decode.inspect_image(data, max_pixels=limits.max_pixels, max_frames=limits.max_frames)
    if info.frames == 1:
        target = sizing(info.width, info.height)
        if target is None:
            image_decode.decode_check(data, max_pixels=limits.max_pixels)
            return [_Checked(None, info, data, None)]
        # One decode is both the check (every byte is entropy-decoded, so a truncated file fails here) and the
        # preparation for the model: chat finds the variant and never decodes the original.
        prepared = imaging.prepare(data, target=target, max_pixels=limits.max_pixels, info=info)
        return [_Checked(None, info, data, prepared)]
    out = []
    for blob in imaging.load_frames(data, mode=frames, max_frames=limits.max_frames, max_pixels=limits.max_pixels):
        still = image_decode.inspect_image(blob, max_pixels=limits.max_pixels, max_frames=1)
        # The first frame stands for the whole animation, and each sampled frame is a still of its own: either
        # way the record says how many frames the source had.
        still = replace(still, frames=info.frames)
        target = sizing(still.width, still.height)
        variant = None if target is None else imaging.prepare(blob, target=target, max_pixels=limits.max_pixels)
        out.append(_Checked(content_id("img", blob), still, blob, variant))
    return out


async def _known(deps: Deps, record: ImageRecord, data: bytes, sizing: Sizing) -> Loaded:
    """An image stored before (so checked before): only a variant for a new model or detail is prepared."""
    target = sizing(record.width, record.height)
    if target is None or await deps.store.get_variant(variant_key(record.image_id, *target.size)) is not None:
        return Loaded(record, None)
    from tools import image_decode, imaging

    try:
        variant = await deps.image_work(
            data, functools.partial(imaging.prepare, data, target=target, max_pixels=deps.limits.max_pixels)
        )
    except image_decode.ImageRejected:
        return Loaded(record, None)  # stored under older rules: chat reports it when it is sent
    return Loaded(record, None, variant)


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
    """One source as stored records; bytes are None for an image that is already stored."""
    return [(item.record, item.blob) for item in await read_loaded(deps, source, frames, sizing_for(None))]


@dataclass(frozen=True)
class _Hashed:
    key: str  # the sha256 of the source's bytes
    known: ImageRecord | None  # stored before: nothing of the decode is used
    checked: list[_Checked]  # the decode's images (empty when known)


async def hashed_beside_decode(
    deps: Deps, data: bytes, work: Callable[[], list[_Checked]], staged: list[str] | None
) -> _Hashed:
    """The sha256 of a source's bytes and `work` (their one decode), side by side on two cores.

    The decode starts at once, and the hash beside it says whether the image is stored already. If it is, the
    decode is stopped at its next read (milliseconds in) and neither its result nor its refusal is used: a file
    loaded again costs its hash, not a decode. If it is new, with `staged` the original is written out while
    the decode goes on (Blobs.stage, so the write and its wait for the disk cost no time) and its key is added
    to `staged`, for load_image to drop if the image is not stored in the end.

    Only a JPEG or PNG decode starts before the hash: Pillow reads those in blocks, so they stop at once. WebP,
    AVIF and compressed TIFF are decoded by C in one go, which cannot be stopped (tools/image_guard.py), so
    for them the decode waits for the hash, and a file loaded again is never decoded."""
    early = sniff_mime(data) in STOPPABLE
    decoded: list[list[_Checked]] = []
    refused: list[Exception] = []
    decoding = anyio.CancelScope()

    async def decode() -> None:
        with decoding:
            try:
                decoded.append(await deps.image_work(data, work))
            except Exception as exc:  # raised below, once the hash says the image is new
                refused.append(exc)

    async with anyio.create_task_group() as group:
        if early:
            group.start_soon(decode)  # first: its thread starts before the hash's and the write's
        key = await digest_of(data)  # off the event loop for large data, like the decode
        known = await deps.store.get_image_record(id_of_digest("img", key))
        if known is not None:
            decoding.cancel()
        else:
            if not early:
                group.start_soon(decode)
            if staged is not None:
                staged.append(key)
                try:
                    await deps.store.blobs.stage(data, key)
                except OSError as exc:  # the put writes it again, and reports a failure then
                    log.warning("could not write an image ahead of its check: %s", exc)
    if known is not None:
        return _Hashed(key, known, [])
    if refused:
        raise refused[0]
    return _Hashed(key, None, decoded[0])


async def read_loaded(
    deps: Deps, source: str, frames: Frames, sizing: Sizing, staged: list[str] | None = None
) -> list[Loaded]:
    """One source as images to store, each checked and prepared at `sizing` in one decode. With `staged`, the
    original is written out during the decode, and its key added there (see hashed_beside_decode)."""
    if source.startswith(IMAGE_SCHEME):
        image_id = source[len(IMAGE_SCHEME) :]
        record = await deps.store.get_image_record(image_id)
        if record is None:
            raise ToolError(
                f"No image with id {image_id!r} is loaded. Call load_image with a path or URL first; "
                "its result gives the image_id."
            )
        return [Loaded(record, None)]
    read = await deps.reader.read(source, max_bytes=deps.limits.max_image_bytes, kind="image")
    document = document_kind(read.name, read.data)
    if document:
        raise ToolError(
            f"{source_label(source)} is a {document} document, not an image: attach it with attach_file (this "
            "source as it is), then chat sends it with the images."
        )
    from tools import image_decode

    work = functools.partial(_decode, read.data, frames, deps.limits, sizing)
    name = clean_text(read.name) or "unnamed"  # shown back in previews: no hidden characters
    try:
        hashed = await hashed_beside_decode(deps, read.data, work, staged)
    except image_decode.ImageRejected as exc:
        raise ToolError(f"Could not load {source_label(source)}: {exc}") from None
    if hashed.known is not None:
        # The same bytes again, perhaps under another name: the conversation keeps the name it was loaded under.
        return [await _known(deps, hashed.known.model_copy(update={"name": name}), read.data, sizing)]
    key, checked, image_id = hashed.key, hashed.checked, id_of_digest("img", hashed.key)
    return [
        Loaded(
            ImageRecord(
                image_id=item.image_id or image_id,
                width=item.info.width,
                height=item.info.height,
                format=item.info.format,
                mime=item.info.mime,
                frames=item.info.frames,
                bytes=len(item.blob),
                name=name,
            ),
            item.blob,
            item.variant,
            key if item.image_id is None else None,  # a frame of an animation is other bytes
        )
        for item in checked
    ]


async def store_loaded(deps: Deps, loaded: list[Loaded]) -> None:
    """The originals, then the variants prepared from them (so a variant never outlives a missing original)."""
    for item in loaded:
        if item.blob is not None:
            await deps.store.put_image(item.record, item.blob, key=item.key)
        if item.variant is not None:
            variant = item.variant
            await deps.store.put_variant(
                variant_key(item.record.image_id, variant.width, variant.height), variant.mime, variant.data
            )


async def load_image(
    deps: Deps, source: SourceArg, conversation_id: ConversationId = "default", frames: FramesArg = "first"
) -> LoadImageResult:
    sources = [source] if isinstance(source, str) else list(source)
    if not sources:
        raise ToolError("source is empty: give a path, a file:// or data: URL, or image://<id>.")
    check_conversation_id(conversation_id)
    if not all(isinstance(item, str) and item.strip() for item in sources):
        raise ToolError("Every source must be a non-empty string.")
    # Images are prepared for the conversation's model and detail as they are checked, in the same decode.
    sizing = sizing_for(None)
    if any(not item.strip().startswith(IMAGE_SCHEME) for item in sources):
        sizing = sizing_for((await deps.conversation(conversation_id, with_turns=False)).options)
    # Read every source before storing anything, so one bad source leaves the conversation as it was.
    loaded: list[Loaded] = []
    notes: list[str] = []
    staged: list[str] = []  # originals written out during their check: whatever is not stored is dropped
    try:
        for item in sources:
            found = await read_loaded(deps, item.strip(), frames, sizing, staged)
            loaded.extend(found)
            note = frames_note(item.strip(), frames, found[0].record.frames, deps.limits.max_frames)
            if note and not item.strip().startswith(IMAGE_SCHEME):
                notes.append(note)
        await store_loaded(deps, loaded)
    finally:
        with anyio.CancelScope(shield=True):
            for key in staged:
                await deps.store.blobs.unstage(key)
    records = [item.record for item in loaded]
    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id, with_turns=False)
        check_room(conversation, [record.image_id for record in records], deps.limits.max_images_per_turn)
        for record in records:
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
            for record in records
        ],
        pending_images=len(conversation.pending_images),
        notes=notes,
    )
