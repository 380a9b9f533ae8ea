"""The Batch API path end to end against the fake's /v1/files and /v1/batches (real JSONL in and out)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from server.app import opened
from server.batch_service import OpenAIBatches
from server.settings import Settings
from tests.fake_upstream import FakeUpstream, Reply
from tests.test_batch_cli import ROOT, environment
from tests.test_batch_direct import make_folder
from tools import batch
from tools.batch_api import BatchState, FileLimits
from tools.batch_direct import Progress
from tools.batch_spec import BatchSpec


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


async def test_split_into_batches_with_failed_lines_then_a_rerun(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "photos"
    paths = make_folder(folder, 7)
    settings = replace(settings, allowed_dirs=[folder], store="sqlite")
    upstream.default_reply = Reply(text="batched caption", usage={"input_tokens": 100, "output_tokens": 10})
    # In the first batch: its first line refused (400: reported), its second failing for a passing reason (500).
    upstream.add_reply(Reply(text="first"))
    upstream.fail(400, message="Invalid image.", path="/v1/responses")
    upstream.fail(500, path="/v1/responses")
    out = tmp_path / "results.jsonl"
    spec = BatchSpec(paths=tuple(paths), prompt="Caption it.", out=out, model="gpt-4.1-mini")
    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        progress = Progress(total=7)
        service = OpenAIBatches(deps.upstream)
        await batch.run(
            deps, ledger, via="batch-api", progress=progress, service=service, poll_seconds=0.01, limits=FileLimits(3)
        )
    assert len(upstream.batches.batches) == 3  # 7 requests at 3 a file
    inputs = [upstream.batches.files[b["input_file_id"]][1] for b in upstream.batches.batches.values()]
    lines = [json.loads(line) for data in inputs for line in data.splitlines()]
    assert [len(data.splitlines()) for data in inputs] == [3, 3, 1]
    assert all(line["url"] == "/v1/responses" and "stream" not in line["body"] for line in lines)
    assert (progress.done, progress.failed, progress.left_over) == (5, 1, 1)
    found = {row["path"]: row for row in rows(out)}
    assert len(found) == 6
    assert found[paths[0]]["status"] == "failed" and "Invalid image." in found[paths[0]]["error"]
    assert paths[1] not in found  # left for a rerun
    assert found[paths[2]]["answer"] == "first"
    # The Batch API's half price: 100 in and 10 out at gpt-4.1-mini's $0.40 / $1.60 per million, halved.
    assert found[paths[3]]["cost"] == pytest.approx((100 * 0.40 + 10 * 1.60) / 1e6 / 2)

    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        assert ledger.pending() == [paths[1]]
        await batch.run(
            deps, ledger, via="batch-api", progress=Progress(total=1), service=OpenAIBatches(deps.upstream),
            poll_seconds=0.01,
        )  # fmt: skip
    assert sorted(row["path"] for row in rows(out)) == sorted(paths)  # complete, no image twice
    assert upstream.batches.lines_answered == 8


class Interrupted(Exception):
    pass


class DiesWhilePolling(OpenAIBatches):
    async def state(self, batch_id: str) -> BatchState:
        raise Interrupted  # as if the laptop closed after the batches were made


async def test_a_restarted_run_polls_the_batches_it_made(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "photos"
    paths = make_folder(folder, 4)
    settings = replace(settings, allowed_dirs=[folder], store="sqlite")
    out = tmp_path / "results.csv"
    spec = BatchSpec(paths=tuple(paths), prompt="Caption it.", out=out, model="gpt-4.1-mini")
    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        with pytest.raises(Interrupted):
            await batch.run(
                deps, ledger, via="batch-api", progress=Progress(total=4), service=DiesWhilePolling(deps.upstream)
            )
    assert len(upstream.batches.batches) == 1
    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        await batch.run(
            deps, ledger, via="batch-api", progress=Progress(total=4), service=OpenAIBatches(deps.upstream),
            poll_seconds=0.01,
        )  # fmt: skip
    assert len(upstream.batches.batches) == 1  # nothing sent again: the batch made before was polled
    assert len(out.read_text().splitlines()) == 5  # the header and one line per image


def test_the_command_with_via_batch_api(tmp_path: Path, upstream: FakeUpstream) -> None:
    folder = tmp_path / "photos"
    make_folder(folder, 3)
    out = tmp_path / "out.jsonl"
    env = {**environment(tmp_path, upstream), "IMAGECHAT_BATCH_POLL_SECONDS": "0.05"}
    command = [sys.executable, "-m", "server", "batch", str(folder), "-p", "Caption it.", "--out", str(out)]
    done = subprocess.run(
        [*command, "--via", "batch-api"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "via batch-api" in done.stdout and "done 3, failed 0" in done.stdout
    assert "the Batch API charges half of this" in done.stdout
    assert len(rows(out)) == 3 and len(upstream.batches.batches) == 1
    assert os.environ.get("OPENAI_API_KEY") != "sk-test-key"  # the key went to the subprocess only
