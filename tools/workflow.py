"""The Run Workflow step: a ComfyUI OpenAI Chat workflow file, run node by node through the other steps.

`workflow_graph` turns the file into an ordered plan. Then, before anything is sent upstream, every chat
node's settings are checked and every input file is read and stored (a missing file fails the run here,
naming its node). Then the nodes run in order: LoadImage and OpenAIInputFiles give the stored ids, batches
concatenate them, OpenAIChatConfig gives options, each OpenAIChatNode is `set_options` plus `chat` in its
own conversation `workflow:<name>:node<id>` (so persist_context continues that node's conversation from
run to run), and each PreviewAny is `preview` of what it is connected to.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import model_rules, workflow_graph, workflow_nodes
from tools.attach_file import store_document
from tools.chat import ChatResult, Progress, StartingPoint, chat
from tools.deps import Deps, check_conversation_id
from tools.load_image import IMAGE_SCHEME, read_images
from tools.models import Options
from tools.options import check_ranges, set_options
from tools.ports import UpstreamFailure
from tools.preview import preview, render
from tools.sanitize import clean_text
from tools.workflow_graph import Node, Plan

# Old ComfyUI versions let a prompt pick the response to continue from with this tag ("start" to restart).
STARTING_POINT_TAG = re.compile(r"<starting_point_id:(.*?)>")


class SkippedNode(BaseModel):
    node_id: str
    type: str
    reason: str


class WorkflowResult(BaseModel):
    workflow: str = Field(
        description="The run's name: OpenAIChatNode <id> chats in conversation 'workflow:<name>:node<id>'."
    )
    format: Literal["ui", "api"] = Field(description="The file's format: ComfyUI's UI format or its API format.")
    previews: dict[str, str] = Field(description="Each PreviewAny's text, by node id.")
    chats: dict[str, ChatResult] = Field(description="Each OpenAIChatNode's result, by node id.")
    skipped: list[SkippedNode] = Field(description="Nodes that did not run: notes, muted, bypassed, unconnected.")


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


async def run_workflow(
    deps: Deps,
    workflow: str | dict[str, Any],
    *,
    input_dir: Path | None = None,
    name: str | None = None,
    progress: Progress | None = None,
) -> WorkflowResult:
    document, file_stem = await load_document(deps, workflow)
    plan = workflow_graph.parse(document)
    run_name = clean_name(name or file_stem or plan.workflow_id or "inline")
    starting_points = await check_chats(deps, plan, run_name)
    outputs = await read_inputs(deps, plan, input_dir or deps.input_dir)
    previews: dict[str, str] = {}
    chats: dict[str, ChatResult] = {}
    for node in plan.order:
        if node.type == "LoadImage":
            continue  # read and stored before anything was sent
        if node.type == "OpenAIInputFiles":  # this node's file first, then the chained ones, as ComfyUI
            outputs[node.id] = [Files(outputs[node.id][0].ids + linked(outputs, node, "OPENAI_INPUT_FILES").ids)]
        elif node.type == "ImageBatch":
            outputs[node.id] = [Images(linked(outputs, node, "image1").ids + linked(outputs, node, "image2").ids)]
        elif node.type == "BatchImagesNode":
            names = sorted(node.links, key=lambda n: int(n.rpartition("image")[2]))
            outputs[node.id] = [Images([i for n in names for i in linked(outputs, node, n).ids])]
        elif node.type == "OpenAIChatConfig":
            outputs[node.id] = [config_of(node, outputs)]
        elif node.type == "OpenAIChatNode":
            result = await run_chat(deps, node, outputs, run_name, starting_points.get(node.id), progress)
            chats[node.id] = result
            outputs[node.id] = [Answer(result.text, result.conversation_id, result.turn or 0)]
        elif node.type == "PreviewAny":
            origin, slot = node.links["source"]
            previews[node.id] = await preview_of(deps, outputs[origin][slot])
    return WorkflowResult(
        workflow=run_name,
        format="ui" if plan.format == "ui" else "api",
        previews=previews,
        chats=chats,
        skipped=[SkippedNode(node_id=s.node_id, type=s.type, reason=s.reason) for s in plan.skipped],
    )


async def load_document(deps: Deps, workflow: str | dict[str, Any]) -> tuple[Any, str | None]:
    """The workflow as JSON, and the file's stem when it came from a file."""
    if isinstance(workflow, dict):
        return workflow, None
    if not isinstance(workflow, str) or not workflow.strip():
        raise ToolError("workflow is empty: give the path of a ComfyUI workflow .json file, or the JSON itself.")
    text = workflow.strip()
    if text.startswith("{"):
        return parse_json(text, "The workflow text"), None
    read = await deps.reader.read(text, max_bytes=deps.limits.max_file_bytes, kind="workflow")
    try:
        body = read.data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ToolError(f"{read.name!r} is not UTF-8 text, so not a ComfyUI workflow file.") from None
    return parse_json(body, repr(read.name)), PurePosixPath(read.name).stem


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ToolError(f"{what} is not valid JSON ({exc}). Export the workflow from ComfyUI again.") from None


