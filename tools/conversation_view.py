"""What the conversation app shows: a conversation read into one plain value, and the same as text.

The MCP App (server/mcp_app.py) renders the value; hosts without Apps get the text, which says everything the
app shows except the pixels. Pure functions: the caller looks up the image and file records and the progress
of running turns, so this module is tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import pricing
from tools.models import Conversation, FileRecord, ImageRecord, Options, Turn, Usage


@dataclass(frozen=True)
class Running:
    """How far a turn that is being generated in this process has got."""

    deltas: int
    elapsed: float
    text: str


class ImageView(BaseModel):
    image_id: str
    name: str
    width: int
    height: int
    format: str


class FileView(BaseModel):
    file_id: str
    name: str
    mime: str
    bytes: int


class TurnView(BaseModel):
    turn: int
    parent: int | None = Field(description="The turn this one continued from; null for a fresh start.")
    branched: bool = Field(description="True when it continued from an earlier turn than the one shown before it.")
    prompt: str
    output: str
    status: str
    model: str
    images: list[str]
    files: list[str]
    usage: Usage | None = None
    cost_usd: float | None = Field(default=None, description="From the usage and list prices; null if unknown.")
    error: str | None = None
    incomplete_reason: str | None = None
    progress: str | None = Field(default=None, description="For a running turn: how far it has got.")


class ConversationView(BaseModel):
    conversation_id: str
    options: Options
    turns: list[TurnView]
    pending_images: list[str]
    pending_files: list[str]
    images: dict[str, ImageView] = Field(description="Every image the turns and pending list name, by id.")
    files: dict[str, FileView] = Field(description="Every file the turns and pending list name, by id.")
    running: bool = Field(description="Whether a turn is still being answered (the app polls while it is).")
    total_cost_usd: float | None = None


def cost_of(model: str, usage: Usage | None) -> float | None:
    if usage is None:
        return None
    prices = pricing.estimate(model, usage.input_tokens, usage.output_tokens)
    return None if prices is None else round(prices.input + prices.output_max, 9)


def progress_of(running: Running | None) -> str:
    if running is None:
        return "running (started elsewhere; refresh to see it finish)"
    if running.deltas:
        return f"receiving answer: {running.deltas} tokens so far ({running.elapsed:.0f} s)"
    return f"waiting for the model ({running.elapsed:.0f} s)"


def turn_view(turn: Turn, previous: int | None, running: Running | None) -> TurnView:
    live = turn.status == "running"
    output = running.text if live and running is not None and running.text else turn.output
    return TurnView(
        turn=turn.turn,
        parent=turn.parent,
        branched=turn.parent is not None and turn.parent != previous,
        prompt=turn.prompt,
        output=output,
        status=turn.status,
        model=turn.model,
        images=list(turn.images),
        files=list(turn.files),
        usage=turn.usage,
        cost_usd=cost_of(turn.model, turn.usage),
        error=turn.error,
        incomplete_reason=turn.incomplete_reason,
        progress=progress_of(running) if live else None,
    )


def build_view(
    conversation: Conversation,
    images: Mapping[str, ImageRecord],
    files: Mapping[str, FileRecord],
    running: Mapping[int, Running],
) -> ConversationView:
    """The conversation as the app shows it. `images`/`files` hold the records found (missing ones are left out)."""
    turns: list[TurnView] = []
    previous: int | None = None
    for turn in conversation.turns:
        turns.append(turn_view(turn, previous, running.get(turn.turn)))
        previous = turn.turn
    costs = [t.cost_usd for t in turns if t.cost_usd is not None]
    return ConversationView(
        conversation_id=conversation.id,
        options=conversation.options,
        turns=turns,
        pending_images=list(conversation.pending_images),
        pending_files=list(conversation.pending_files),
        images={
            key: ImageView(image_id=key, name=r.name, width=r.width, height=r.height, format=r.format)
            for key, r in images.items()
        },
        files={key: FileView(file_id=key, name=r.name, mime=r.mime, bytes=r.bytes) for key, r in files.items()},
        running=any(t.status == "running" for t in turns),
        total_cost_usd=round(sum(costs), 9) if costs else None,
    )


def referenced(conversation: Conversation) -> tuple[list[str], list[str]]:
    """The image ids and file ids the view names, each once, in order of appearance."""
    image_ids = [i for t in conversation.turns for i in t.images] + conversation.pending_images
    file_ids = [f for t in conversation.turns for f in t.files] + conversation.pending_files
    return list(dict.fromkeys(image_ids)), list(dict.fromkeys(file_ids))


def image_label(view: ConversationView, image_id: str) -> str:
    found = view.images.get(image_id)
    if found is None:
        return image_id
    return f"{found.name or image_id} ({found.width}x{found.height} {found.format})"


def file_label(view: ConversationView, file_id: str) -> str:
    found = view.files.get(file_id)
    return f"{found.name} ({found.bytes} bytes)" if found else file_id


def options_lines(options: Options) -> list[str]:
    limit = "the upstream's default" if options.max_output_tokens is None else f"{options.max_output_tokens} tokens"
    line = f"Model {options.model}, detail {options.detail}, max output {limit}"
    if options.preset:
        line += f", preset {options.preset}"
    lines = [line + "."]
    if options.instructions:
        lines.append(f"Instructions: {options.instructions}")
    return lines


def turn_heading(turn: TurnView) -> str:
    facts = [turn.model or "model unknown", turn.status]
    if turn.parent is not None:
        facts.append(f"continued from turn {turn.parent}" if turn.branched else f"after turn {turn.parent}")
    if turn.usage is not None:
        facts.append(f"{turn.usage.input_tokens} in / {turn.usage.output_tokens} out tokens")
    if turn.cost_usd is not None:
        facts.append(f"${turn.cost_usd:.6f}")
    return f"## Turn {turn.turn} ({', '.join(facts)})"


def turn_lines(view: ConversationView, turn: TurnView) -> list[str]:
    lines = [turn_heading(turn), "", f"Prompt: {turn.prompt}"]
    attached = [image_label(view, i) for i in turn.images] + [file_label(view, f) for f in turn.files]
    if attached:
        lines.append("Sent with: " + "; ".join(attached))
    if turn.progress:
        lines.append(f"Status: {turn.progress}")
    if turn.error:
        lines.append(f"Failed: {turn.error}")
    if turn.incomplete_reason:
        lines.append(f"Incomplete: {turn.incomplete_reason}")
    lines += ["", turn.output or "(no answer yet)", ""]
    return lines


def view_text(view: ConversationView) -> str:
    """Everything the app shows, as text for hosts that do not render MCP Apps."""
    lines = [f"# Conversation {view.conversation_id}", "", *options_lines(view.options), ""]
    pending = [image_label(view, i) for i in view.pending_images] + [file_label(view, f) for f in view.pending_files]
    lines += ["Waiting for the next turn: " + ("; ".join(pending) if pending else "nothing"), ""]
    if not view.turns:
        lines += ["No turns yet: call chat to ask about the images.", ""]
    for turn in view.turns:
        lines += turn_lines(view, turn)
    if view.total_cost_usd is not None:
        lines += [f"Total cost: ${view.total_cost_usd:.6f} (list prices)", ""]
    return "\n".join(lines).rstrip() + "\n"


@dataclass(frozen=True)
class Rerun:
    """The chat arguments that ask a turn's question again, from the same point, with the same attachments."""

    prompt: str
    images: list[str]
    files: list[str]
    starting_point: int | str


def rerun_of(conversation: Conversation, number: int) -> Rerun:
    turn = conversation.get_turn(number)
    if turn is None:
        known = ", ".join(str(t.turn) for t in conversation.turns) or "none yet"
        raise ToolError(f"{conversation.id!r} has no turn {number} (turns: {known}).")
    if turn.status == "running":
        raise ToolError(f"Turn {number} is still running: wait for it before running it again.")
    start: int | str = "start" if turn.parent is None else turn.parent
    return Rerun(prompt=turn.prompt, images=list(turn.images), files=list(turn.files), starting_point=start)
