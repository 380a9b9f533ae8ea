"""A blob write cut by kill -9 leaves the store consistent: every record's blob is whole, no temporary file is
taken for a blob, and the next open removes the leftovers."""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from server.stores.sqlite import SqliteStore
from tools.deps import content_id

ROOT = Path(__file__).parent.parent
KILLS = 25
TIME_BUDGET = 60.0  # seconds: fewer kills on a very slow machine, never an endless test


def run_and_kill(state: Path, rng: random.Random) -> None:
    child = subprocess.Popen([sys.executable, "-m", "tests.blob_writer", str(state)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.4))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)


def reopen(state: Path) -> SqliteStore:
    """Open the store as the next process would: that removes the killed writer's temporary files."""
    store = SqliteStore(state / "imagechat.sqlite3")
    assert not list((state / "blobs" / "tmp").iterdir()), "a killed writer's temporary file was left behind"
    return store


def check_consistent(state: Path) -> tuple[int, int]:
    """Every blob file holds the bytes its name says, every record reads back whole; (records, blob files)."""
    store = reopen(state)
    files = list((state / "blobs").glob("??/*"))
    for blob in files:  # nothing half-written under a blob's name
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    db = sqlite3.connect(state / "imagechat.sqlite3")
    images = db.execute("SELECT id FROM images").fetchall()
    variants = db.execute("SELECT key, bytes FROM variants").fetchall()
    db.close()

    async def read_back() -> None:
        for (image_id,) in images:
            found = await store.get_image(image_id)
            assert found is not None, f"the record {image_id} has no whole blob"
            assert content_id("img", found[1]) == image_id
        for key, size in variants:
            variant = await store.get_variant(key)
            assert variant is not None and len(variant[1]) == size
        await store.close()

    anyio.run(read_back)
    return len(images) + len(variants), len(files)


@pytest.mark.timeout(240)
def test_blob_writes_killed_at_random_points_leave_the_store_consistent(tmp_path: Path) -> None:
    rng = random.Random(1913)
    state = tmp_path / "state"
    started = time.monotonic()
    kills = cut = 0
    while kills < KILLS and time.monotonic() - started < TIME_BUDGET:
        run_and_kill(state, rng)
        kills += 1
        cut += bool(list((state / "blobs" / "tmp").glob("*.part")))  # killed in the middle of a write
        anyio.run(reopen(state).close)
        if kills % 5 == 0:
            check_consistent(state)
    records, files = check_consistent(state)
    assert kills >= 5, f"only {kills} kills in {TIME_BUDGET} s"
    assert cut >= 1, "no kill landed inside a blob write: the test did not test anything"
    assert records > 0 and files > 0
    print(f"{kills} kills, {cut} inside a blob write; {records} records and {files} blobs all whole")
