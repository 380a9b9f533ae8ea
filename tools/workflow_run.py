"""What each node type does in a run: the runner table beside the node specs (`workflow_nodes.SPECS`).

A runner has a run (the node's outputs from its inputs' outputs) and, where the node calls a step, a pre-flight
check made before anything is read or sent. The pre-flight calls the validators the steps themselves call
(`options.check_changes`, `options.planned`, `chat.check_prompt`), so a rule is written once. Values passed
along links are typed: a batch of image ids, a batch of file ids, a chat config, an answer.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from tools import options
from tools.chat import ChatResult, Progress, StartingPoint, budget, check_prompt, follow
from tools.deps import Deps, check_conversation_id
from tools.models import IMAGE_SCHEME, Options
from tools.plan import ChatCall
from tools.ports import UpstreamFailure
from tools.preview import preview, render
from tools.sanitize import clean_text, removed_note
from tools.turn import start
from tools.workflow_graph import Node, Plan, Problems

# Old ComfyUI versions let a prompt pick the response to continue from with this tag ("start" to restart).
STARTING_POINT_TAG = re.compile(r"<starting_point_id:(.*?)>")


@dataclass(frozen=True)
class Images:
    ids: list[str]


@dataclass(frozen=True)
class Files:
    ids: list[str]


@dataclass(frozen=True)
class ChatConfig:
    truncation: Literal["auto", "disabled"]
    max_output_tokens: int | None
    instructions: str | None


@dataclass(frozen=True)
class Answer:
    """The STRING an OpenAIChatNode gives, with the turn that recorded it."""

    text: str
    conversation_id: str
    turn: int


# None: an output imagechat does not produce (LoadImage's MASK); the graph refuses links to it.
Value = Images | Files | ChatConfig | Answer | None
Outputs = tuple[Value, ...]
Batch = TypeVar("Batch", Images, Files)


@dataclass
class Run:
    """One run of a workflow: what the nodes read and what they have given so far."""

    deps: Deps
    name: str
    plan: Plan
    progress: Progress | None = None
    outputs: dict[str, Outputs] = field(default_factory=dict)
    starting_points: dict[str, StartingPoint] = field(default_factory=dict)
    previews: dict[str, str] = field(default_factory=dict)
    chats: dict[str, ChatResult] = field(default_factory=dict)

    def linked(self, node: Node, name: str) -> Value:
        origin, slot = node.links[name]
        return self.outputs[origin][slot]

    def batch(self, node: Node, name: str, kind: type[Batch]) -> Batch:
        """The batch on input `name`, or an empty one when nothing is connected (an optional input)."""
        if name not in node.links:
            return kind([])
        value = self.linked(node, name)
        if not isinstance(value, kind):  # the graph checked the link types; this is a bug, not a user error
            raise TypeError(f"{node.label}: input {name!r} got {type(value).__name__}, not {kind.__name__}")
        return value


def conversation_for(run_name: str, node_id: str) -> str:
    conversation_id = f"workflow:{run_name}:node{node_id}"
    check_conversation_id(conversation_id)
    return conversation_id


def as_text(value: Value) -> str:
    return value.text if isinstance(value, Answer) else str(value)


# -- the batches --------------------------------------------------------------------------------------


async def stored(run: Run, node: Node) -> Outputs:
    return run.outputs[node.id]  # LoadImage: read and stored before anything was sent (workflow.read_inputs)


async def chain_files(run: Run, node: Node) -> Outputs:
    # This node's file first, then the chained ones, as ComfyUI.
    own = run.outputs[node.id][0]
    own_ids = own.ids if isinstance(own, Files) else []
    return (Files(own_ids + run.batch(node, "OPENAI_INPUT_FILES", Files).ids),)


async def image_batch(run: Run, node: Node) -> Outputs:
    return (Images(run.batch(node, "image1", Images).ids + run.batch(node, "image2", Images).ids),)


async def batch_images(run: Run, node: Node) -> Outputs:
    names = sorted(node.links, key=lambda n: int(n.rpartition("image")[2]))
    return (Images([i for n in names for i in run.batch(node, n, Images).ids]),)


# -- options and chat ---------------------------------------------------------------------------------


def config_of(node: Node, linked_instructions: str | None = None) -> ChatConfig:
    """What an OpenAIChatConfig node gives. Instructions fed by a link are `linked_instructions`: None before
    the run gets there, so the pre-flight checks what the file itself says."""
    values = node.values
    truncation: Literal["auto", "disabled"] = "disabled" if values.get("truncation") == "disabled" else "auto"
    tokens = values.get("max_output_tokens")
    widget = values.get("instructions")
    instructions = linked_instructions if "instructions" in node.links else widget if isinstance(widget, str) else None
    return ChatConfig(truncation, tokens if isinstance(tokens, int) else None, instructions)


async def chat_config(run: Run, node: Node) -> Outputs:
    linked = as_text(run.linked(node, "instructions")) if "instructions" in node.links else None
    return (config_of(node, linked),)


def model_of(deps: Deps, node: Node) -> str:
    model = node.values.get("model")
    return model.strip() if isinstance(model, str) and model.strip() else deps.default_model


def option_changes(deps: Deps, node: Node, config: ChatConfig | None) -> options.OptionChanges:
    """What a chat node sets before its turn. Reset first: the node's options are what the file says now, not
    what an earlier run left."""
    return options.OptionChanges(
        reset=True,
        model=model_of(deps, node),
        truncation=config.truncation if config else None,
        max_output_tokens=config.max_output_tokens if config else None,
        instructions=(config.instructions or None) if config else None,
    )


def options_node(run: Run, node: Node) -> Node | None:
    """The OpenAIChatConfig node a chat node's advanced_options input is linked to, if any."""
    if "advanced_options" not in node.links:
        return None
    origin = node.links["advanced_options"][0]
    return next((n for n in run.plan.order if n.id == origin), None)


