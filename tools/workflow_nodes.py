"""The node types imagechat runs, as ComfyUI defines them: linked inputs, widgets in ComfyUI's order, outputs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"  # a layout node: the frontend follows it and never sends it to be run
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})  # control_after_generate widgets
BATCH_INPUT = re.compile(r"images\.image(\d+)")
UNSUPPORTED = (
    "imagechat cannot run this node type; it runs LoadImage, ImageBatch, BatchImagesNode, OpenAIChatConfig, "
    "OpenAIInputFiles, OpenAIChatNode and PreviewAny (notes are ignored). Remove the node or mute it"
)


@dataclass(frozen=True)
class NodeSpec:
    inputs: dict[str, str]  # linked input name -> type ("*" takes anything)
    required: frozenset[str]
    widgets: tuple[str, ...]  # in ComfyUI's widget order
    outputs: tuple[str, ...]
    linkable: frozenset[str] = frozenset()  # widgets that may be fed by a STRING link instead
    output_node: bool = False


SPECS: dict[str, NodeSpec] = {
    "LoadImage": NodeSpec({}, frozenset({"image"}), ("image", "upload"), ("IMAGE", "MASK")),
    "ImageBatch": NodeSpec({"image1": "IMAGE", "image2": "IMAGE"}, frozenset({"image1", "image2"}), (), ("IMAGE",)),
    # Autogrow inputs images.image0, images.image1, ...: at least two, like ComfyUI's min=2.
    "BatchImagesNode": NodeSpec({}, frozenset({"images.image0", "images.image1"}), (), ("IMAGE",)),
    "OpenAIChatConfig": NodeSpec(
        {},
        frozenset(),
        ("truncation", "max_output_tokens", "instructions"),
        ("OPENAI_CHAT_CONFIG",),
        linkable=frozenset({"instructions"}),
    ),
    "OpenAIInputFiles": NodeSpec(
        {"OPENAI_INPUT_FILES": "OPENAI_INPUT_FILES"}, frozenset({"file"}), ("file",), ("OPENAI_INPUT_FILES",)
    ),
    "OpenAIChatNode": NodeSpec(
        {"images": "IMAGE", "files": "OPENAI_INPUT_FILES", "advanced_options": "OPENAI_CHAT_CONFIG"},
        frozenset({"prompt"}),
        ("prompt", "persist_context", "model"),
        ("STRING",),
        linkable=frozenset({"prompt"}),
        output_node=True,  # ComfyUI runs only what feeds an output; a chat's answer is an output here
    ),
    "PreviewAny": NodeSpec({"source": "*"}, frozenset({"source"}), (), (), output_node=True),
}


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
