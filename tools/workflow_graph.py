"""ComfyUI workflow files as a plan imagechat can run: both formats parsed, bypass and mute applied, checked.

Pure logic, no I/O. ComfyUI saves a workflow in the UI format (`nodes` and `links`, node modes, widget values
by position) and queues it in the API format (`{"<id>": {"class_type", "inputs"}}`); the frontend turns the
first into the second by dropping muted nodes, routing around bypassed ones and forgetting notes. `parse`
does the same, so a file behaves here as it does in ComfyUI, then orders the nodes that feed a PreviewAny
(its output node; a chat node whose answer reaches none does not run, as in ComfyUI). Every problem is gathered
and refused at once, naming the node, before anything is sent upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from tools.sanitize import clean_text
from tools.workflow_nodes import NOTE_TYPES, REROUTE, SPECS, UNSUPPORTED, BadFileName, file_name

Source = tuple[str, int]  # (origin node id, output slot)

MUTED, BYPASSED = 2, 4  # litegraph modes: 0 always, 2 never, 4 bypass
MAX_NODES = 1000


@dataclass
class Node:
    id: str
    type: str
    mode: int = 0
    values: dict[str, Any] = field(default_factory=dict)  # widget values by name
    links: dict[str, Source] = field(default_factory=dict)  # input name -> where its value comes from
    slots: list[tuple[str, str, Source | None]] = field(default_factory=list)  # UI inputs: name, type, source

    @property
    def label(self) -> str:
        # Ids and types come from the file and go back to the calling model: no hidden characters.
        return f"node {clean_text(self.id)[:40]} ({clean_text(self.type)[:80]})"


@dataclass(frozen=True)
class Skipped:
    node_id: str
    type: str
    reason: str


@dataclass
class Plan:
    format: str  # "ui" or "api"
    workflow_id: str | None
    order: list[Node]  # the nodes to run, dependencies first
    skipped: list[Skipped]


class Problems:
    """Gathers every reason the workflow cannot run, so one refusal lists them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, node: Node | None, text: str) -> None:
        self.items.append(f"{node.label}: {text}" if node is not None else text)

    def raise_any(self) -> None:
        if self.items:
            shown = self.items[:12] + ([f"and {len(self.items) - 12} more"] if len(self.items) > 12 else [])
            raise ToolError("The workflow cannot run (nothing was sent): " + "; ".join(shown) + ".")


def parse(workflow: Any) -> Plan:
    if not isinstance(workflow, dict):
        raise ToolError("A workflow is a JSON object: ComfyUI's UI format or its API format.")
    problems = Problems()
    if isinstance(workflow.get("nodes"), list):
        nodes = _ui_nodes(workflow, problems)
        fmt, workflow_id = "ui", workflow.get("id") if isinstance(workflow.get("id"), str) else None
    else:
        if isinstance(workflow.get("prompt"), dict) and "class_type" not in workflow["prompt"]:
            workflow = workflow["prompt"]  # the body ComfyUI's /prompt endpoint takes
        nodes = _api_nodes(workflow, problems)
        fmt, workflow_id = "api", None
    problems.raise_any()
    skipped = [Skipped(clean_text(n.id), clean_text(n.type), _skip_reason(n)) for n in nodes.values() if not _active(n)]
    active = {n.id: _rerouted(n, nodes) for n in nodes.values() if _active(n)}
    for node in active.values():
        if node.type not in SPECS:  # ComfyUI refuses an unknown node anywhere in the workflow, too
            problems.add(node, UNSUPPORTED)
    problems.raise_any()
    outputs = [n for n in active.values() if SPECS[n.type].output_node]
    if not outputs:
        _ordered(active)  # links that form a cycle are the first thing to fix: named before the missing output
        raise ToolError(
            "Prompt has no outputs (as ComfyUI says): the workflow has no PreviewAny that runs (muted and bypassed "
            "nodes do not run), and a chat node runs only when its answer reaches one. Connect the OpenAIChatNode's "
            "STRING output to a PreviewAny. Nothing was sent."
        )
    needed = _ancestors(outputs, active)
    for node_id in sorted(needed, key=_id_key):
        _check_node(active[node_id], active, nodes, problems)
    problems.raise_any()
    skipped += [
        Skipped(
            clean_text(n.id),
            clean_text(n.type),
            "not connected to a PreviewAny, so not run (as in ComfyUI): nothing was sent for it",
        )
        for n in active.values()
        if n.id not in needed
    ]
    order = _ordered({i: active[i] for i in needed})
    return Plan(fmt, workflow_id, order, sorted(skipped, key=lambda s: _id_key(s.node_id)))


