"""The Run Workflow step: a ComfyUI OpenAI Chat workflow file, run node by node through the other steps.

`workflow_graph` turns the file into an ordered plan. Then, before anything is sent upstream, every node's
pre-flight check runs (`workflow_run.RUNNERS`: a chat node's settings are checked by set_options' and chat's own
validators) and every input file is read and stored (a missing file fails the run here, naming its node). Then
the nodes run in order through the runner table: LoadImage and OpenAIInputFiles give the stored ids, batches
concatenate them, OpenAIChatConfig gives options, each OpenAIChatNode is `set_options` plus `chat` in its own
conversation `workflow:<name>:node<id>` (so persist_context continues that node's conversation from run to
run), and each PreviewAny is `preview` of what it is connected to. As ComfyUI's cache, a run whose nodes and
input files did not change since the last run of the same name is answered from that run (`fresh` asks again).
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import workflow_graph
from tools.attach_file import store_document
from tools.chat import ChatResult, Progress
from tools.deps import Deps
from tools.load_image import read_images
from tools.ports import Store
from tools.sanitize import clean_text
from tools.workflow_estimate import WorkflowEstimate, estimate_nodes
from tools.workflow_graph import Plan
from tools.workflow_run import Files, Images, Outputs, Run, preflight, run_nodes

# The arguments of the run_workflow tool (server/mcp_workflow.py).
WorkflowArg = Annotated[
    str | dict[str, Any],
    Field(description="Its .json path (in the allowed folders) or the JSON itself, in ComfyUI's UI or API format."),
]
InputDirArg = Annotated[
    str | None,
    Field(
        description="Folder of LoadImage/OpenAIInputFiles names (default: IMAGECHAT_INPUT_DIR, else the first "
        "allowed folder)."
    ),
]
RunNameArg = Annotated[
    str | None,
    Field(
        max_length=80,
        description="Names its conversations workflow:<name>:node<id> (default: the file name); reuse to continue.",
    ),
]


FreshArg = Annotated[
    bool,
    Field(description="Ask the models again even if nothing changed (else cached results, as ComfyUI)."),
]


class SkippedNode(BaseModel):
    node_id: str
    type: str
    reason: str


WorkflowDryRunArg = Annotated[bool, Field(description="Estimate each chat node's tokens and cost; call no model.")]


class WorkflowResult(BaseModel):
    workflow: str = Field(
        description="The run's name: OpenAIChatNode <id> chats in conversation 'workflow:<name>:node<id>'."
    )
    format: Literal["ui", "api"] = Field(description="The file's format: ComfyUI's UI format or its API format.")
    previews: dict[str, str] = Field(description="Each PreviewAny's text, by node id.")
    chats: dict[str, ChatResult] = Field(description="Each OpenAIChatNode's result, by node id.")
    skipped: list[SkippedNode] = Field(description="Nodes that did not run: notes, muted, bypassed, unconnected.")
    estimate: WorkflowEstimate | None = Field(default=None, description="A dry run's estimate (nothing was sent).")
    notes: list[str] = Field(default_factory=list)


# ComfyUI's cache: an unchanged workflow is answered from its last run. Per store, per run name, in this process
# only (a restart forgets it, as ComfyUI's does).
LAST_RUNS: weakref.WeakKeyDictionary[Store, dict[str, tuple[str, WorkflowResult]]] = weakref.WeakKeyDictionary()
CACHED = (
    "Nothing changed since the last run of this workflow (the same nodes, values and input files), so its results "
    "are shown again without calling the model, as ComfyUI's cache does. Run it with fresh=true to ask again."
)


async def run_workflow(
    deps: Deps,
    workflow: WorkflowArg,
    *,
    input_dir: Path | None = None,
    name: RunNameArg = None,
    progress: Progress | None = None,
    fresh: FreshArg = False,
    dry_run: WorkflowDryRunArg = False,
) -> WorkflowResult:
    document, file_stem = await load_document(deps, workflow)
    try:
        plan = workflow_graph.parse(document)
    except RecursionError:  # a workflow given inline, as an object, is parsed already
        raise ToolError(NESTED.format(what="The workflow")) from None
    run = Run(deps, clean_name(name or file_stem or plan.workflow_id or "inline"), plan, progress)
    await preflight(run)
    run.outputs.update(await read_inputs(deps, plan, input_dir or deps.input_dir))
    if dry_run:
        return WorkflowResult(
            workflow=run.name,
            format="ui" if plan.format == "ui" else "api",
            previews={},
            chats={},
            skipped=[SkippedNode(node_id=s.node_id, type=s.type, reason=s.reason) for s in plan.skipped],
            estimate=await estimate_nodes(run),
        )
    key, last_runs = fingerprint(run), LAST_RUNS.setdefault(deps.store, {})
    last = last_runs.get(run.name)
    if not fresh and last is not None and last[0] == key:
        return last[1].model_copy(deep=True, update={"notes": [*last[1].notes, CACHED]})
    await run_nodes(run)
    result = WorkflowResult(
        workflow=run.name,
        format="ui" if plan.format == "ui" else "api",
        previews=run.previews,
        chats=run.chats,
        skipped=[SkippedNode(node_id=s.node_id, type=s.type, reason=s.reason) for s in plan.skipped],
    )
    last_runs[run.name] = (key, result.model_copy(deep=True))
    return result


def fingerprint(run: Run) -> str:
    """What ComfyUI's cache compares: every node that runs with its values and links, the input files' contents
    (their ids are content hashes, read just before), and the default model a node without one uses."""
    nodes = [(node.id, node.type, node.values, sorted(node.links.items())) for node in run.plan.order]
    inputs = sorted((node_id, repr(values)) for node_id, values in run.outputs.items())
    text = json.dumps([nodes, inputs, run.deps.default_model], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


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


NESTED = (
    "{what} is nested too deeply to read (thousands of levels): no ComfyUI workflow is. Export the workflow from "
    "ComfyUI again."
)


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ToolError(f"{what} is not valid JSON ({exc}). Export the workflow from ComfyUI again.") from None
    except RecursionError:
        raise ToolError(NESTED.format(what=what)) from None


def clean_name(name: str) -> str:
    cleaned = "".join(c for c in clean_text(name).strip() if c.isprintable())[:80].strip()
    return cleaned or "inline"


# -- before anything is sent ------------------------------------------------------------------------


async def read_inputs(deps: Deps, plan: Plan, folder: Path | None) -> dict[str, Outputs]:
    """Every LoadImage and OpenAIInputFiles file, read and stored; all failures reported together."""
    problems = workflow_graph.Problems()
    outputs: dict[str, Outputs] = {}
    for node in (n for n in plan.order if n.type in ("LoadImage", "OpenAIInputFiles")):
        image = node.type == "LoadImage"
        name = workflow_graph.input_file_name(node, node.values.get("image" if image else "file"))
        if folder is None:
            problems.add(node, f"{name!r} is looked up in the input folder, and none is set. {INPUT_DIR_HINT}")
            continue
        try:
            path = await deps.reader.path_in(folder, name)
            if image:
                outputs[node.id] = (await store_images(deps, path), None)
            else:
                outputs[node.id] = (Files([await store_file(deps, path)]),)
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
