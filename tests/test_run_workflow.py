"""ComfyUI workflow files run through the run_workflow tool, against the fake upstream.

The fixture is ComfyUI's own OpenAI Chat template (UI format), copied into tests/fixtures so the tests do not
depend on anything outside the repository. Variants are made by editing its JSON the way the ComfyUI editor
would: enabling a group, bypassing or muting a node, rewiring a link.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any, cast

import pytest
from PIL import Image

from server.settings import Settings
from tests import images
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, decoded_image, fails, user_content
from tools import workflow_graph, workflow_nodes

FIXTURE = Path(__file__).parent / "fixtures" / "comfyui" / "api_openai_chat.json"
RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)


@pytest.fixture
def inputs(pictures: Path) -> Path:
    """ComfyUI's input folder, inside the allowed folder: the template's example.png and input.txt."""
    folder = pictures / "input"
    (folder / "sub").mkdir(parents=True)
    (folder / "example.png").write_bytes(images.png(64, 48, RED))
    (folder / "green.png").write_bytes(images.png(40, 30, GREEN))
    (folder / "sub" / "blue.png").write_bytes(images.png(30, 40, BLUE))
    (folder / "input.txt").write_text("Shot on a rainy afternoon.\n", encoding="utf-8")
    (folder / "notes.md").write_text("# Notes\nThe subject is a test card.\n", encoding="utf-8")
    return folder


@pytest.fixture(autouse=True)
def o1_pro(upstream: FakeUpstream) -> None:
    upstream.models.append("o1-pro")  # the template's model


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return loaded


def node(workflow: dict[str, Any], node_id: int) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in workflow["nodes"] if n["id"] == node_id)
    return found


def with_batch_group(workflow: dict[str, Any]) -> dict[str, Any]:
    """The template's 'Multiple images input example' group enabled, its last ImageBatch wired to the chat."""
    workflow = copy.deepcopy(workflow)
    for node_id, name in ((11, "example.png"), (12, "green.png [input]"), (13, "sub/blue.png")):
        node(workflow, node_id)["mode"] = 0
        node(workflow, node_id)["widgets_values"][0] = name
    for node_id in (10, 16):
        node(workflow, node_id)["mode"] = 0
    next(link for link in workflow["links"] if link[0] == 4)[1] = 16  # link 4 now runs 16 -> chat's images
    node(workflow, 16)["outputs"][0]["links"] = [4]
    node(workflow, 5)["outputs"][0]["links"] = []
    return workflow


def colours(body: dict[str, Any]) -> list[tuple[int, int, int]]:
    found = []
    for part in user_content(body):
        if part["type"] == "input_image":
            with Image.open(io.BytesIO(decoded_image(part)[1])) as sent:
                pixel = cast(tuple[int, int, int], sent.convert("RGB").getpixel((5, 5)))
            # Images may be re-encoded on the way (JPEG): match each to the nearest test colour.
            found.append(min((RED, GREEN, BLUE), key=lambda c: sum(abs(a - b) for a, b in zip(c, pixel, strict=True))))
    return found


