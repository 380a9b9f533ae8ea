"""The allowed-folder check cannot be raced by swapping a folder for a symlink to an outside one.

The attack as it was found: a folder inside the allowed folder and a symlink beside it that points outside are
exchanged atomically (renameat2 RENAME_EXCHANGE), over and over, while the tools read a file "inside" that
folder. A reader that resolves and checks the path and then opens it again by name reads the outside file now
and then (83 of 1,500 load_image calls did). Every read here must be either the inside file or a refusal.
"""

from __future__ import annotations

import base64
import ctypes
import io
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from PIL import Image

from server.settings import Settings
from tests import images
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream
from tests.helpers import user_content

TRIES = 2000  # per tool, as many as the time bound allows
TIME_BOUND = 25.0  # seconds per tool
INSIDE, OUTSIDE = (10, 10), (20, 20)  # the two images' sizes tell them apart

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")


def exchange_function() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        return libc.renameat2
    except AttributeError:
        pytest.skip("this C library has no renameat2")


@contextmanager
def swapping(a: Path, b: Path) -> Iterator[list[int]]:
    """Exchange `a` and `b` atomically in a loop in a background thread; yields the count of swaps (so far)."""
    renameat2 = exchange_function()
    stop, swaps, errors = threading.Event(), [0], []

    def loop() -> None:
        while not stop.is_set():
            if renameat2(-100, bytes(a), -100, bytes(b), 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
                errors.append(ctypes.get_errno())
                return
            swaps[0] += 1

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield swaps
    finally:
        stop.set()
        thread.join(5)
    assert not errors, f"renameat2 failed with errno {errors[0]}"


@pytest.fixture
def race(tmp_path: Path, pictures: Path) -> tuple[Path, Path]:
    """pictures/sub (a real folder) and pictures/door (a symlink to an outside folder), each holding x.png and
    config.json: the outside ones differ in size from the inside ones."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(images.png(*OUTSIDE))
    (outside / "config.json").write_text(json.dumps({"secret": "outside" * 10}), encoding="utf-8")
    sub = pictures / "sub"
    sub.mkdir()
    (sub / "x.png").write_bytes(images.png(*INSIDE))
    (sub / "config.json").write_text(json.dumps({"where": "inside"}), encoding="utf-8")
    door = pictures / "door"
    door.symlink_to(outside, target_is_directory=True)
    return sub, door


async def tries(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[int, list[dict[str, object]]]:
    """Call `tool` up to TRIES times within TIME_BOUND; the count and the successful results."""
    done, results = 0, []
    started = time.monotonic()
    while done < TRIES and time.monotonic() - started < TIME_BOUND:
        result = await client.call_tool(tool, arguments)
        done += 1
        if not result.is_error:
            assert result.structured_content is not None
            results.append(result.structured_content)
        else:
            text = " ".join(getattr(block, "text", "") for block in result.content)
            assert not text.startswith(f"Error executing tool {tool}") or ": " in text, text  # never wordless
    return done, results


async def test_load_image_never_reads_the_outside_file_while_folders_are_swapped(
    settings: Settings, race: tuple[Path, Path]
) -> None:
    sub, door = race
    async with connect(settings) as client:
        with swapping(sub, door) as swaps:
            done, results = await tries(client, "load_image", {"source": str(sub / "x.png")})
    sizes = [(image["width"], image["height"]) for result in results for image in result["images"]]  # type: ignore[attr-defined]
    escapes = sum(1 for size in sizes if size == OUTSIDE)
    print(f"load_image: {done} tries, {len(sizes)} read, {escapes} escapes, {swaps[0]} swaps")
    assert done >= 200 and swaps[0] >= 100  # the race really ran
    assert sizes  # and the inside file was still read between the swaps
    assert escapes == 0
    assert set(sizes) == {INSIDE}


async def test_attach_file_never_reads_the_outside_file_while_folders_are_swapped(
    settings: Settings, race: tuple[Path, Path]
) -> None:
    sub, door = race
    inside_bytes = (sub / "config.json").stat().st_size
    async with connect(settings) as client:
        with swapping(sub, door) as swaps:
            done, results = await tries(client, "attach_file", {"source": str(sub / "config.json")})
    sizes = [result["file"]["bytes"] for result in results]  # type: ignore[index]
    escapes = sum(1 for size in sizes if size != inside_bytes)
    print(f"attach_file: {done} tries, {len(sizes)} read, {escapes} escapes, {swaps[0]} swaps")
    assert done >= 200 and swaps[0] >= 100
    assert sizes
    assert escapes == 0


async def test_workflow_input_files_never_come_from_the_outside_folder_while_swapped(
    settings: Settings, race: tuple[Path, Path], pictures: Path, upstream: FakeUpstream
) -> None:
    sub, door = race
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "sub/x.png"}},
        "2": {"class_type": "OpenAIChatNode", "inputs": {"prompt": "What is it?", "images": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    # fresh: every try reads and sends again, rather than answering from the previous run as ComfyUI's cache does.
    arguments = {"workflow": json.dumps(workflow), "input_dir": str(pictures), "fresh": True}
    async with connect(settings) as client:
        with swapping(sub, door) as swaps:
            done, results = await tries(client, "run_workflow", arguments)
    sent = [sent_size(body) for body in upstream.responses_bodies()]
    escapes = sum(1 for size in sent if size == OUTSIDE)
    print(f"run_workflow: {done} tries, {len(sent)} sent, {escapes} escapes, {swaps[0]} swaps")
    assert done >= 50 and swaps[0] >= 100
    assert sent and len(sent) == len(results)
    assert escapes == 0


def sent_size(body: dict[str, object]) -> tuple[int, int]:
    part = next(p for p in user_content(body) if p["type"] == "input_image")
    payload = str(part["image_url"]).partition(",")[2]
    with Image.open(io.BytesIO(base64.b64decode(payload))) as image:
        return image.size
