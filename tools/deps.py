"""What every workflow step is handed: the ports, the limits and the presets."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from tools.models import Conversation, Options
from tools.ports import SourceReader, Store, Upstream
from tools.running import RunningTurns


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int = 50 * 1024 * 1024
    max_file_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_frames: int = 16
    max_prompt_chars: int = 100_000
    max_images_per_turn: int = 64


@dataclass
class Deps:
    store: Store
    reader: SourceReader
    upstream: Upstream
    default_model: str
    presets: Mapping[str, str]
    limits: Limits = field(default_factory=Limits)
    # How long chat waits before answering "running" (IMAGECHAT_WAIT_SECONDS).
    wait_seconds: float = 50.0
    # Turns being generated in this process, the task group they run in (owned by the server's lifespan, so a
    # generation outlives the request that started it) and this process's owner id, made once per Deps.
    turns: RunningTurns = field(default_factory=lambda: RunningTurns())
    # Where workflow files' LoadImage / OpenAIInputFiles names are looked up (ComfyUI's input folder).
    input_dir: Path | None = None
    # Pillow releases the GIL, but 2-core laptops still choke on ten 24 MP decodes at once.
    image_workers: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(4))

    def new_conversation(self, conversation_id: str) -> Conversation:
        return Conversation(id=conversation_id, options=Options(model=self.default_model))

    async def conversation(self, conversation_id: str) -> Conversation:
        """The conversation, created on first use (not stored until a step changes it)."""
        check_conversation_id(conversation_id)
        found = await self.store.get_conversation(conversation_id)
        return found if found is not None else self.new_conversation(conversation_id)


def content_id(prefix: str, data: bytes) -> str:
    return f"{prefix}_{hashlib.sha256(data).hexdigest()[:24]}"


def check_conversation_id(conversation_id: str) -> None:
    if not conversation_id or len(conversation_id) > 128 or not conversation_id.isprintable():
        raise ToolError("conversation_id must be 1 to 128 printable characters, e.g. 'default' or 'cat-photos'.")
