"""The node types imagechat runs, as ComfyUI defines them: linked inputs, widgets in ComfyUI's order, outputs,
and the checks on their widget values. Pure: what each type does when it runs is `workflow_run.RUNNERS`,
keyed by the same names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"  # a layout node: the frontend follows it and never sends it to be run
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})  # control_after_generate widgets
UNSUPPORTED = (
    "imagechat cannot run this node type; it runs LoadImage, ImageBatch, BatchImagesNode, OpenAIChatConfig, "
    "OpenAIInputFiles, OpenAIChatNode and PreviewAny (notes are ignored). Remove the node or mute it"
)

# A check reads a node's widget values and the names of its linked inputs; it returns what is wrong, if anything.
Check = Callable[[dict[str, Any], frozenset[str]], list[str]]


class BadFileName(ValueError):
    """A LoadImage/OpenAIInputFiles name that is not a file inside the input folder."""


def file_name(value: Any) -> str:
    """A LoadImage/OpenAIInputFiles name as a path relative to the input folder, like ComfyUI's."""
    if not isinstance(value, str) or not value.strip():
        raise BadFileName("no file is chosen. Name a file in the input folder.")
    name = value.strip()
    match = re.fullmatch(r"(.*?)\s*\[(input|output|temp)\]", name)
    if match:
        if match.group(2) != "input":
            raise BadFileName(
                f"{name!r} is in ComfyUI's {match.group(2)} folder; imagechat reads only the "
                "input folder. Copy the file there and name it without the annotation."
            )
        name = match.group(1)
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"[A-Za-z]:", name):
        raise BadFileName(
            f"{name!r} is not a name inside the input folder. Use a name such as 'example.png' "
            "or 'sub/example.png' and set the input folder (input_dir, --input-dir or IMAGECHAT_INPUT_DIR)."
        )
    return str(path)


def no_checks(values: dict[str, Any], linked: frozenset[str]) -> list[str]:
    return []


def check_file(widget: str) -> Check:
    def check(values: dict[str, Any], linked: frozenset[str]) -> list[str]:
        try:
            file_name(values.get(widget))
        except BadFileName as exc:
            return [str(exc).rstrip(".")]
        return []

    return check


def check_config(values: dict[str, Any], linked: frozenset[str]) -> list[str]:
    problems: list[str] = []
    if values.get("truncation", "auto") not in ("auto", "disabled"):
        problems.append(f"truncation must be 'auto' or 'disabled', not {values['truncation']!r}")
    tokens = values.get("max_output_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int)):
        problems.append(f"max_output_tokens must be a whole number, not {tokens!r}")
    if values.get("instructions") is not None and not isinstance(values["instructions"], str):
        problems.append("instructions must be text")
    return problems


def check_chat(values: dict[str, Any], linked: frozenset[str]) -> list[str]:
    problems: list[str] = []
    if "prompt" not in linked and not isinstance(values.get("prompt"), str):
        problems.append("prompt must be text")
    if not isinstance(values.get("persist_context", False), bool):
        problems.append(f"persist_context must be true or false, not {values['persist_context']!r}")
    model = values.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        problems.append(f"model must name a model, not {model!r}")
    return problems


def _chat_widgets(values: list[Any]) -> dict[str, Any]:
    """prompt, persist_context, model; tolerant of a control_after_generate value a version might insert."""
    found: dict[str, Any] = {}
    if values:
        found["prompt"] = values[0]
    rest = [v for v in values[1:] if not (isinstance(v, str) and v in CONTROL_VALUES)]
    flag = next((i for i, v in enumerate(rest) if isinstance(v, bool)), None)
    if flag is not None:
        found["persist_context"] = rest[flag]
    model = next((v for v in rest[0 if flag is None else flag + 1 :] if isinstance(v, str)), None)
    if model is not None:
        found["model"] = model
    return found


def by_position(widgets: tuple[str, ...]) -> Callable[[list[Any]], dict[str, Any]]:
    """The UI format's widget values, a list in ComfyUI's widget order, by name."""
    return lambda values: dict(zip(widgets, values, strict=False))


@dataclass(frozen=True)
class NodeSpec:
    inputs: dict[str, str]  # linked input name -> type ("*" takes anything)
    required: frozenset[str]
    widgets: tuple[str, ...]  # in ComfyUI's widget order
    outputs: tuple[str, ...]
    linkable: frozenset[str] = frozenset()  # widgets that may be fed by a STRING link instead
    output_node: bool = False
    check: Check = no_checks
    read_widgets: Callable[[list[Any]], dict[str, Any]] | None = None  # default: by position
    autogrow: re.Pattern[str] | None = None  # IMAGE inputs added one by one (images.image0, images.image1, ...)

    def input_type(self, name: str) -> str | None:
        """The type a linked input `name` takes, or None when the node has no such input."""
        if name in self.inputs:
            return self.inputs[name]
        if name in self.linkable:
            return "STRING"
        if self.autogrow is not None and self.autogrow.fullmatch(name):
            return "IMAGE"
        return None

    def widget_values(self, values: Any) -> dict[str, Any]:
        """The widget values a file gives, by name: an object (API format) or a list (UI format)."""
        if isinstance(values, dict):
            return {name: values[name] for name in self.widgets if name in values}
        if not isinstance(values, list):
            return {}
        return (self.read_widgets or by_position(self.widgets))(values)


SPECS: dict[str, NodeSpec] = {
    "LoadImage": NodeSpec({}, frozenset({"image"}), ("image", "upload"), ("IMAGE", "MASK"), check=check_file("image")),
    "ImageBatch": NodeSpec({"image1": "IMAGE", "image2": "IMAGE"}, frozenset({"image1", "image2"}), (), ("IMAGE",)),
    # Autogrow inputs images.image0, images.image1, ...: at least two, like ComfyUI's min=2.
    "BatchImagesNode": NodeSpec(
        {}, frozenset({"images.image0", "images.image1"}), (), ("IMAGE",), autogrow=re.compile(r"images\.image(\d+)")
    ),
    "OpenAIChatConfig": NodeSpec(
        {},
        frozenset(),
        ("truncation", "max_output_tokens", "instructions"),
        ("OPENAI_CHAT_CONFIG",),
        linkable=frozenset({"instructions"}),
        check=check_config,
    ),
    "OpenAIInputFiles": NodeSpec(
        {"OPENAI_INPUT_FILES": "OPENAI_INPUT_FILES"},
        frozenset({"file"}),
        ("file",),
        ("OPENAI_INPUT_FILES",),
        check=check_file("file"),
    ),
    "OpenAIChatNode": NodeSpec(
        {"images": "IMAGE", "files": "OPENAI_INPUT_FILES", "advanced_options": "OPENAI_CHAT_CONFIG"},
        frozenset({"prompt"}),
        ("prompt", "persist_context", "model"),
        ("STRING",),
        linkable=frozenset({"prompt"}),
        # Not an output node, as in ComfyUI: a chat whose answer reaches no PreviewAny is not run (no paid call).
        check=check_chat,
        read_widgets=_chat_widgets,
    ),
    "PreviewAny": NodeSpec({"source": "*"}, frozenset({"source"}), (), (), output_node=True),
}
