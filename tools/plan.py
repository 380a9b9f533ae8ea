"""Planning a chat turn: what one chat call means against the conversation as it is now.

A pure function of the conversation and the call, nothing read or written elsewhere: which images and
files go with the turn, which earlier turn it continues from, the options it runs with (a per-turn model
drops what that model cannot take, with a note) and whether the history is replayed or the upstream's
stored response is chained. The turn (tools/turn.py) plans under the conversation's turn lock; a dry run
plans without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mcp.server.mcpserver.exceptions import ToolError

from tools import image_sizing, model_rules
from tools.models import Conversation, Options, Turn, image_ref

StartingPoint = int | str | None


@dataclass(frozen=True)
class ChatCall:
    """What one chat call asked for; None for images or files means "the pending ones"."""

    prompt: str
    images: list[str] | None = None
    files: list[str] | None = None
    persist_context: bool = True
    starting_point: StartingPoint = None
    model: str | None = None
    # Whether the upstream keeps the response (None: a turn that continues the conversation is kept, a
    # stand-alone one is not). ComfyUI's chat node always asks for it, so a workflow's turns say True.
    store: bool | None = None


@dataclass(frozen=True)
class TurnPlan:
    """One turn worked out against the conversation: everything its request and its record need."""

    prompt: str
    options: Options
    images: list[str]
    files: list[str]
    parent: int | None
    history: list[Turn]  # the turns this one continues, oldest first
    previous_response_id: str | None  # continue the upstream's stored response instead of replaying history
    takes_pending: tuple[bool, bool]  # whether its images / files are the pending attachments (used up by it)
    notes: list[str] = field(default_factory=list)
    # Whether the upstream is asked to keep the response, so a later turn can continue from it by id: a
    # stand-alone turn (persist_context=False) is not.
    store: bool = True

    @property
    def replayed_history(self) -> list[Turn]:
        """The turns sent again as messages: none when the upstream chains from its stored response."""
        return [] if self.previous_response_id else self.history

    def replayed(self) -> TurnPlan:
        """The same turn with the history replayed (the upstream lost the stored response)."""
        return replace(self, previous_response_id=None)

    def draft(self, number: int) -> Turn:
        """The turn as it will be recorded, before the answer is in."""
        return Turn(
            turn=number,
            parent=self.parent,
            prompt=self.prompt,
            images=self.images,
            files=self.files,
            status="running",
            model=self.options.model,
            instructions=self.options.instructions,
        )


def plan_turn(conversation: Conversation, call: ChatCall, *, max_images: int) -> TurnPlan:
    options, notes = turn_options(conversation.options, call.model)
    images = pick(call.images, conversation.pending_images, "images")
    files = pick(call.files, conversation.pending_files, "files")
    if len(images) > max_images:
        raise ToolError(f"{len(images)} images in one turn; the limit is {max_images}.")
    parent = choose_parent(conversation, call.persist_context, call.starting_point)
    history = conversation.history(parent)
    if not (images or files or history) and call.images is None and call.files is None:
        raise ToolError(nothing_to_look_at(conversation.id))
    if images:
        check_vision(options.model, len(images))
    options, said = json_holds(options, call.prompt)
    notes += said
    return TurnPlan(
        prompt=call.prompt,
        options=options,
        images=images,
        files=files,
        parent=parent,
        history=history,
        previous_response_id=chain_from(history),
        takes_pending=(call.images is None, call.files is None),
        notes=notes + sizing_note(conversation, options, images),
        store=call.persist_context if call.store is None else call.store,
    )


def sizing_note(conversation: Conversation, options: Options, images: list[str]) -> list[str]:
    """The first turn with images on a model the sizing rules do not know says how big its images go out."""
    if conversation.turns or not images or image_sizing.model_family(options.model) != "unknown":
        return []
    if options.detail != "auto":
        return []
    return [
        f"{options.model} is not a model imagechat knows (a local or a new one), so at detail 'auto' images go "
        "at most 2048 px a side; set_options(detail='original') sends them up to about 30 megapixels."
    ]


def nothing_to_look_at(conversation_id: str) -> str:
    return (
        f"Nothing to look at: {conversation_id!r} has no images or files waiting and no earlier turn to continue. "
        "Load images with load_image (documents with attach_file) first, or pass images=[] to send a text-only "
        "turn. Nothing was sent."
    )


JSON_INSTRUCTION = "Answer with a JSON object."


def check_vision(model: str, count: int) -> None:
    """A model that takes no images is refused before anything is sent (OpenAI would refuse, and bill nothing)."""
    rules = model_rules.rules_for(model)
    if rules is not None and not rules.vision:
        raise ToolError(
            f"{model} takes no images (it reads text only), and this turn has {count}. Choose a vision model "
            "(e.g. gpt-4.1-mini, o3) with set_options(model=...) or chat(model=...), or send a text-only turn with "
            "images=[]. Nothing was sent."
        )


def json_holds(options: Options, prompt: str) -> tuple[Options, list[str]]:
    """JSON mode as the upstream accepts it: OpenAI refuses response_format json unless the word "JSON" is in the
    messages, so the server says it when neither the instructions nor the prompt does."""
    said = f"{options.instructions or ''} {prompt}".lower()
    if options.response_format != "json" or "json" in said:
        return options, []
    instructions = f"{options.instructions}\n\n{JSON_INSTRUCTION}" if options.instructions else JSON_INSTRUCTION
    note = (
        f"response_format is 'json' and neither the instructions nor the prompt mention JSON, which OpenAI requires: "
        f"the instruction {JSON_INSTRUCTION!r} was added to this turn."
    )
    return options.model_copy(update={"instructions": instructions}), [note]


def turn_options(options: Options, model: str | None) -> tuple[Options, list[str]]:
    """The conversation's options, with this turn's model if it names another (dropping what it cannot take)."""
    model = model.strip() if model else None
    if not model or model == options.model:
        return options, []
    return model_rules.drop_unsupported(model, options.model_copy(update={"model": model}))


def choose_parent(conversation: Conversation, persist_context: bool, starting_point: StartingPoint) -> int | None:
    if starting_point == "start" or not persist_context:
        return None
    if starting_point is None:
        last = conversation.last_usable_turn()
        return last.turn if last else None
    if isinstance(starting_point, str) and starting_point.strip().isdigit():
        starting_point = int(starting_point.strip())
    turn = conversation.get_turn(starting_point) if isinstance(starting_point, int) else None
    if turn is not None and turn.usable:
        return turn.turn
    usable = [t.turn for t in conversation.turns if t.usable]
    known = f"turns {', '.join(map(str, usable))}" if usable else "no finished turns yet"
    raise ToolError(
        f"starting_point {starting_point!r} is not a finished turn of {conversation.id!r} ({known}). "
        "Use one of those turn numbers, or 'start' to begin afresh."
    )


def pick(refs: list[str] | None, pending: list[str], kind: str) -> list[str]:
    if refs is None:
        return list(pending)
    picked = [image_ref(ref.strip()) for ref in refs]
    if any(not ref for ref in picked):
        raise ToolError(f"{kind} contains an empty id.")
    return picked


def chain_from(history: list[Turn]) -> str | None:
    """The response id to continue from, when the upstream stored the last turn's response."""
    if history and history[-1].stored and history[-1].response_id and history[-1].usable:
        return history[-1].response_id
    return None
