"""Bulk runs in direct mode (issue 17) against the fake upstream: exactly once, polite on 429, concurrency kept."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from server.app import opened
from server.settings import Settings
from tests import images
from tests.fake_upstream import FakeUpstream, Reply
from tools import batch
from tools.batch_direct import Progress, run_direct
from tools.batch_spec import BatchSpec


def image_digests(bodies: list[dict[str, Any]]) -> list[str]:
    """The sha256 of the image each request carried (as its data URL's payload)."""
    found = []
    for body in bodies:
        for item in body["input"]:
            for part in item["content"] if isinstance(item["content"], list) else []:
                if part.get("type") == "input_image":
                    payload = part["image_url"].partition(",")[2]
                    found.append(hashlib.sha256(base64.b64decode(payload)).hexdigest())
    return found


def make_folder(root: Path, count: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = root / f"img{index:04d}.png"
        # Distinct sizes, so that every image is distinct as sent too (tiny flat colours can encode alike).
        path.write_bytes(images.png(8 + index % 20, 8 + index // 20, (index % 256, 90, 7)))
        paths.append(str(path))
    return paths


def rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


async def test_300_images_with_429_bursts_and_a_slow_upstream(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "many"
    paths = make_folder(folder, 300)
    settings = replace(settings, allowed_dirs=[folder])
    upstream.default_reply = Reply(text="a small square", delay=0.05)
    upstream.fail(429, times=10, headers={"retry-after": "0.3"}, path="/v1/responses")
    out = tmp_path / "results.jsonl"
    spec = BatchSpec(paths=tuple(paths), prompt="Caption it.", out=out, model="gpt-4.1-mini")
    bursts = {100, 200}

    def burst(progress: Progress) -> None:
        if progress.done in bursts:  # a second and third wave of rate limits mid-run
            bursts.discard(progress.done)
            upstream.fail(429, times=12, headers={"x-ratelimit-reset-requests": "250ms"}, path="/v1/responses")

    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        progress = Progress(total=len(ledger.pending()), changed=burst)
        await batch.run(deps, ledger, concurrency=16, progress=progress)

    assert progress.done == 300 and progress.failed == 0 and progress.left_over == 0
    found = rows(out)
    assert sorted(row["path"] for row in found) == sorted(paths)  # every image once, none twice
    assert all(row["answer"] == "a small square" and row["status"] == "done" for row in found)
    sent = image_digests(upstream.answered)
    assert len(sent) == 300 and len(set(sent)) == 300  # each image answered exactly once
    assert 8 <= upstream.most_in_flight <= 16  # concurrency used, and never exceeded
    assert found[0]["input_tokens"] > 0 and found[0]["cost"] > 0


async def test_a_rerun_sends_nothing_already_answered(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "few"
    paths = make_folder(folder, 12)
    settings = replace(settings, allowed_dirs=[folder], store="sqlite")
    out = tmp_path / "results.jsonl"
    spec = BatchSpec(paths=tuple(paths[:8]), prompt="Caption it.", out=out, model="gpt-4.1-mini")
    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        await batch.run(deps, ledger, concurrency=4, progress=Progress(total=8))
    # A half-written last line (a kill mid-write), then the same run grown by four images.
    with out.open("a") as file:
        file.write('{"path": "' + paths[9])
    before = len(upstream.answered)
    async with opened(settings) as deps:
        ledger = await batch.start(deps, replace(spec, paths=tuple(paths)))
        assert ledger.pending() == paths[8:]
        await batch.run(deps, ledger, concurrency=4, progress=Progress(total=4))
    assert len(upstream.answered) - before == 4
    assert sorted(row["path"] for row in rows(out)) == sorted(paths)


async def test_a_deleted_results_file_is_written_again_from_the_manifest(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "few"
    paths = make_folder(folder, 5)
    settings = replace(settings, allowed_dirs=[folder], store="sqlite")
    out = tmp_path / "results.csv"
    spec = BatchSpec(paths=tuple(paths), prompt="Caption it.", out=out, model="gpt-4.1-mini")
    async with opened(settings) as deps:
        await batch.run(deps, await batch.start(deps, spec), progress=Progress(total=5))
    first = out.read_text()
    out.unlink()
    sent = len(upstream.answered)
    async with opened(settings) as deps:
        ledger = await batch.start(deps, spec)
        await batch.run(deps, ledger, progress=Progress(total=0))
    assert len(upstream.answered) == sent  # nothing asked again
    assert sorted(out.read_text().splitlines()) == sorted(first.splitlines())
    assert first.splitlines()[0].startswith("path,image_id,status,answer")


async def test_non_images_and_a_corrupt_jpeg_are_reported_not_fatal(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "mixed"
    paths = make_folder(folder, 3)
    corrupt = folder / "broken.jpg"
    corrupt.write_bytes(images.jpeg(64, 48)[:300])
    text = folder / "notes.jpg"
    text.write_text("not an image at all")
    out = tmp_path / "results.jsonl"
    every = [*paths, str(corrupt), str(text)]
    spec = BatchSpec(paths=tuple(every), prompt="Caption it.", out=out, model="gpt-4.1-mini")
    async with opened(replace(settings, allowed_dirs=[folder])) as deps:
        ledger = await batch.start(deps, spec)
        progress = await batch.run(deps, ledger, concurrency=2, progress=Progress(total=5))
    assert (progress.done, progress.failed) == (3, 2)
    by_path = {row["path"]: row for row in rows(out)}
    assert by_path[str(corrupt)]["status"] == "failed" and "corrupt or truncated" in by_path[str(corrupt)]["error"]
    assert by_path[str(text)]["status"] == "failed" and by_path[str(text)]["error"]
    assert len(upstream.answered) == 3  # nothing sent for the two that cannot be read


async def test_slows_down_on_429_and_speeds_up_again(
    tmp_path: Path, settings: Settings, upstream: FakeUpstream
) -> None:
    folder = tmp_path / "many"
    paths = make_folder(folder, 120)
    upstream.default_reply = Reply(text="ok", delay=0.03)
    upstream.fail(429, times=8, headers={"retry-after": "0.2"}, path="/v1/responses")
    spec = BatchSpec(paths=tuple(paths), prompt="Caption it.", out=tmp_path / "out.jsonl", model="gpt-4.1-mini")
    seen: list[int] = []

    def watch(progress: Progress) -> None:
        if progress.done == 8:  # just after the burst: the requests in flight were cut
            seen.append(upstream.most_in_flight)
            upstream.most_in_flight = upstream.in_flight
        if progress.done == 100:
            seen.append(upstream.most_in_flight)

    async with opened(replace(settings, allowed_dirs=[folder])) as deps:
        ledger = await batch.start(deps, spec)
        pacer = await run_direct(deps, ledger, concurrency=8, progress=Progress(total=120, changed=watch))
    assert pacer.slowed >= 1
    assert pacer.limit.total_tokens == 8  # grown back to --concurrency
    assert seen[1] >= 6  # and the upstream saw it: most of the 8 in flight again after the slow-down
    assert len(rows(spec.out)) == 120
