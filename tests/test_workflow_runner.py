"""The workflow runner table: every node type has its shape, checks and behaviour, and the pre-flight applies the
rules of set_options and chat themselves (one rule, one place)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from server.settings import Settings
from tests import images
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream
from tests.helpers import fails
from tests.test_run_workflow import node, template
from tools import workflow_graph
from tools.deps import Deps
from tools.workflow_nodes import SPECS
from tools.workflow_run import RUNNERS, Files, Images, Run, run_nodes


@pytest.fixture
def inputs(pictures: Path) -> Path:
    folder = pictures / "input"
    folder.mkdir()
    (folder / "example.png").write_bytes(images.png(64, 48, (200, 30, 30)))
    return folder


def test_every_node_type_has_a_runner() -> None:
    assert RUNNERS.keys() == SPECS.keys()


async def test_batches_concatenate_typed_values_in_input_order() -> None:
    plan = workflow_graph.parse(
        {
            "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "2": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
            "3": {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["1", 0]}},
            "4": {"class_type": "OpenAIInputFiles", "inputs": {"file": "x.txt"}},
            "5": {"class_type": "OpenAIInputFiles", "inputs": {"file": "y.txt", "OPENAI_INPUT_FILES": ["4", 0]}},
            "6": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
            "7": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
        }
    )
    # The loaders' outputs as workflow.read_inputs leaves them; previews of batches never touch the store.
    run = Run(cast(Deps, None), "test", plan)
    run.outputs.update(
        {
            "1": (Images(["img_a"]), None),
            "2": (Images(["img_b1", "img_b2"]), None),
            "4": (Files(["file_x"]),),
            "5": (Files(["file_y"]),),
        }
    )
    await run_nodes(run)
    assert run.outputs["3"] == (Images(["img_b1", "img_b2", "img_a"]),)
    assert run.outputs["5"] == (Files(["file_y", "file_x"]),)  # its own file first, then the chained ones
    assert run.previews["6"] == '[\n  "image://img_b1",\n  "image://img_b2",\n  "image://img_a"\n]'
    assert run.previews["7"] == '[\n  "file_y",\n  "file_x"\n]'


def long_instructions(workflow: dict[str, Any]) -> None:
    node(workflow, 4)["widgets_values"][2] = "x" * 300


def tiny_output(workflow: dict[str, Any]) -> None:
    node(workflow, 4)["widgets_values"][1] = 5


def empty_prompt(workflow: dict[str, Any]) -> None:
    node(workflow, 3)["widgets_values"][0] = "<starting_point_id:start>  "


@pytest.mark.parametrize(
    ("change", "step", "label"),
    [
        (long_instructions, ("set_options", {"instructions": "x" * 300}), "node 4 (OpenAIChatConfig)"),
        (empty_prompt, ("chat", {"prompt": "  "}), "node 3 (OpenAIChatNode)"),
        # The tool's schema refuses this before the step; the step's own words are what a workflow gets.
        (tiny_output, "max_output_tokens must be between 16 and 128000, not 5.", "node 4 (OpenAIChatConfig)"),
    ],
    ids=["instructions too long", "empty prompt", "max_output_tokens out of range"],
)
async def test_the_pre_flight_refuses_with_the_steps_own_rules(
    settings: Settings, inputs: Path, upstream: FakeUpstream, change: Any, step: Any, label: str
) -> None:
    workflow = template()
    change(workflow)
    async with connect(settings, max_prompt_chars=200) as client:
        rule = step if isinstance(step, str) else (await fails(client, *step)).split(": ", 1)[1]  # the SDK's prefix
        refused = await fails(client, "run_workflow", {"workflow": workflow, "input_dir": str(inputs)})
    assert "The workflow cannot run (nothing was sent): " in refused
    assert f"{label}: {rule.rstrip('.')}" in refused
    assert upstream.requests == []