async def test_the_template_runs_with_its_model_options_and_prompt(
    settings: Settings, pictures: Path, inputs: Path, upstream: FakeUpstream, mode: str
) -> None:
    (pictures / "api_openai_chat.json").write_bytes(FIXTURE.read_bytes())
    upstream.add_reply(Reply(text="a red test card, flat lighting"))
    async with connect(settings, mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await call(
            client, "run_workflow", {"workflow": str(pictures / "api_openai_chat.json"), "input_dir": str(inputs)}
        )
        again = await call(client, "preview", {"conversation_id": "workflow:api_openai_chat:node3"})

    annotations = tools["run_workflow"].annotations
    assert annotations is not None and annotations.open_world_hint and not annotations.read_only_hint
    assert result["workflow"] == "api_openai_chat" and result["format"] == "ui"
    assert result["previews"] == {"2": "a red test card, flat lighting"}
    assert result["chats"]["3"]["status"] == "completed" and result["chats"]["3"]["model"] == "o1-pro"
    assert again["text"] == "a red test card, flat lighting"
    reasons = {s["node_id"]: s["reason"] for s in result["skipped"]}
    assert reasons["6"].startswith("bypassed") and reasons["7"].startswith("bypassed")
    assert reasons["9"] == reasons["18"] == "a note"

    [body] = upstream.responses_bodies()
    assert body["model"] == "o1-pro"
    assert body["instructions"] == node(template(), 4)["widgets_values"][2]
    assert body["truncation"] == "auto" and body["max_output_tokens"] == 4096
    assert "previous_response_id" not in body
    parts = user_content(body)
    assert [p["type"] for p in parts] == ["input_text", "input_image"]  # the Input Files nodes are bypassed
    assert parts[0]["text"] == "Describe this image"
    assert colours(body) == [RED]


async def test_persist_context_continues_the_node_conversation_across_runs(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    alone, persisted = template(), template()
    node(persisted, 3)["widgets_values"][1] = True
    async with connect(settings) as client:
        first = await call(client, "run_workflow", {"workflow": alone, "input_dir": str(inputs), "name": "cards"})
        second = await call(
            client, "run_workflow", {"workflow": alone, "input_dir": str(inputs), "name": "cards", "fresh": True}
        )
        third = await call(client, "run_workflow", {"workflow": persisted, "input_dir": str(inputs), "name": "cards"})

    bodies = upstream.responses_bodies()
    assert "previous_response_id" not in bodies[0] and "previous_response_id" not in bodies[1]
    assert bodies[2]["previous_response_id"] == second["chats"]["3"]["response_id"]
    assert [r["chats"]["3"]["turn"] for r in (first, second, third)] == [1, 2, 3]
    assert third["chats"]["3"]["conversation_id"] == "workflow:cards:node3"


async def test_enabled_batch_group_sends_every_image_in_order(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    async with connect(settings) as client:
        result = await call(
            client, "run_workflow", {"workflow": with_batch_group(template()), "input_dir": str(inputs)}
        )

    [body] = upstream.responses_bodies()
    assert colours(body) == [RED, GREEN, BLUE]  # ImageBatch(ImageBatch(11, 12), 13)
    assert len(result["chats"]["3"]["images"]) == 3
    assert "not connected" in {s["node_id"]: s["reason"] for s in result["skipped"]}["5"]


async def test_the_same_image_batched_twice_is_sent_twice_as_in_comfyui(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    workflow = with_batch_group(template())
    node(workflow, 12)["widgets_values"][0] = "example.png"
    async with connect(settings) as client:
        await call(client, "run_workflow", {"workflow": workflow, "input_dir": str(inputs)})
    assert colours(upstream.responses_bodies()[0]) == [RED, RED, BLUE]


async def test_a_bypassed_batch_passes_its_first_image_input_through(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    workflow = with_batch_group(template())
    node(workflow, 16)["mode"] = 4  # bypassed: the chat gets 16's image1, which is batch 10's output
    async with connect(settings) as client:
        result = await call(client, "run_workflow", {"workflow": workflow, "input_dir": str(inputs)})

    assert colours(upstream.responses_bodies()[0]) == [RED, GREEN]
    reasons = {s["node_id"]: s["reason"] for s in result["skipped"]}
    assert reasons["16"].startswith("bypassed") and "not connected" in reasons["13"]


async def test_chained_input_files_are_sent_after_the_images(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    workflow = template()
    node(workflow, 6)["mode"] = node(workflow, 7)["mode"] = 0
    node(workflow, 6)["widgets_values"] = ["notes.md"]
    async with connect(settings) as client:
        await call(client, "run_workflow", {"workflow": workflow, "input_dir": str(inputs)})

    parts = user_content(upstream.responses_bodies()[0])
    assert [p["type"] for p in parts] == ["input_text", "input_image", "input_file", "input_file"]
    assert [p["filename"] for p in parts[2:]] == ["input.txt", "notes.md"]  # node 7's own file, then node 6's


async def test_a_muted_options_node_leaves_the_defaults(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    workflow = template()
    node(workflow, 4)["mode"] = 2
    async with connect(settings) as client:
        result = await call(client, "run_workflow", {"workflow": workflow, "input_dir": str(inputs)})

    body = upstream.responses_bodies()[0]
    # Without an Advanced Options node ComfyUI sends no max_output_tokens and no truncation (issue 11): neither do we.
    assert "instructions" not in body and "max_output_tokens" not in body and body["model"] == "o1-pro"
    assert "truncation" not in body
    assert {s["node_id"]: s["reason"] for s in result["skipped"]}["4"].startswith("muted")


async def test_api_format_with_batch_images_and_a_chat_that_reads_another(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    upstream.add_reply(Reply(text="A red card and a green card."))
    upstream.add_reply(Reply(text="Two cards, red and green."))
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "green.png"}},
        "3": {"class_type": "BatchImagesNode", "inputs": {"images.image0": ["1", 0], "images.image1": ["2", 0]}},
        "4": {
            "class_type": "OpenAIChatConfig",
            "inputs": {"truncation": "disabled", "max_output_tokens": 300, "instructions": "Be brief."},
        },
        "5": {
            "class_type": "OpenAIChatNode",
            "inputs": {
                "prompt": "What is in these images?",
                "persist_context": False,
                "model": "gpt-4o",
                "images": ["3", 0],
                "advanced_options": ["4", 0],
            },
        },
        "6": {"class_type": "OpenAIChatNode", "inputs": {"prompt": ["5", 0], "model": "gpt-4.1-mini"}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
    }
    async with connect(settings) as client:
        result = await call(
            client, "run_workflow", {"workflow": json.dumps(workflow), "input_dir": str(inputs), "name": "api"}
        )

    first, second = upstream.responses_bodies()
    assert result["format"] == "api" and result["previews"] == {"7": "Two cards, red and green."}
    assert set(result["chats"]) == {"5", "6"}
    assert first["model"] == "gpt-4o" and first["truncation"] == "disabled" and first["max_output_tokens"] == 300
    assert first["instructions"] == "Be brief." and colours(first) == [RED, GREEN]
    assert second["model"] == "gpt-4.1-mini" and "instructions" not in second
    assert user_content(second) == [{"type": "input_text", "text": "A red card and a green card."}]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda w: w["nodes"].append({"id": 40, "type": "SaveImage", "mode": 0, "inputs": [], "outputs": []}),
            "node 40 (SaveImage): imagechat cannot run this node type",
        ),
        (lambda w: node(w, 5)["widgets_values"].__setitem__(0, "missing.png"), "node 5 (LoadImage): 'missing.png'"),
        (
            lambda w: node(w, 3)["inputs"][0].__setitem__("link", 99),
            "node 3 (OpenAIChatNode): input 'images' uses link 99",
        ),
        (lambda w: node(w, 5)["widgets_values"].__setitem__(0, "out.png [output]"), "ComfyUI's output folder"),
        (lambda w: node(w, 5)["widgets_values"].__setitem__(0, "../secret.png"), "not a name inside the input folder"),
        (
            lambda w: w["nodes"].append({"id": 41, "type": "Save\u200bImage\u202e", "mode": 0, "inputs": []}),
            "node 41 (SaveImage): imagechat cannot run",  # text from the file comes back without hidden characters
        ),
    ],
    ids=["unsupported node", "missing file", "dangling link", "output folder", "outside", "hidden characters"],
)
async def test_refusals_name_the_node_and_send_nothing(
    settings: Settings, inputs: Path, upstream: FakeUpstream, change: Any, expected: str
) -> None:
    workflow = template()
    change(workflow)
    async with connect(settings) as client:
        message = await fails(client, "run_workflow", {"workflow": workflow, "input_dir": str(inputs)})
    assert expected in message
    assert upstream.requests == []


async def test_a_muted_loader_feeding_a_batch_is_refused_naming_both(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    workflow = with_batch_group(template())
    node(workflow, 13)["mode"] = 2
    async with connect(settings) as client:
        message = await fails(client, "run_workflow", {"workflow": workflow, "input_dir": str(inputs)})
    assert "node 16 (ImageBatch): required input 'image2' is missing (its link comes from muted node 13" in message
    assert upstream.requests == []


async def test_a_muted_loader_leaves_the_chat_without_images(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    workflow = template()
    node(workflow, 5)["mode"] = 2  # images is optional: the chat runs on the text alone, as in ComfyUI
    async with connect(settings) as client:
        await call(client, "run_workflow", {"workflow": workflow, "input_dir": str(inputs)})
    assert [p["type"] for p in user_content(upstream.responses_bodies()[0])] == ["input_text"]


async def test_unsupported_nodes_that_are_muted_do_not_matter(
    settings: Settings, inputs: Path, upstream: FakeUpstream
) -> None:
    workflow = template()
    workflow["nodes"].append({"id": 40, "type": "SaveImage", "mode": 2, "inputs": [], "outputs": []})
    async with connect(settings) as client:
        result = await call(client, "run_workflow", {"workflow": workflow, "input_dir": str(inputs)})
    assert result["previews"]["2"] and len(upstream.responses_bodies()) == 1


async def test_input_dir_and_workflow_paths_stay_inside_the_allowed_folders(
    settings: Settings, tmp_path: Path, upstream: FakeUpstream
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "flow.json").write_bytes(FIXTURE.read_bytes())
    async with connect(settings) as client:
        folder = await fails(client, "run_workflow", {"workflow": template(), "input_dir": str(outside)})
        path = await fails(client, "run_workflow", {"workflow": str(outside / "flow.json")})
        junk = await fails(client, "run_workflow", {"workflow": {"hello": "world"}})
    assert "not a folder inside the allowed folders" in folder
    assert "outside the allowed folders" in path
    assert "not a ComfyUI workflow" in junk
    assert upstream.requests == []


def test_chat_widgets_tolerate_a_control_value_and_a_missing_model() -> None:
    parsed = workflow_nodes._chat_widgets(["Describe", 42, "randomize", True, "gpt-4o"])
    assert parsed == {"prompt": "Describe", "persist_context": True, "model": "gpt-4o"}
    assert workflow_nodes._chat_widgets(["Describe", False]) == {"prompt": "Describe", "persist_context": False}


def test_the_template_plan_runs_in_link_order() -> None:
    plan = workflow_graph.parse(template())
    assert [(n.id, n.type) for n in plan.order] == [
        ("4", "OpenAIChatConfig"),
        ("5", "LoadImage"),
        ("3", "OpenAIChatNode"),
        ("2", "PreviewAny"),
    ]
    with pytest.raises(Exception, match="cycle"):
        workflow_graph.parse(
            {
                "1": {"class_type": "OpenAIChatNode", "inputs": {"prompt": ["2", 0]}},
                "2": {"class_type": "OpenAIChatNode", "inputs": {"prompt": ["1", 0]}},
            }
        )
