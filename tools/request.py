"""Assembling one upstream request from a conversation: history, prepared images, documents.

Pure assembly plus the image cache; nothing here talks to the upstream.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Any

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import image_sizing
from tools.deps import Deps
from tools.models import Detail, Options, SentImage
from tools.plan import TurnPlan
from tools.ports import ChatRequest, FilePart, ImagePart, Message, TextPart


class ImageEstimate(BaseModel):
    image_id: str
    detail: Detail
    width: int = Field(description="Width as sent, after preparing for the model.")
    height: int
    tokens: int
    bytes: int


class TokenEstimate(BaseModel):
    text: int
    images: list[ImageEstimate]
    total: int
    note: str = (
        "Text is estimated at 4 characters a token; images by OpenAI's published rules for the "
        "model family. History replayed or chained upstream counts too."
    )


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _missing(image_id: str) -> ToolError:
    return ToolError(f"No image with id {image_id!r} is loaded. Call load_image first; its result gives the image_id.")


async def prepared_image(deps: Deps, image_id: str, options: Options) -> ImagePart:
    """The image as the model will see it: the variant load_image prepared (or an earlier turn cached) when
    there is one for this size; otherwise prepared once from the original, which is read only then."""
    record = await deps.store.get_image_record(image_id)
    if record is None:
        raise _missing(image_id)
    try:
        target = image_sizing.target(record.width, record.height, detail=options.detail, model=options.model)
    except image_sizing.DetailNotSupported as exc:
        raise ToolError(f"{exc} Change it with set_options(detail=...).") from None
    key = image_sizing.variant_key(image_id, *target.size)
    cached = await deps.store.get_variant(key)
    if cached is not None:
        mime, blob = cached
        return ImagePart(image_id, mime, blob, target.detail, target.width, target.height, target.tokens)
    found = await deps.store.get_image(image_id)
    if found is None:
        raise _missing(image_id)
    from tools import imaging  # Pillow is imported on first use, not at start-up

    prepared = await deps.image_work(
        found[1],
        functools.partial(imaging.prepare, found[1], target=target, max_pixels=deps.limits.max_pixels),
        image_id=image_id,
    )
    await deps.store.put_variant(key, prepared.mime, prepared.data)
    return ImagePart(
        image_id, prepared.mime, prepared.data, target.detail, prepared.width, prepared.height, prepared.tokens
    )


async def file_part(deps: Deps, file_id: str) -> FilePart:
    found = await deps.store.get_file(file_id)
    if found is None:
        raise ToolError(
            f"No file with id {file_id!r} is attached. Call attach_file first; its result gives the file_id."
        )
    record, data = found
    return FilePart(record.file_id, record.name, record.mime, data)


def compose(prompt: str, images: list[ImagePart], files: list[FilePart]) -> Message:
    """The seed's order: the text, then the images, then the files."""
    return Message("user", [TextPart(prompt), *images, *files])


async def user_message(deps: Deps, options: Options, prompt: str, images: list[str], files: list[str]) -> Message:
    """One user message with its images prepared for the model and its files read from the store."""
    prepared: dict[int, ImagePart] = {}

    async def prepare(index: int, image_id: str) -> None:
        prepared[index] = await prepared_image(deps, image_id, options)

    try:
        # Batches are prepared concurrently; the limiter in Deps bounds the CPU work.
        async with anyio.create_task_group() as group:
            for index, image_id in enumerate(images):
                group.start_soon(prepare, index, image_id)
    except BaseExceptionGroup as group:
        # Report the first image that failed as a plain error, as if they had been prepared one by one.
        raise group.exceptions[0] from None
    documents = [await file_part(deps, file_id) for file_id in files]
    return compose(prompt, [prepared[index] for index in range(len(images))], documents)


def assemble(plan: TurnPlan, history: list[tuple[Message, str]], message: Message) -> ChatRequest:
    """The request from its prepared parts: the replayed turns (each a user message and its answer), then
    this turn's message; or only this turn's message, chained to the stored response."""
    messages: list[Message] = []
    for asked, answer in history:
        messages += [asked, Message("assistant", [TextPart(answer)])]
    messages.append(message)
    return ChatRequest(
        options=plan.options, messages=messages, previous_response_id=plan.previous_response_id, store=plan.store
    )


async def build_request(deps: Deps, plan: TurnPlan) -> ChatRequest:
    options = plan.options
    history = [
        (await user_message(deps, options, turn.prompt, turn.images, turn.files), turn.output)
        for turn in plan.replayed_history
    ]
    return assemble(plan, history, await user_message(deps, options, plan.prompt, plan.images, plan.files))


def sent_images(request: ChatRequest) -> list[SentImage]:
    """This turn's images (the last message's) as they go to the model."""
    parts = request.messages[-1].parts if request.messages else []
    return [
        SentImage(image_id=p.image_id, width=p.width, height=p.height, detail=p.detail, tokens=p.tokens)
        for p in parts
        if isinstance(p, ImagePart)
    ]


def estimate(request: ChatRequest) -> TokenEstimate:
    text = text_tokens(request.options.instructions or "")
    images: list[ImageEstimate] = []
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, TextPart):
                text += text_tokens(part.text)
            elif isinstance(part, ImagePart):
                images.append(
                    ImageEstimate(
                        image_id=part.image_id,
                        detail=part.detail,
                        width=part.width,
                        height=part.height,
                        tokens=part.tokens,
                        bytes=len(part.data),
                    )
                )
            else:
                text += text_tokens(part.data.decode("utf-8", "replace")) if part.mime != "application/pdf" else 0
    return TokenEstimate(text=text, images=images, total=text + sum(image.tokens for image in images))


def abbreviate(value: Any) -> Any:
    """The request with every data URL cut to its type, size and a hash, for dry runs and logs."""
    if isinstance(value, dict):
        return {key: abbreviate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [abbreviate(item) for item in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > 80:
        head, _, payload = value.partition(",")
        digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
        size = len(payload) * 3 // 4
        return f"{head},<{size} bytes, sha256 {digest}>"
    return value
