"""Bulk runs for agents (issue 17, point 5): run_batch, preview(target="batch:<id>") and the batches:// and
batch:// resources, through the protocol in both eras, against the fake upstream."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from server.app import opened
from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails
from tests.test_batch_direct import image_digests, make_folder
from tools import batch_runs, batch_view

SCHEMA = {
    "type": "object",
    "properties": {"caption": {"type": "string"}, "people": {"type": "integer"}},
    "required": ["caption", "people"],
    "additionalProperties": False,
}


async def finished(client: Client, run_id: str, seconds: float = 60) -> dict[str, Any]:
    """The run's preview once nothing is pending (its structured view)."""
    deadline = time.monotonic() + seconds
    while True:
        shown = await call(client, "preview", {"target": f"batch:{run_id}"})
        view: dict[str, Any] = shown["batch"]
        if view["status"] == "finished" or time.monotonic() > deadline:
            return view
        await anyio.sleep(0.05)


async def resource_text(client: Client, uri: str) -> str:
    contents = (await client.read_resource(uri)).contents[0]
    return str(getattr(contents, "text", ""))


async def test_a_run_started_by_the_tool_answers_each_image_once(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    folder = tmp_path / "shoot"
    made = make_folder(folder / "a", 8)  # eight distinct images: the last three moved to b/
    (folder / "b").mkdir()
    paths = made[:5] + [str(Path(path).rename(folder / "b" / Path(path).name)) for path in made[5:]]
    (folder / "a" / "notes.txt").write_text("not an image")
    upstream.default_reply = Reply(text="a small square", usage={"input_tokens": 100, "output_tokens": 10})
    settings = replace(settings, allowed_dirs=[folder])
    arguments = {"sources": [str(folder)], "prompt": "Caption it.", "concurrency": 3, "via": "direct"}
    async with connect(settings, mode) as client:
        result = await client.call_tool("run_batch", arguments)
        started = result.structured_content or {}
        assert started["status"] == "started" and started["images"] == 8 and started["already_answered"] == 0
        said = result.content[0].text  # type: ignore[union-attr]
        assert said.startswith(f"Run {started['run_id']} started via direct: 8 images, 0 already answered; at most $")
        assert f"preview(target='batch:{started['run_id']}') shows progress" in said
        assert started["estimated_cost"] > 0 and started["via"] == "direct"
        view = await finished(client, started["run_id"])
        assert (view["done"], view["failed"], view["pending"]) == (8, 0, 0)
        assert view["cost"] == pytest.approx(8 * (100 * 0.40 + 10 * 1.60) / 1e6)
        assert [row["path"] for row in view["results"]] == paths  # the folders' sorted order
        assert all(row["answer"] == "a small square" for row in view["results"])
        shown = await client.call_tool("preview", {"target": f"batch:{started['run_id']}"})
        text = shown.content[0].text  # type: ignore[union-attr]
        assert "8 done, 0 failed, 0 pending" in text and f"{paths[0]}: done: a small square" in text

        lines = (await resource_text(client, f"batch://{started['run_id']}")).splitlines()
        assert sorted(json.loads(line)["path"] for line in lines) == sorted(paths)
        table = list(csv.DictReader(io.StringIO(await resource_text(client, f"batch://{started['run_id']}/csv"))))
        assert [row["path"] for row in table] == paths and table[0]["answer"] == "a small square"
        runs = json.loads(await resource_text(client, "batches://all"))
        assert [(run["id"], run["status"], run["by"]) for run in runs] == [(started["run_id"], "finished", "tool")]

        again = await call(client, "run_batch", arguments)  # the same arguments: the same run, nothing left
        assert again["run_id"] == started["run_id"] and again["status"] == "finished"
        assert again["already_answered"] == 8
    assert len(upstream.answered) == 8
    assert len(set(image_digests(upstream.answered))) == 8  # each image once, none twice
    assert all(body["store"] is False for body in upstream.answered)


async def test_a_strict_json_schema_and_results_a_page_at_a_time(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_view, "PAGE", 2)
    upstream.default_reply = Reply(text='{"caption": "a test card", "people": 0}')
    async with connect(settings, mode) as client:
        started = await call(
            client, "run_batch", {"sources": [str(pictures)], "prompt": "Describe.", "json_schema": SCHEMA}
        )
        view = await finished(client, started["run_id"])
        assert view["done"] == 4 and len(view["results"]) == 2  # red, blue, rotated, anim; two a page
        assert view["results"][0]["answer"] == {"caption": "a test card", "people": 0}  # parsed
        second = await call(client, "preview", {"target": view["next"]})
        assert second["batch"]["results"][0]["path"] not in [row["path"] for row in view["results"]]
        assert second["batch"]["next"] is None
    formats = [body["text"]["format"] for body in upstream.answered]
    assert formats == [{"type": "json_schema", "name": "answer", "schema": SCHEMA, "strict": True}] * 4


async def test_a_schema_strict_mode_refuses_and_a_path_outside_are_refused_before_anything_is_sent(
    tmp_path: Path, settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    outside = tmp_path / "elsewhere"
    make_folder(outside, 2)
    loose = {"type": "object", "properties": {"caption": {"type": "string"}}, "required": ["caption"]}
    async with connect(settings, mode) as client:
        said = await fails(client, "run_batch", {"sources": [str(outside)], "prompt": "Caption it."})
        assert "outside the allowed folders" in said
        load_said = await fails(client, "load_image", {"source": str(outside / "img0000.png")})
        file_said = await fails(client, "run_batch", {"sources": [str(outside / "img0000.png")], "prompt": "x"})
        assert file_said.split(": ", 1)[1] == load_said.split(": ", 1)[1]  # the same words as load_image
        schema_said = await fails(
            client, "run_batch", {"sources": [str(pictures)], "prompt": "x", "json_schema": loose}
        )
        assert "additionalProperties" in schema_said and "Nothing was sent" in schema_said
        assert json.loads(await resource_text(client, "batches://all")) == []
    assert upstream.answered == [] and upstream.requests == []


async def test_an_unknown_run_is_not_found_as_an_unknown_conversation_is(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        said = await fails(client, "preview", {"target": "batch:batch_nope"})
        assert "No batch run 'batch_nope'. Known runs: none yet." in said
        conversation = await fails(client, "preview", {"conversation_id": "nope"})
        assert "No conversation 'nope'. Known conversations: none yet." in conversation
        resumed = await fails(client, "run_batch", {"resume": "batch_nope"})
        assert "No batch run 'batch_nope'" in resumed
        with pytest.raises(MCPError) as caught:
            await client.read_resource("batch://batch_nope")
        assert "No batch run 'batch_nope'" in str(caught.value)
        dry = await call(client, "run_batch", {"sources": ["red.png", "blue.jpg"], "prompt": "x", "dry_run": True})
        assert dry["status"] == "estimated" and dry["images"] == 2
        said = await fails(client, "preview", {"target": "batch:batch_nope"})
        assert f"Known runs: '{dry['run_id']}'" in said


async def test_a_run_cut_off_by_a_stop_continues_when_the_server_starts_again(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "shoot"
    paths = make_folder(folder, 16)
    settings = replace(settings, allowed_dirs=[folder], store="sqlite")
    upstream.default_reply = Reply(text="caption", delay=0.15)
    async with connect(settings) as client:
        started = await call(client, "run_batch", {"sources": [str(folder)], "prompt": "Caption it.", "concurrency": 2})
        run_id = started["run_id"]
        deadline = time.monotonic() + 30
        while (await call(client, "preview", {"target": f"batch:{run_id}"}))["batch"]["done"] < 4:
            assert time.monotonic() < deadline
            await anyio.sleep(0.02)
    while upstream.in_flight:  # let the requests cut off by the stop finish at the fake
        await anyio.sleep(0.02)
    asked_before = len(upstream.answered)
    async with opened(settings) as deps:  # the store as the stop left it (no server: nothing continues it)
        answered_at_stop = len((await batch_view.results(deps, run_id))[1])
        assert (await batch_runs.get_run(deps.store, run_id) or {})["status"] == "running"
    assert 4 <= answered_at_stop < 16

    async with connect(settings) as client:  # the server starts again with the same store
        view = await finished(client, run_id)
        lines = (await resource_text(client, f"batch://{run_id}")).splitlines()
    assert (view["done"], view["pending"]) == (16, 0)
    assert sorted(json.loads(line)["path"] for line in lines) == sorted(paths)  # complete, none twice
    assert len(upstream.answered) - asked_before == 16 - answered_at_stop  # nothing answered is sent again


async def test_a_strict_schema_on_chat_completions(settings: Settings, pictures: Path, upstream: FakeUpstream) -> None:
    upstream.default_reply = Reply(text='{"caption": "a card", "people": 1}')
    async with connect(settings, api="chat") as client:
        started = await call(
            client, "run_batch", {"sources": [str(pictures / "red.png")], "prompt": "Describe.", "json_schema": SCHEMA}
        )
        view = await finished(client, started["run_id"])
    assert view["results"][0]["answer"] == {"caption": "a card", "people": 1}
    (body,) = upstream.chat_bodies()  # checked against OpenAI's CreateChatCompletionRequest as it arrived
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
    }
