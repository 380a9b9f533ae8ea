"""Work per image is bounded in time and memory, and cancellable (issue 12, point 1), through the protocol.

Each hostile file is built like the attack that found the problem (tests/hostile_images.py), smaller but over the
limit. Each is refused with words before Pillow reads a byte of it (the jobs' read counters stay at zero), while a
cheap call on another conversation keeps answering; its latency is reported (`record_property`), not asserted.
A load whose client gives up stops its decode at the next read, and the pixel budget lets one 99 MP decode run at
a time while a 20x20 PNG passes beside it.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from server.app import build_server
from server.boundary import ImageChatServer
from server.settings import Settings
from tests import hostile_images, images
from tests.helpers import call, fails
from tools import image_guard
from tools.deps import Deps
from tools.image_guard import Job, WorkCancelled
from tools.image_structure import MAX_FRAMES, MAX_JPEG_SEGMENTS, MAX_PNG_METADATA_CHUNKS
from tools.models import ImageRecord

REEXPORT = "Re-export it as an ordinary PNG or JPEG (open and save it in any image editor) and load it again."


@asynccontextmanager
async def served(settings: Settings, mode: str, **changes: Any) -> AsyncIterator[tuple[Client, Deps]]:
    server: ImageChatServer = build_server(replace(settings, **changes) if changes else settings)
    async with Client(server, mode=mode) as client:
        assert server.current is not None
        yield client, server.current


def watch_jobs(deps: Deps) -> list[Job]:
    """Every job the server's image guard starts, kept after it ends."""
    seen: list[Job] = []
    jobs = deps.images.jobs

    class Recording(list[Job]):
        def append(self, job: Job) -> None:
            seen.append(job)
            super().append(job)

    deps.images.jobs = Recording(jobs)
    return seen


async def cheap_calls(client: Client, latencies: list[float], done: anyio.Event) -> None:
    """set_options on another conversation, again and again until `done`: what a user does meanwhile."""
    while not done.is_set():
        started = time.perf_counter()
        await call(client, "set_options", {"conversation_id": "bystander", "temperature": 0.5})
        latencies.append(time.perf_counter() - started)
        await anyio.sleep(0)


