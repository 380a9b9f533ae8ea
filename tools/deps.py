"""What every workflow step is handed: the ports, the limits and the presets."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, TypeVar

import anyio
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from tools.image_guard import ImageGuard, PixelBudget
from tools.models import Conversation, Options
from tools.ports import SourceReader, Store, Upstream
from tools.running import RunningTurns

T = TypeVar("T")
MAX_CONVERSATION_ID = 128
# Created on first use: the server's instructions say so once, for every tool that takes one.
ConversationId = Annotated[str, Field(max_length=MAX_CONVERSATION_ID)]


@dataclass(frozen=True)
class Limits:
    """The limits the steps enforce. The configurable ones have no defaults here: the server builds them from
    its settings (server/settings.py SPECS holds each default once), field by field under the same name."""

    max_image_bytes: int
    max_file_bytes: int
    max_pixels: int
    # Each image operation's deadline (seconds) and the decoded pixels all of them may hold at once.
    image_seconds: float
    pixel_budget: int
    max_frames: int
    max_prompt_chars: int
    turn_timeout: float  # seconds a chat turn may take in all (IMAGECHAT_TURN_TIMEOUT)
    # Not a setting: a fixed guard against a runaway list of image ids.
    max_images_per_turn: int = 64


@dataclass
class Deps:
    store: Store
    reader: SourceReader
    upstream: Upstream
    default_model: str
    presets: Mapping[str, str]
    limits: Limits
    # How long chat waits before answering "running" (IMAGECHAT_WAIT_SECONDS).
    wait_seconds: float
    # Turns being generated in this process, the task group they run in (owned by the server's lifespan, so a
    # generation outlives the request that started it) and this process's owner id, made once per Deps.
    turns: RunningTurns = field(default_factory=lambda: RunningTurns())
    # Where workflow files' LoadImage / OpenAIInputFiles names are looked up (ComfyUI's input folder).
    input_dir: Path | None = None
    # Pillow releases the GIL, but 2-core laptops still choke on ten 24 MP decodes at once.
    image_workers: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(4))
    # How every image operation runs: admitted by its pixels, under a deadline, stopped when its caller is gone.
    images: ImageGuard = field(init=False)

    def __post_init__(self) -> None:
        self.images = ImageGuard(PixelBudget(self.limits.pixel_budget), self.limits.image_seconds, self.image_workers)

    async def image_work(self, data: bytes, work: Callable[[], T], *, image_id: str | None = None) -> T:
        """`work()` (a Pillow decode of `data`) run the bounded way: see `tools.image_guard`.

        With `image_id` (a stored image being prepared or previewed), a refusal becomes a ToolError that names
        it; without, `ImageRejected` goes up for the caller to word."""
        from tools import image_decode  # Pillow is imported on first use, not at start-up

        max_pixels = self.limits.max_pixels
        try:
            return await self.images.run(lambda: image_decode.decoded_pixels(data, max_pixels=max_pixels), work)
        except image_decode.ImageRejected as exc:
            if image_id is None:
                raise
            raise ToolError(f"Could not read image {image_id}: {exc}") from None

    def new_conversation(self, conversation_id: str) -> Conversation:
        return Conversation(id=conversation_id, options=Options(model=self.default_model))

    async def conversation(self, conversation_id: str, *, with_turns: bool = True) -> Conversation:
        """The conversation, created on first use (not stored until a step changes it); with_turns=False reads
        only its own record (options, pending attachments, names) and leaves `turns` empty: what a step that
        changes none of the turns needs, at a cost that does not grow with the answers."""
        check_conversation_id(conversation_id)
        found = await self.store.get_conversation(conversation_id, with_turns=with_turns)
        return found if found is not None else self.new_conversation(conversation_id)


def content_id(prefix: str, data: bytes) -> str:
    return id_of_digest(prefix, hashlib.sha256(data).hexdigest())


def id_of_digest(prefix: str, digest: str) -> str:
    """The content id of bytes whose sha256 (hex) is `digest`: the blob key, shortened, with a prefix."""
    return f"{prefix}_{digest[:24]}"


# Hashing this much takes longer than a hand-off to a worker thread (sha256 runs at 0.3 to 2 GB/s).
HASH_INLINE_BYTES = 64 * 1024


async def content_id_of(prefix: str, data: bytes) -> str:
    """`content_id`, off the event loop for large data (hashlib releases the GIL, so it runs in parallel)."""
    return id_of_digest(prefix, await digest_of(data))


async def digest_of(data: bytes) -> str:
    """The sha256 of `data` in hex (its blob key), off the event loop for large data."""
    if len(data) <= HASH_INLINE_BYTES:
        return hashlib.sha256(data).hexdigest()
    return await anyio.to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())


def check_conversation_id(conversation_id: str) -> None:
    if not conversation_id or len(conversation_id) > MAX_CONVERSATION_ID or not conversation_id.isprintable():
        raise ToolError(
            f"conversation_id must be 1 to {MAX_CONVERSATION_ID} printable characters, e.g. 'default' or 'cat-photos'."
        )