async def check_chat(run: Run, node: Node, problems: Problems) -> None:
    """Refuse up front what set_options or chat would refuse later, and resolve a starting-point tag."""
    deps = run.deps
    config_node = options_node(run, node)
    changes = option_changes(deps, node, config_of(config_node) if config_node is not None else None)
    try:
        options.check_changes(deps, changes)
    except ToolError as exc:
        problems.add(config_node or node, str(exc).rstrip("."))
    else:
        for refusal in options.planned(deps, Options(model=deps.default_model), changes)[1]:
            problems.add(node, refusal.rstrip("."))
    if "prompt" not in node.links:
        await check_node_prompt(run, node, node.values["prompt"], problems)


async def check_node_prompt(run: Run, node: Node, prompt: str, problems: Problems) -> None:
    try:
        check_prompt(run.deps, STARTING_POINT_TAG.sub("", prompt).strip())
    except ToolError as exc:
        problems.add(node, str(exc).rstrip("."))
    tag = STARTING_POINT_TAG.search(prompt)
    if tag is not None:
        response_id = tag.group(1).strip()
        point = await starting_point(run.deps, conversation_for(run.name, node.id), response_id)
        if point is None:
            problems.add(node, f"no earlier turn of this node has response id {response_id!r}")
        run.starting_points[node.id] = point


async def starting_point(deps: Deps, conversation_id: str, response_id: str) -> StartingPoint:
    if response_id == "start":
        return "start"
    found = await deps.store.get_conversation(conversation_id)
    turns = found.turns if found is not None else []
    return next((turn.turn for turn in turns if turn.response_id == response_id), None)