ATTACKS: dict[str, tuple[Callable[[], bytes], str]] = {
    "pages.tif": (
        lambda: hostile_images.tiff_with_pages(MAX_FRAMES + 2_000),
        f"The file holds more than {MAX_FRAMES:,} TIFF pages",
    ),
    "chunks.png": (
        lambda: hostile_images.png_with_chunks(1_000_000),
        f"The file holds more than {MAX_PNG_METADATA_CHUNKS:,} PNG metadata chunks",
    ),
    "segments.jpg": (
        lambda: hostile_images.jpeg_with_segments(100_000),
        f"The file holds more than {MAX_JPEG_SEGMENTS:,} JPEG segments before the image data",
    ),
    "frames.gif": (
        lambda: hostile_images.gif_with_frames(MAX_FRAMES + 10_000),
        f"The file holds more than {MAX_FRAMES:,} animation frames",
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_a_hostile_structure_is_refused_before_pillow_reads_it_while_cheap_calls_answer(
    settings: Settings, pictures: Path, mode: str, name: str
) -> None:
    build, problem = ATTACKS[name]
    (pictures / name).write_bytes(build())
    latencies: list[float] = []
    async with served(settings, mode) as (client, deps):
        jobs = watch_jobs(deps)
        done = anyio.Event()
        messages: list[str] = []
        refusals: list[float] = []

        async def four_hostile_loads() -> None:
            async with anyio.create_task_group() as loads:
                for index in range(4):
                    loads.start_soon(refused, index)
            done.set()

        async def refused(index: int) -> None:
            started = time.perf_counter()
            messages.append(await fails(client, "load_image", {"source": name, "conversation_id": f"attack{index}"}))
            refusals.append(time.perf_counter() - started)

        async with anyio.create_task_group() as group:
            group.start_soon(cheap_calls, client, latencies, done)
            group.start_soon(four_hostile_loads)
        assert messages == [messages[0]] * 4
        assert messages[0].startswith(f"Error executing tool load_image: Could not load '{name}': {problem};")
        assert "malformed or built to be slow to read, and was refused before decoding" in messages[0]
        assert messages[0].endswith(REEXPORT)
        # Refused by the structure walk: Pillow never read the file, nothing waited for the pixel budget.
        assert len(jobs) == 4 and all(job.reads == 0 and job.finished.is_set() for job in jobs)
        assert deps.images.budget.admitted == []
        # The server is still there for everyone else, and the attacked conversations are untouched.
        await call(client, "load_image", {"source": "red.png", "conversation_id": "bystander"})
        pending = await call(client, "preview", {"conversation_id": "attack0", "target": "pending"})
        assert json.loads(pending["text"]) == {"images": [], "files": []}
    assert latencies, "the cheap call never answered"
    # Reported, not asserted (shown with pytest -s): timings depend on the machine and its load.
    print(
        f"{name} ({mode}): four refused in {max(refusals) * 1000:.0f} ms at most; cheap calls meanwhile "
        f"{len(latencies)}, median {statistics.median(latencies) * 1000:.1f} ms, worst {max(latencies) * 1000:.1f} ms"
    )


async def test_a_long_tiff_within_the_limits_counts_its_pages_without_pillow_walking_them(
    settings: Settings, pictures: Path
) -> None:
    """Pillow's page count compares each page with all before it; the structure walk's count is used instead."""
    (pictures / "long.tif").write_bytes(hostile_images.tiff_with_pages(MAX_FRAMES))
    async with served(settings, "auto") as (client, _):
        loaded = await call(client, "load_image", {"source": "long.tif"})
    assert loaded["images"][0]["frames"] == MAX_FRAMES
    assert (loaded["images"][0]["width"], loaded["images"][0]["height"]) == (1, 1)


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(20):
        while not condition():
            await anyio.sleep(0.005)


async def test_a_load_whose_client_gives_up_stops_its_decode_at_the_next_read(
    settings: Settings, pictures: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    noisy = hostile_images.noise(900, 900, "PNG", compress_level=0)  # about 2.4 MB: some 40 reads of 64 KB
    (pictures / "noisy.png").write_bytes(noisy)
    read = image_guard.GuardedBytes.read

    def slow_read(self: image_guard.GuardedBytes, size: int | None = -1, /) -> bytes:
        time.sleep(0.02)  # a slow disk: the decode takes about a second
        return read(self, size)

    monkeypatch.setattr(image_guard.GuardedBytes, "read", slow_read)
    async with served(settings, mode) as (client, deps):
        jobs = watch_jobs(deps)
        async with anyio.create_task_group() as group:

            async def load() -> None:
                await client.call_tool("load_image", {"source": "noisy.png", "conversation_id": "gone"})
                raise AssertionError("the load finished although its client gave up")

            group.start_soon(load)
            # The decode is under way (in the job that measured the header, or in one of its own).
            await until(lambda: any(job.reads >= 5 for job in jobs))
            group.cancel_scope.cancel()  # the client gives up
        decode = next(job for job in jobs if job.reads >= 5)
        assert await anyio.to_thread.run_sync(decode.finished.wait, 20), "the decode kept running"
        assert decode.cancelled and isinstance(decode.stopped, WorkCancelled)
        stopped_at = decode.reads
        await until(lambda: deps.images.budget.in_use == 0)  # its pixels are given back once the thread ended
        # A load that runs to the end reads far more: the cancelled one stopped well before.
        await call(client, "load_image", {"source": "noisy.png", "conversation_id": "patient"})
        assert jobs[-1].reads > stopped_at + 10 and jobs[-1].stopped is None
        pending = await call(client, "preview", {"conversation_id": "gone", "target": "pending"})
        assert json.loads(pending["text"]) == {"images": [], "files": []}


async def test_a_file_loaded_again_stops_the_decode_begun_beside_its_hash_and_a_webp_waits_for_it(
    settings: Settings, pictures: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pictures / "noisy.png").write_bytes(hostile_images.noise(900, 900, "PNG", compress_level=0))
    (pictures / "noisy.webp").write_bytes(hostile_images.noise(600, 400, "WEBP", lossless=True))
    read = image_guard.GuardedBytes.read

    def slow_read(self: image_guard.GuardedBytes, size: int | None = -1, /) -> bytes:
        time.sleep(0.02)  # a slow disk: a whole decode takes about a second, the hash a few milliseconds
        return read(self, size)

    monkeypatch.setattr(image_guard.GuardedBytes, "read", slow_read)
    async with served(settings, mode) as (client, deps):
        jobs = watch_jobs(deps)
        first = await call(client, "load_image", {"source": "noisy.png", "conversation_id": "first"})
        whole = sum(job.reads for job in jobs)
        jobs.clear()
        again = await call(client, "load_image", {"source": "noisy.png", "conversation_id": "again"})
        assert again["images"] == first["images"]
        # The decode started beside the hash and was stopped when the hash found the image stored.
        assert all(job.finished.is_set() for job in jobs)
        assert sum(job.reads for job in jobs) < whole / 4, (whole, [job.reads for job in jobs])
        assert any(job.cancelled for job in jobs) or len(jobs) <= 1  # stopped, or never past measuring
        await until(lambda: deps.images.budget.in_use == 0)

        # WebP is decoded by C in one go, which cannot be stopped: its decode waits for the hash.
        webp = await call(client, "load_image", {"source": "noisy.webp", "conversation_id": "first"})
        jobs.clear()
        await call(client, "load_image", {"source": "noisy.webp", "conversation_id": "again"})
        assert jobs == []
        pending = await call(client, "preview", {"conversation_id": "again", "target": "pending"})
        loaded = [first["images"][0]["image_id"], webp["images"][0]["image_id"]]
        assert json.loads(pending["text"])["images"] == loaded


BIG = 9950 * 9950  # 99 MP, inside the default 100 MP limit; 96 KB of PNG


async def test_the_pixel_budget_decodes_one_99_mp_image_at_a_time_while_a_small_one_passes(
    settings: Settings, pictures: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(4):
        (pictures / f"big{index}.png").write_bytes(hostile_images.flat_png(9950, 9950))
    (pictures / "small.png").write_bytes(images.png(20, 20))
    read = image_guard.GuardedBytes.read
    small_passed = threading.Event()
    budgets: list[image_guard.PixelBudget] = []

    def held_big_read(self: image_guard.GuardedBytes, size: int | None = -1, /) -> bytes:
        # A big decode under way holds until the small one is through. Only past the header: measuring a big
        # image that then waits for the budget reads the header alone, and is never held.
        if len(self.getbuffer()) > 50_000 and self.tell() > 4096 and budgets and budgets[0].in_use >= BIG:
            small_passed.wait(20)
        return read(self, size)

    monkeypatch.setattr(image_guard.GuardedBytes, "read", held_big_read)
    async with served(settings, mode) as (client, deps):
        budget = deps.images.budget
        budgets.append(budget)
        assert budget.total == 120_000_000  # the default: one 99 MP image and room for small ones
        finished: list[str] = []

        async def load(name: str) -> None:
            await call(client, "load_image", {"source": name, "conversation_id": name.removesuffix(".png")})
            finished.append(name)

        async with anyio.create_task_group() as group:
            for index in range(4):
                group.start_soon(load, f"big{index}.png")
            try:
                await until(lambda: budget.in_use >= BIG)  # a big decode is under way, three wait
                await load("small.png")
                assert finished == ["small.png"]  # through while every big one was in flight or waiting
                assert budget.in_use == BIG and len(budget.admitted) == 2
            finally:
                small_passed.set()
        assert sorted(finished) == [*(f"big{index}.png" for index in range(4)), "small.png"]
        bigs = [in_use for pixels, in_use in budget.admitted if pixels == BIG]
        assert len(bigs) == 4 and all(in_use < 2 * BIG for in_use in bigs)  # never two at once
        assert (400, BIG + 400) in budget.admitted  # the small one was admitted beside a big one
        assert budget.peak <= budget.total and budget.in_use == 0


async def test_a_decode_past_the_image_deadline_is_stopped_and_refused_with_the_setting_named(
    settings: Settings, pictures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JPEG decodes too (even at reduced DCT scale) read the file block by block, so the deadline stops them."""
    slow = hostile_images.noise(1200, 900, "JPEG", quality=95)  # about 1.5 MB: some 25 reads of 64 KB
    (pictures / "slow.jpg").write_bytes(slow)
    read = image_guard.GuardedBytes.read

    def slow_read(self: image_guard.GuardedBytes, size: int | None = -1, /) -> bytes:
        time.sleep(0.05)
        return read(self, size)

    monkeypatch.setattr(image_guard.GuardedBytes, "read", slow_read)
    async with served(settings, "auto", image_seconds=0.5) as (client, deps):
        jobs = watch_jobs(deps)
        message = await fails(client, "load_image", {"source": "slow.jpg", "conversation_id": "slow"})
        assert message == (
            "Error executing tool load_image: Could not load 'slow.jpg': Reading the image took longer than 0.5 s "
            "(IMAGECHAT_IMAGE_SECONDS), so it was stopped: the file is unusually expensive to decode. Re-export it "
            "as an ordinary PNG or JPEG, or raise the setting."
        )
        decode = jobs[-1]
        assert isinstance(decode.stopped, image_guard.DeadlineExceeded) and decode.finished.is_set()
        stopped_at = decode.reads
        assert deps.images.budget.in_use == 0
    monkeypatch.undo()  # at full speed, the same decode reads on to the end
    async with served(settings, "auto") as (client, deps):
        jobs = watch_jobs(deps)
        await call(client, "load_image", {"source": "slow.jpg"})
        assert jobs[-1].reads > stopped_at  # the full decode reads on past where the deadline stopped it


async def test_a_hostile_image_stored_before_the_limits_is_refused_by_preview_and_chat_with_its_id(
    settings: Settings, mode: str
) -> None:
    """The 4M-chunk PNG once cost 15 s on every prepare and preview: now each refuses it at once, in words."""
    data = hostile_images.png_with_chunks(100_000)
    record = ImageRecord(image_id="img_old", width=1, height=1, format="PNG", mime="image/png", bytes=len(data))
    async with served(settings, mode) as (client, deps):
        await deps.store.put_image(record, data)
        jobs = watch_jobs(deps)
        preview = await fails(client, "preview", {"target": "image:img_old"})
        chat = await fails(client, "chat", {"prompt": "What is it?", "images": ["img_old"], "dry_run": True})
        assert all(job.reads == 0 for job in jobs)
    problem = f"Could not read image img_old: The file holds more than {MAX_PNG_METADATA_CHUNKS:,} PNG metadata chunks"
    assert problem in preview and preview.endswith(REEXPORT)
    assert problem in chat and chat.endswith(REEXPORT)


def real_files() -> dict[str, bytes]:
    """Files as real encoders write them, at the edges the limits must leave alone."""
    import io
    import random

    from PIL import Image, ImageCms

    noise = Image.frombytes("RGB", (600, 400), random.Random(5).randbytes(600 * 400 * 3))
    frames = [Image.new("RGB", (8, 8), (index % 256, 0, 0)) for index in range(300)]
    files: dict[str, bytes] = {}
    for name, img, params in (
        ("noise.gif", noise, {}),
        ("long.gif", frames[0], {"save_all": True, "append_images": frames[1:]}),
        ("long.png", frames[0], {"save_all": True, "append_images": frames[1:]}),
        ("pages.tif", frames[0], {"save_all": True, "append_images": frames[1:]}),
        ("lzw.tif", noise, {"compression": "tiff_lzw"}),
        ("long.webp", frames[0], {"save_all": True, "append_images": frames[1:], "lossless": True}),
        ("icc.jpg", noise, {"icc_profile": ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()}),
    ):
        buffer = io.BytesIO()
        img.save(buffer, name.rsplit(".", 1)[1].replace("jpg", "jpeg").replace("tif", "tiff"), **params)
        files[name] = buffer.getvalue()
    return files


def test_files_real_encoders_write_pass_the_structure_walk_with_their_frames_counted() -> None:
    from tools.image_structure import check_structure

    counted = {name: check_structure(data).frames for name, data in real_files().items()}
    assert counted == {
        "noise.gif": 1,
        "long.gif": 300,
        "long.png": None,  # APNG: Pillow reads the count from its header
        "pages.tif": 300,
        "lzw.tif": 1,
        "long.webp": None,
        "icc.jpg": 1,
    }


def test_a_gif_of_one_byte_data_blocks_is_refused_by_its_size_not_walked_to_the_end() -> None:
    import struct

    from tools.image_structure import ImageRejected, check_structure

    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02" + b"\x01\x44" * 200_000 + b"\x00"
    with pytest.raises(ImageRejected, match=r"more than 43,125 GIF data blocks; a real GIF of 400,032 bytes has"):
        check_structure(head + image + b"\x3b")


async def test_with_room_in_the_budget_one_worker_thread_measures_and_decodes_and_a_full_budget_makes_it_wait(
    settings: Settings, pictures: Path, mode: str
) -> None:
    """Each hand-off to a thread costs a wake-up of an idle core (a millisecond or more on a virtual machine after
    a pause), so an image admitted at once takes one; one that must wait for the budget is measured, waits on the
    event loop without holding a worker, and is decoded once pixels are free."""
    (pictures / "photo.jpg").write_bytes(images.jpeg(1200, 900))
    (pictures / "other.jpg").write_bytes(images.jpeg(1100, 800))
    async with served(settings, mode) as (client, deps):
        jobs = watch_jobs(deps)
        await call(client, "load_image", {"source": "photo.jpg", "conversation_id": "room"})
        assert len(jobs) == 1 and jobs[0].reads > 0  # one job: the header and the pixels read in one thread
        jobs.clear()

        budget = deps.images.budget
        held = budget.try_acquire(budget.total)  # another image's decode holds every pixel
        assert held is not None
        loading = anyio.Event()

        async def load() -> None:
            await call(client, "load_image", {"source": "other.jpg", "conversation_id": "full"})
            loading.set()

        async with anyio.create_task_group() as group:
            group.start_soon(load)
            await until(lambda: len(jobs) == 1 and jobs[0].finished.is_set())  # measured, then sent back to wait
            assert deps.images.workers.borrowed_tokens == 0 and not loading.is_set()
            budget.release(held)
        assert len(jobs) == 2 and budget.in_use == 0  # the decode ran in a job of its own once admitted