def clean_name(name: str) -> str:
    cleaned = "".join(c for c in clean_text(name).strip() if c.isprintable())[:80].strip()
    return cleaned or "inline"


def conversation_for(run_name: str, node_id: str) -> str:
    conversation_id = f"workflow:{run_name}:node{node_id}"
    check_conversation_id(conversation_id)
    return conversation_id


# -- before anything is sent ------------------------------------------------------------------------


async def check_chats(deps: Deps, plan: Plan, run_name: str) -> dict[str, StartingPoint]:
    """Refuse what set_options or chat would refuse later, and resolve starting-point tags, up front."""
    problems = workflow_graph.Problems()
    starting_points: dict[str, StartingPoint] = {}
    configs = {node.id: node for node in plan.order if node.type == "OpenAIChatConfig"}
    for node in (n for n in plan.order if n.type == "OpenAIChatNode"):
        model = model_of(deps, node)
        config = configs.get(node.links["advanced_options"][0]) if "advanced_options" in node.links else None
        values = config.values if config is not None else {}
        try:
            check_ranges(max_output_tokens=values.get("max_output_tokens"), temperature=None, top_p=None)
        except ToolError as exc:
            problems.add(config, str(exc).rstrip("."))
        instructions = values.get("instructions") if isinstance(values.get("instructions"), str) else None
        options = Options(model=model, truncation=values.get("truncation", "auto"), instructions=instructions or None)
        for refusal in model_rules.refusals(model, options):
            problems.add(node, refusal.rstrip("."))
        if "prompt" in node.links:
            continue
        prompt = node.values["prompt"]
        tag = STARTING_POINT_TAG.search(prompt)
        if not STARTING_POINT_TAG.sub("", prompt).strip():
            problems.add(node, "the prompt is empty; write what to ask about the images")
        elif len(prompt) > deps.limits.max_prompt_chars:
            problems.add(node, f"the prompt is {len(prompt)} characters; the limit is {deps.limits.max_prompt_chars}")
        if tag is not None:
            point = await starting_point(deps, conversation_for(run_name, node.id), tag.group(1).strip())
            if point is None:
                problems.add(node, f"no earlier turn of this node has response id {tag.group(1).strip()!r}")
            starting_points[node.id] = point
    problems.raise_any()
    return starting_points


async def starting_point(deps: Deps, conversation_id: str, response_id: str) -> StartingPoint:
    if response_id == "start":
        return "start"
    found = await deps.store.get_conversation(conversation_id)
    turns = found.turns if found is not None else []
    return next((turn.turn for turn in turns if turn.response_id == response_id), None)


async def read_inputs(deps: Deps, plan: Plan, folder: Path | None) -> dict[str, list[Any]]:
    """Every LoadImage and OpenAIInputFiles file, read and stored; all failures reported together."""
    problems = workflow_graph.Problems()
    outputs: dict[str, list[Any]] = {}
    for node in (n for n in plan.order if n.type in ("LoadImage", "OpenAIInputFiles")):
        image = node.type == "LoadImage"
        name = workflow_graph.input_file_name(node, node.values.get("image" if image else "file"))
        if folder is None:
            problems.add(node, f"{name!r} is looked up in the input folder, and none is set. {INPUT_DIR_HINT}")
            continue
        try:
            path = await deps.reader.path_in(folder, name)
            if image:
                outputs[node.id] = [await store_images(deps, path), None]
            else:
                outputs[node.id] = [Files([await store_file(deps, path)])]
        except ToolError as exc:
            problems.add(node, str(exc).rstrip("."))
    problems.raise_any()
    return outputs


