"""Exactly once at the Batch API's edge: a run stopped between creating a batch and recording it adopts that
batch when it continues (found by its metadata through GET /v1/batches) instead of creating another; and the
same through run_batch, and a strict schema on the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from server.app import opened
from server.batch_service import OpenAIBatches, backend_of
from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call
from tests.test_batch_cli import ROOT, environment
from tests.test_batch_direct import make_folder
from tests.test_batch_tool import SCHEMA, finished
from tools import batch
from tools.batch_api import FileLimits
from tools.batch_direct import Progress
from tools.batch_spec import BatchSpec


class Killed(BaseException):
    """As if the process died there: nothing after it runs (not even `except Exception` handlers)."""


class DiesAfterCreating(OpenAIBatches):
    """Creates the batch upstream, then dies before the run can record it."""

    async def create(self, file_id: str, metadata: dict[str, str]) -> str:
        await super().create(file_id, metadata)
        raise Killed


class DiesBeforeCreating(OpenAIBatches):
    async def create(self, file_id: str, metadata: dict[str, str]) -> str:
        raise Killed


@pytest.mark.parametrize("dies", [DiesAfterCreating, DiesBeforeCreating])
async def test_a_run_killed_at_the_batch_edge_makes_each_batch_once(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream, dies: type[OpenAIBatches]
) -> None:
    folder = tmp_path / "photos"
    paths = make_folder(folder, 5)
    settings = replace(settings, allowed_dirs=[folder], store="sqlite", batch_poll_seconds=0.01)
    upstream.default_reply = Reply(text="batched caption")
    out = tmp_path / "results.jsonl"
    spec = BatchSpec(paths=tuple(paths), prompt="Caption it.", out=out, model="gpt-4.1-mini")
    for _ in range(3):  # older batches of someone else's, so that the search pages past them
        upstream.batches.create({"endpoint": "/v1/responses", "input_file_id": "file-x", "completion_window": "24h"})
    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        with pytest.raises(Killed):
            await batch.run(deps, ledger, via="batch-api", progress=Progress(total=5), service=dies(deps.upstream))
    made_before = len(upstream.batches.batches)

    async with opened(settings) as deps:
        backend = backend_of(deps.upstream, settings)
        planned = await batch.plan(deps, spec, via="direct", backend=backend)
        assert planned.via == "batch-api"  # images wait in a part: never asked directly, whatever --via says
        progress = Progress(total=5)
        await batch.execute(deps, planned.ledger, via=planned.via, concurrency=4, progress=progress, backend=backend)
    assert len(upstream.batches.batches) == 3 + 1  # one batch for the run's one part, whichever way it died
    assert made_before == (4 if dies is DiesAfterCreating else 3)
    assert upstream.batches.lines_answered == 5  # each image billed once
    made = upstream.batches.created_bodies[3:]
    assert [body["metadata"] for body in made] == [{"imagechat_run": spec.run_id, "imagechat_part": "0"}]
    assert progress.done == 5
    assert sorted(json.loads(line)["path"] for line in out.read_text().splitlines()) == sorted(paths)


async def test_each_part_is_found_by_its_own_metadata_when_a_run_has_several(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "photos"
    paths = make_folder(folder, 5)
    settings = replace(settings, allowed_dirs=[folder], store="sqlite")
    spec = BatchSpec(paths=tuple(paths), prompt="Caption it.", out=tmp_path / "r.csv", model="gpt-4.1-mini")

    class DiesOnTheSecond(OpenAIBatches):
        async def create(self, file_id: str, metadata: dict[str, str]) -> str:
            made = await super().create(file_id, metadata)
            if metadata["imagechat_part"] == "1":
                raise Killed
            return made

    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        with pytest.raises(Killed):
            await batch.run(deps, ledger, via="batch-api", progress=Progress(total=5),
                            service=DiesOnTheSecond(deps.upstream), limits=FileLimits(2))  # fmt: skip
    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        await batch.run(deps, ledger, via="batch-api", progress=Progress(total=5),
                        service=OpenAIBatches(deps.upstream), poll_seconds=0.01, limits=FileLimits(2))  # fmt: skip
    parts = [body["metadata"]["imagechat_part"] for body in upstream.batches.created_bodies]
    assert parts == ["0", "1", "2"]  # 5 images at 2 a file: three parts, each made once
    assert upstream.batches.lines_answered == 5
    assert upstream.batches.list_calls >= 1  # the second part was found by listing, not made again


async def test_run_batch_on_the_batch_api(
    settings: Settings, pictures: Path, upstream: FakeUpstream, mode: str
) -> None:
    upstream.default_reply = Reply(text='{"caption": "a card", "people": 0}')
    arguments = {"sources": [str(pictures)], "prompt": "Describe.", "via": "batch-api", "json_schema": SCHEMA}
    async with connect(settings, mode, batch_poll_seconds=0.01) as client:
        started = await call(client, "run_batch", arguments)
        assert started["via"] == "batch-api"
        view = await finished(client, started["run_id"])
    assert view["done"] == 4 and view["results"][0]["answer"] == {"caption": "a card", "people": 0}
    assert len(upstream.batches.batches) == 1 and upstream.batches.lines_answered == 4
    lines = upstream.batches.files[next(iter(upstream.batches.batches.values()))["input_file_id"]][1]
    body = json.loads(lines.splitlines()[0])["body"]
    assert body["text"]["format"] == {"type": "json_schema", "name": "answer", "schema": SCHEMA, "strict": True}


def test_the_command_refuses_a_schema_strict_mode_would_refuse(tmp_path: Path, upstream: FakeUpstream) -> None:
    folder = tmp_path / "photos"
    make_folder(folder, 2)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}))
    command = [sys.executable, "-m", "server", "batch", str(folder), "-p", "x", "--json-schema", str(schema)]
    done = subprocess.run(
        command, cwd=ROOT, env=environment(tmp_path, upstream), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "additionalProperties" in done.stderr
    assert upstream.requests == []
