"""run_workflow sends what ComfyUI sends (issue 11, point 7): no limits without an Advanced Options node, no
chat that reaches no output, an unchanged workflow answered from its last run, hidden characters reported."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from server.settings import Settings
from tests import images
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails, user_content


@pytest.fixture
def inputs(pictures: Path) -> Path:
    folder = pictures / "input"
    folder.mkdir()
    (folder / "example.png").write_bytes(images.png(64, 48, (200, 30, 30)))
    return folder


def workflow(*, options: str = "linked", preview: bool = True, prompt: str = "Describe this image") -> dict[str, Any]:
    """ComfyUI's template in the API format; `options`: linked, muted (UI: mode 2), bypassed (mode 4) or absent."""
    found: dict[str, Any] = {
        "5": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "3": {
            "class_type": "OpenAIChatNode",
            "inputs": {"prompt": prompt, "persist_context": False, "model": "gpt-4o", "images": ["5", 0]},
        },
    }
    if options != "absent":
        found["4"] = {
            "class_type": "OpenAIChatConfig",
            "inputs": {"truncation": "disabled", "max_output_tokens": 2000, "instructions": "Be brief."},
        }
        found["3"]["inputs"]["advanced_options"] = ["4", 0]
    if preview:
        found["2"] = {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}
    return found


def as_ui(api: dict[str, Any], modes: dict[str, int]) -> dict[str, Any]:
    """The same workflow in the UI format, where a node can be muted or bypassed."""
    nodes: list[dict[str, Any]] = []
    links: list[list[Any]] = []
    for node_id, spec in api.items():
        inputs: list[dict[str, Any]] = []
        for name, value in spec["inputs"].items():
            if isinstance(value, list):
                links.append([len(links) + 1, int(value[0]), value[1], int(node_id), len(inputs), "*"])
                inputs.append({"name": name, "type": "*", "link": len(links)})
        widgets = {
            "LoadImage": ["image"],
            "OpenAIChatNode": ["prompt", "persist_context", "model"],
            "OpenAIChatConfig": ["truncation", "max_output_tokens", "instructions"],
        }.get(spec["class_type"], [])
        nodes.append(
            {
                "id": int(node_id),
                "type": spec["class_type"],
                "mode": modes.get(node_id, 0),
                "inputs": inputs,
                "widgets_values": [spec["inputs"][w] for w in widgets if w in spec["inputs"]],
            }
        )
    return {"nodes": nodes, "links": links}


async def run(client: Any, inputs: Path, document: dict[str, Any], **more: Any) -> dict[str, Any]:
    return await call(client, "run_workflow", {"workflow": document, "input_dir": str(inputs), "name": "t", **more})


@pytest.mark.parametrize("options", ["absent", "muted", "bypassed"])
async def test_without_advanced_options_no_limits_are_sent_as_in_comfyui(
    settings: Settings, inputs: Path, upstream: FakeUpstream, options: str
) -> None:
    modes = {"muted": {"4": 2}, "bypassed": {"4": 4}}.get(options, {})
    async with connect(settings) as client:
        await run(client, inputs, as_ui(workflow(options=options), modes))
        await call(client, "set_options", {"model": "gpt-4o"})
        await call(client, "chat", {"images": [], "prompt": "And by hand?"})
    from_workflow, by_hand = upstream.responses_bodies()
    assert "max_output_tokens" not in from_workflow and "truncation" not in from_workflow
    assert "instructions" not in from_workflow
    # set_options users keep the tool's own defaults.
    assert by_hand["max_output_tokens"] == 4096 and by_hand["truncation"] == "auto"


async def test_advanced_options_are_sent_as_the_node_says(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    async with connect(settings) as client:
        await run(client, inputs, workflow())
    [body] = upstream.responses_bodies()
    assert (body["max_output_tokens"], body["truncation"], body["instructions"]) == (2000, "disabled", "Be brief.")
    assert body["store"] is True  # ComfyUI's node always asks for it


async def test_a_chat_that_reaches_no_output_is_not_run(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    extra = workflow()
    extra["7"] = copy.deepcopy(extra["3"])  # a second chat node whose answer goes nowhere
    async with connect(settings) as client:
        refused = await fails(client, "run_workflow", {"workflow": workflow(preview=False), "input_dir": str(inputs)})
        result = await run(client, inputs, extra)
    assert "Prompt has no outputs" in refused and "PreviewAny" in refused
    assert list(result["chats"]) == ["3"] and len(upstream.responses_bodies()) == 1
    reasons = {s["node_id"]: s["reason"] for s in result["skipped"]}
    assert "not connected to a PreviewAny" in reasons["7"]


async def test_an_unchanged_workflow_is_answered_from_its_last_run(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    upstream.add_reply(Reply(text="A red card."))
    upstream.add_reply(Reply(text="A red card, again."))
    upstream.add_reply(Reply(text="A blue card."))
    async with connect(settings) as client:
        first = await run(client, inputs, workflow())
        cached = await run(client, inputs, workflow())
        fresh = await run(client, inputs, workflow(), fresh=True)
        (inputs / "example.png").write_bytes(images.png(64, 48, (30, 30, 200)))  # the input file changed
        changed = await run(client, inputs, workflow())
    assert len(upstream.responses_bodies()) == 3
    assert cached["previews"] == first["previews"] == {"2": "A red card."}
    assert cached["chats"]["3"]["turn"] == 1 and not first["notes"]
    assert any("fresh=true" in note and "ComfyUI's cache" in note for note in cached["notes"])
    assert fresh["previews"] == {"2": "A red card, again."} and not fresh["notes"]
    assert changed["previews"] == {"2": "A blue card."} and not changed["notes"]


async def test_hidden_characters_removed_from_a_prompt_are_reported(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    hidden = "Describe\u200b this image\U000e0049\U000e0047\U000e004e"
    async with connect(settings) as client:
        result = await run(client, inputs, workflow(prompt=hidden))
        plain = await run(client, inputs, workflow(prompt="Describe it"))
    sent = user_content(upstream.responses_bodies()[0])[0]["text"]
    assert sent == "Describe this image"
    [note] = result["chats"]["3"]["notes"]
    assert note.startswith("4 hidden characters were removed from the prompt") and "verbatim" in note
    assert "U+200B ZERO WIDTH SPACE" in note and "U+E0049 TAG LATIN CAPITAL LETTER I" in note
    assert not plain["chats"]["3"]["notes"]