def input_file_name(node: Node, value: Any) -> str:
    """A LoadImage/OpenAIInputFiles name as a path relative to the input folder, like ComfyUI's."""
    try:
        return file_name(value)
    except BadFileName as exc:
        raise ToolError(f"{node.label}: {exc}") from None


# -- the two formats --------------------------------------------------------------------------------


def _ui_nodes(workflow: dict[str, Any], problems: Problems) -> dict[str, Node]:
    raw_nodes = [n for n in workflow["nodes"] if isinstance(n, dict)]
    if len(raw_nodes) > MAX_NODES:
        raise ToolError(f"The workflow has {len(raw_nodes)} nodes; imagechat runs at most {MAX_NODES}.")
    links = _ui_links(workflow.get("links") or [])
    nodes = [_ui_node(raw, links, problems) for raw in raw_nodes]
    return _dangling({node.id: node for node in nodes}, problems)


def _ui_links(raw_links: list[Any]) -> dict[Any, Source]:
    links: dict[Any, Source] = {}
    for link in raw_links:
        if isinstance(link, list) and len(link) >= 5:
            links[link[0]] = (str(link[1]), _int(link[2]))
        elif isinstance(link, dict) and "id" in link:  # the newer frontend's object form
            links[link["id"]] = (str(link.get("origin_id")), _int(link.get("origin_slot")))
    return links


def _ui_node(raw: dict[str, Any], links: dict[Any, Source], problems: Problems) -> Node:
    node = Node(str(raw.get("id")), str(raw.get("type", "")), _int(raw.get("mode")))
    widget_links: dict[str, Source] = {}
    for slot in (s for s in raw.get("inputs") or [] if isinstance(s, dict)):
        name, source = str(slot.get("name", "")), None
        if slot.get("link") is not None:
            source = links.get(slot["link"])
            if source is None:
                problems.add(node, f"input {name!r} uses link {slot['link']}, which the file does not define")
        widget = slot.get("widget")
        if isinstance(widget, dict) and "name" in widget:
            # A widget turned into an input: its value comes from the link when there is one.
            name = str(widget["name"])
            if source is not None:
                widget_links[name] = source
        elif source is not None:
            node.links[name] = source
        node.slots.append((name, str(slot.get("type", "")), source))
    spec = SPECS.get(node.type)
    node.values = spec.widget_values(raw.get("widgets_values")) if spec is not None else {}
    node.links.update(widget_links)
    return node


def _dangling(nodes: dict[str, Node], problems: Problems) -> dict[str, Node]:
    """`nodes`, with a problem for every link to a node the file does not have."""
    for node in nodes.values():
        for name, (origin, _) in node.links.items():
            if origin not in nodes:
                problems.add(node, f"input {name!r} is linked to node {origin}, which is not in the workflow")
    return nodes


def _api_nodes(workflow: dict[str, Any], problems: Problems) -> dict[str, Node]:
    if not workflow or not all(isinstance(v, dict) and "class_type" in v for v in workflow.values()):
        raise ToolError(
            "This is not a ComfyUI workflow: expected the UI format (an object with 'nodes' and 'links', as "
            "saved from ComfyUI) or the API format ({'<id>': {'class_type': ..., 'inputs': {...}}})."
        )
    if len(workflow) > MAX_NODES:
        raise ToolError(f"The workflow has {len(workflow)} nodes; imagechat runs at most {MAX_NODES}.")
    nodes: dict[str, Node] = {}
    for key, raw in workflow.items():
        node = Node(str(key), str(raw["class_type"]))
        nodes[node.id] = node
        inputs = raw.get("inputs") if isinstance(raw.get("inputs"), dict) else {}
        for name, value in inputs.items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                node.links[str(name)] = (str(value[0]), value[1])
            else:
                node.values[str(name)] = value
    return _dangling(nodes, problems)


# -- bypass, mute, checks, order --------------------------------------------------------------------


def _active(node: Node) -> bool:
    return node.mode not in (MUTED, BYPASSED) and node.type not in NOTE_TYPES and node.type != REROUTE


def _skip_reason(node: Node) -> str:
    if node.type in NOTE_TYPES:
        return "a note"
    if node.type == REROUTE:
        return "a reroute (layout only; links are followed through it)"
    if node.mode == MUTED:
        return "muted: not run, and its outputs are absent"
    return "bypassed: does not run; the nodes after it get its input of the same type, if it has one"


