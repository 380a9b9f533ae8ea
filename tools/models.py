"""The domain: a conversation about images, its options, turns and attachments.

These are plain pydantic models so that every store keeps them as JSON and every tool returns them
as structured content without a translation layer.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

Detail = Literal["auto", "low", "high", "original"]
Truncation = Literal["auto", "disabled"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
ResponseFormat = Literal["text", "json"]
TurnStatus = Literal["completed", "incomplete", "running", "failed", "cancelled"]

DEFAULT_MAX_OUTPUT_TOKENS = 4096


class Options(BaseModel):
    """What the Advanced Options node sets, plus what it lacks (sampling, detail, JSON output)."""

    model: str = Field(description="The model that answers, e.g. gpt-4.1-mini, gpt-4o, o3, gpt-5.")
    instructions: str | None = Field(default=None, description="System instructions sent with every turn.")
    preset: str | None = Field(default=None, description="The preset the instructions came from, if any.")
    truncation: Truncation = "auto"
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    reasoning_effort: ReasoningEffort | None = None
    temperature: float | None = None
    top_p: float | None = None
    detail: Detail = "auto"
    response_format: ResponseFormat = "text"


class ImageRecord(BaseModel):
    """An image as loaded: the original bytes are stored once under this content-derived id."""

    image_id: str
    width: int
    height: int
    format: str
    mime: str
    frames: int = 1
    bytes: int
    name: str = ""


class FileRecord(BaseModel):
    """A document for the Input Files step, stored once under a content-derived id."""

    file_id: str
    name: str
    mime: str
    bytes: int


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class Turn(BaseModel):
    """One prompt and its answer. Turns are never deleted: a rewind starts a branch from `parent`."""

    turn: int
    parent: int | None = Field(description="The turn this one continues from; null for a fresh start.")
    prompt: str
    images: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    output: str = ""
    status: TurnStatus = "completed"
    incomplete_reason: str | None = None
    model: str = ""
    response_id: str | None = None
    stored: bool = Field(default=False, description="Whether the upstream keeps the response for chaining.")
    api: str = "responses"
    usage: Usage | None = None
    instructions: str | None = None
    background: bool = Field(default=False, description="Sent in Responses background mode: retrievable by id.")
    error: str | None = Field(default=None, description="Why a running turn failed.")
    created_at: float = Field(default_factory=time.time)

    @property
    def usable(self) -> bool:
        """Whether later turns can continue from this one."""
        return self.status in ("completed", "incomplete")


class Conversation(BaseModel):
    id: str
    options: Options
    turns: list[Turn] = Field(default_factory=list)
    pending_images: list[str] = Field(default_factory=list)
    pending_files: list[str] = Field(default_factory=list)
    # The name each image or file was loaded under in this conversation: the same bytes loaded as a.png here
    # and as b.png in another conversation are one stored image, shown under each conversation's own name.
    names: dict[str, str] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    def get_turn(self, number: int) -> Turn | None:
        for turn in self.turns:
            if turn.turn == number:
                return turn
        return None

    def last_turn(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def last_usable_turn(self) -> Turn | None:
        usable = [turn for turn in self.turns if turn.usable]
        return usable[-1] if usable else None

    def next_number(self) -> int:
        return max((turn.turn for turn in self.turns), default=0) + 1

    def history(self, parent: int | None) -> list[Turn]:
        """The chain of turns that leads to `parent`, oldest first."""
        chain: list[Turn] = []
        seen: set[int] = set()
        current = parent
        while current is not None and current not in seen:
            seen.add(current)
            turn = self.get_turn(current)
            if turn is None:
                break
            chain.append(turn)
            current = turn.parent
        chain.reverse()
        return chain