async def run_chat(run: Run, node: Node) -> Outputs:
    deps, conversation_id = run.deps, conversation_for(run.name, node.id)
    prompt = as_text(run.linked(node, "prompt")) if "prompt" in node.links else node.values["prompt"]
    config = run.linked(node, "advanced_options") if "advanced_options" in node.links else None

    async def report(done: float, total: float | None, message: str) -> None:
        if run.progress is not None:
            await run.progress(done, total, f"node {node.id}: {message}")

    try:
        await node_options(deps, conversation_id, node, config if isinstance(config, ChatConfig) else None)
        text = STARTING_POINT_TAG.sub("", prompt).strip()
        check_prompt(deps, text)
        call = ChatCall(
            clean_text(text),
            images=run.batch(node, "images", Images).ids,
            files=run.batch(node, "files", Files).ids,
            persist_context=bool(node.values.get("persist_context", False)),
            starting_point=run.starting_points.get(node.id),
            store=True,  # as ComfyUI's node: a later run with persist_context continues from this response
        )
        # The server's wait budget; an answer still running then fails the run below.
        result = await follow(deps, start(deps, conversation_id, call), budget(deps, None), report)
    except UpstreamFailure as exc:
        raise UpstreamFailure(f"{node.label}: {exc}") from exc
    except ToolError as exc:
        raise ToolError(f"{node.label}: {exc}") from exc
    if result.status == "running":
        raise UpstreamFailure(
            f"{node.label}: the model is still answering; read it later with preview(conversation_id="
            f"{conversation_id!r}) and run the workflow again for the nodes after it."
        )
    hidden = removed_note(STARTING_POINT_TAG.sub("", prompt).strip())
    if hidden:
        result.notes.append(hidden)
    run.chats[node.id] = result
    return (Answer(result.text, result.conversation_id, result.turn or 0),)


async def node_options(deps: Deps, conversation_id: str, node: Node, config: ChatConfig | None) -> None:
    """set_options as the chat node implies. Without an Advanced Options node (absent, bypassed or muted)
    ComfyUI's node sends neither max_output_tokens nor truncation, so neither is set: the upstream's own
    defaults apply (a 4096-token cap would cut a reasoning model's answer short where ComfyUI's is not)."""
    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id)
        updated, _ = options.apply(deps, conversation.options, option_changes(deps, node, config))
        if config is None:
            updated = updated.model_copy(update={"max_output_tokens": None, "truncation": None})
        conversation.options = updated
        conversation.updated_at = time.time()
        await deps.store.put_conversation(conversation)


# -- preview ------------------------------------------------------------------------------------------


async def preview_any(run: Run, node: Node) -> Outputs:
    run.previews[node.id] = await shown(run.deps, run.linked(node, "source"))
    return ()


async def shown(deps: Deps, value: Value) -> str:
    """What Preview Any shows: the chat's recorded answer, or the value as text or JSON."""
    if isinstance(value, Answer):
        return (await preview(deps, value.conversation_id, f"turn:{value.turn}")).text
    if isinstance(value, Images):
        return render([f"{IMAGE_SCHEME}{i}" for i in value.ids], "text")
    if isinstance(value, Files):
        return render(value.ids, "text")
    if isinstance(value, ChatConfig):
        return render(dataclasses.asdict(value), "text")
    return render(value, "text")


# -- the table ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runner:
    run: Callable[[Run, Node], Awaitable[Outputs]]
    preflight: Callable[[Run, Node, Problems], Awaitable[None]] | None = None


RUNNERS: dict[str, Runner] = {
    "LoadImage": Runner(stored),
    "ImageBatch": Runner(image_batch),
    "BatchImagesNode": Runner(batch_images),
    "OpenAIChatConfig": Runner(chat_config),
    "OpenAIInputFiles": Runner(chain_files),
    "OpenAIChatNode": Runner(run_chat, check_chat),
    "PreviewAny": Runner(preview_any),
}


async def preflight(run: Run) -> None:
    """Every node's pre-flight check, all problems refused at once, before anything is read or sent."""
    problems = Problems()
    for node in run.plan.order:
        check = RUNNERS[node.type].preflight
        if check is not None:
            await check(run, node, problems)
    problems.raise_any()


async def run_nodes(run: Run) -> None:
    for node in run.plan.order:
        run.outputs[node.id] = await RUNNERS[node.type].run(run, node)