INPUT_DIR_HINT = "Give input_dir (the tool), --input-dir (the command line) or IMAGECHAT_INPUT_DIR."


async def store_images(deps: Deps, path: str) -> Images:
    # ComfyUI's LoadImage gives every frame of an animation as a batch; frames="all" does the same (capped).
    loaded = await read_images(deps, path, "all")
    for record, blob in loaded:
        if blob is not None:
            await deps.store.put_image(record, blob)
    return Images([record.image_id for record, _ in loaded])


async def store_file(deps: Deps, path: str) -> str:
    """attach_file's checks without attaching: the chat node sends the file by id."""
    return (await store_document(deps, path)).file_id


# -- running the nodes ------------------------------------------------------------------------------


def linked(outputs: dict[str, list[Any]], node: Node, name: str) -> Any:
    """The value on input `name`, or an empty batch when nothing is connected (an optional input)."""
    if name not in node.links:
        kind = workflow_nodes.SPECS[node.type].inputs.get(name)
        return Files([]) if kind == "OPENAI_INPUT_FILES" else Images([])
    origin, slot = node.links[name]
    return outputs[origin][slot]


def as_text(value: Any) -> str:
    return value.text if isinstance(value, Answer) else str(value)


def model_of(deps: Deps, node: Node) -> str:
    model = node.values.get("model")
    return model.strip() if isinstance(model, str) and model.strip() else deps.default_model


def config_of(node: Node, outputs: dict[str, list[Any]]) -> ChatConfig:
    values = node.values
    instructions = as_text(linked(outputs, node, "instructions")) if "instructions" in node.links else None
    if instructions is None and isinstance(values.get("instructions"), str):
        instructions = values["instructions"]
    return ChatConfig(values.get("truncation", "auto"), values.get("max_output_tokens"), instructions)


async def run_chat(
    deps: Deps,
    node: Node,
    outputs: dict[str, list[Any]],
    run_name: str,
    point: StartingPoint,
    progress: Progress | None,
) -> ChatResult:
    conversation_id = conversation_for(run_name, node.id)
    prompt = as_text(linked(outputs, node, "prompt")) if "prompt" in node.links else node.values["prompt"]
    config = outputs[node.links["advanced_options"][0]][0] if "advanced_options" in node.links else None

    async def report(done: float, total: float | None, message: str) -> None:
        if progress is not None:
            await progress(done, total, f"node {node.id}: {message}")

    try:
        # Reset first: the node's options are what the file says now, not what an earlier run left.
        await set_options(
            deps,
            conversation_id,
            reset=True,
            model=model_of(deps, node),
            truncation=config.truncation if config else None,
            max_output_tokens=config.max_output_tokens if config else None,
            instructions=(config.instructions or None) if config else None,
        )
        result = await chat(
            deps,
            STARTING_POINT_TAG.sub("", prompt).strip(),
            conversation_id,
            images=linked(outputs, node, "images").ids,
            files=linked(outputs, node, "files").ids,
            persist_context=bool(node.values.get("persist_context", False)),
            starting_point=point,
            progress=report,
            wait_seconds=None,  # the server's budget; an answer still running then fails the run below
        )
    except UpstreamFailure as exc:
        raise UpstreamFailure(f"{node.label}: {exc}") from exc
    except ToolError as exc:
        raise ToolError(f"{node.label}: {exc}") from exc
    if result.status == "running":
        raise UpstreamFailure(
            f"{node.label}: the model is still answering; read it later with preview(conversation_id="
            f"{conversation_id!r}) and run the workflow again for the nodes after it."
        )
    return result


async def preview_of(deps: Deps, value: Any) -> str:
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