def _rerouted(node: Node, nodes: dict[str, Node]) -> Node:
    """The node with its links followed through reroutes and bypassed nodes, and cut at muted ones."""
    wanted = {name: kind for name, kind, _ in node.slots}
    links: dict[str, Source] = {}
    for name, source in node.links.items():
        found = _follow(source, wanted.get(name), nodes)
        if found is not None:
            links[name] = found
    return Node(node.id, node.type, node.mode, node.values, links, node.slots)


def _follow(source: Source, wanted: str | None, nodes: dict[str, Node]) -> Source | None:
    seen: set[str] = set()
    current: Source | None = source
    while current is not None:
        origin, slot = current
        parent = nodes.get(origin)
        if parent is None or origin in seen:
            return None
        seen.add(origin)
        if parent.type == REROUTE:
            current = parent.slots[0][2] if parent.slots else None
        elif parent.mode == BYPASSED:
            # As ComfyUI's frontend: the input at the same slot first, then any input, of the wanted type.
            candidates = [slot, *range(len(parent.slots))]
            match = next((i for i in candidates if 0 <= i < len(parent.slots) and parent.slots[i][1] == wanted), None)
            current = parent.slots[match][2] if match is not None else None
        elif parent.mode == MUTED or parent.type in NOTE_TYPES:
            return None
        else:
            return current
    return None


def _check_node(node: Node, active: dict[str, Node], nodes: dict[str, Node], problems: Problems) -> None:
    spec = SPECS[node.type]
    for name, (origin, slot) in node.links.items():
        expected = spec.input_type(name)
        if expected is None:
            problems.add(node, f"has no input {name!r} that takes a link")
            continue
        parent = active[origin]
        outputs = SPECS[parent.type].outputs
        if not 0 <= slot < len(outputs):
            problems.add(node, f"input {name!r} is linked to output {slot} of {parent.label}, which has none")
        elif outputs[slot] == "MASK":
            problems.add(node, f"input {name!r} takes a MASK from {parent.label}; imagechat does not use masks")
        elif expected != "*" and outputs[slot] != expected:
            problems.add(node, f"input {name!r} takes {expected} but is linked to a {outputs[slot]} output")
    for name in sorted(spec.required):
        if name not in node.links and node.values.get(name) is None:
            problems.add(node, f"required input {name!r} is missing{_why_missing(node, name, nodes)}")
    for problem in spec.check(node.values, frozenset(node.links)):
        problems.add(node, problem)


def _why_missing(node: Node, name: str, nodes: dict[str, Node]) -> str:
    original = next((source for slot, _, source in node.slots if slot == name), None)
    if original is None or original[0] not in nodes:
        return ""
    parent = nodes[original[0]]
    if parent.mode == MUTED:
        return f" (its link comes from muted {parent.label})"
    if parent.mode == BYPASSED:
        return f" (its link comes from bypassed {parent.label}, which has no connected input of that type)"
    return ""


def _ancestors(outputs: list[Node], active: dict[str, Node]) -> set[str]:
    needed: set[str] = set()
    stack = [n.id for n in outputs]
    while stack:
        current = stack.pop()
        if current in needed:
            continue
        needed.add(current)
        stack.extend(origin for origin, _ in active[current].links.values() if origin in active)
    return needed


def _ordered(nodes: dict[str, Node]) -> list[Node]:
    """Dependencies first; among nodes that are ready, the lowest id first (a stable, readable order)."""
    waiting = {i: {origin for origin, _ in n.links.values()} for i, n in nodes.items()}
    order: list[Node] = []
    while waiting:
        ready = sorted((i for i, deps in waiting.items() if not deps), key=_id_key)
        if not ready:
            cycle = ", ".join(nodes[i].label for i in sorted(waiting, key=_id_key))
            raise ToolError(f"The workflow cannot run (nothing was sent): its links form a cycle among {cycle}.")
        for node_id in ready:
            order.append(nodes[node_id])
            del waiting[node_id]
        for deps in waiting.values():
            deps.difference_update(ready)
    return order


def _id_key(node_id: str) -> tuple[int, str]:
    # isdecimal, not isdigit: "²" is a digit that int() refuses.
    return (int(node_id), "") if node_id.isdecimal() else (1 << 62, node_id)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
