"""Several real processes on one store (SQLite file or Redis): nothing lost, nothing settled twice.

Each process is `python -m tests.store_worker`, running the tools' steps on the Deps the server builds, against
the fake upstream (real HTTP on 127.0.0.1) and a real redis-server for Redis.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.app import opened
from server.settings import Settings
from tests.fake_upstream import FakeUpstream, Reply
from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
from tools.chat import chat

ROOT = Path(__file__).parent.parent
# Short, so that a killed owner's turn is settled quickly; not so short that a busy machine's pause (the first
# upstream call imports much of the openai SDK, holding the event loop for a second or two) loses a live lease.
LEASE = 5.0
Env = Callable[..., dict[str, str]]


@pytest.fixture(params=["sqlite", "redis"])
def worker_env(request: pytest.FixtureRequest, tmp_path: Path, pictures: Path, upstream: FakeUpstream) -> Env:
    store = {"IMAGECHAT_STORE": "sqlite", "IMAGECHAT_STATE_DIR": str(tmp_path / "state")}
    if request.param == "redis":
        store = {"IMAGECHAT_STORE": "redis", "IMAGECHAT_REDIS_URL": request.getfixturevalue("redis_url")}
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": upstream.base_url,
        "IMAGECHAT_ALLOWED_DIRS": str(pictures),
        "IMAGECHAT_MAX_RETRIES": "0",
        **store,
    }
    return lambda **more: {**env, **more}


def start(env: Env, *args: str, lease: float = LEASE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store_worker", *args],
        cwd=ROOT,
        env=env(IMAGECHAT_LEASE_SECONDS=str(lease)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


@pytest.mark.timeout(240)
async def test_two_processes_chatting_on_one_conversation_lose_nothing(worker_env: Env, upstream: FakeUpstream) -> None:
    rounds = 15
    for _ in range(2 * rounds):
        upstream.add_reply(Reply(text="an answer", delay=0.02))
    # The default lease: here nothing dies, and a stall must not cost a lease.
    processes = [start(worker_env, "race", "shared", str(rounds), lease=15) for _ in range(2)]
    outcomes = [result(process, timeout=200) for process in processes]
    numbers = sorted(number for outcome in outcomes for number in outcome["turns"])
    billed = [body for body in upstream.responses_bodies() if body["input"]]
    # Every billed answer is recorded, under its own number, each turn continuing from the one before.
    assert numbers == list(range(1, 2 * rounds + 1))
    assert len(billed) == 2 * rounds
    previous = [body.get("previous_response_id") for body in billed]
    assert previous[0] is None and None not in previous[1:] and len(set(previous)) == 2 * rounds
    assert all(outcome["previews"] > 0 for outcome in outcomes)


async def test_two_processes_opening_a_fresh_state_folder_at_once_both_start(worker_env: Env) -> None:
    processes = [start(worker_env, "open", f"fresh-{index}") for index in range(3)]
    assert [result(process)["temperature"] for process in processes] == [0.5, 0.5, 0.5]


@pytest.mark.timeout(120)
async def test_a_turn_whose_process_is_killed_is_settled_once_by_another_within_the_lease(
    worker_env: Env, upstream: FakeUpstream, pictures: Path
) -> None:
    upstream.add_reply(Reply(text=" ".join(["word"] * 40), chunks=40, chunk_delay=0.25))
    owner = start(worker_env, "start", "killed", str(pictures / "red.png"))
    assert owner.stdout is not None
    running = json.loads(owner.stdout.readline())
    assert running["status"] == "running" and running["turn"] == 1
    # A process that follows it meanwhile sees it running (it must not settle a live owner's turn)...
    alive = result(start(worker_env, "collect", "killed", "1", "0.5"))
    assert alive["status"] == "running" and alive["pending"]["images"] == []
    time.sleep(2.5)  # ...long enough for a checkpoint of the answer so far
    os.kill(owner.pid, signal.SIGKILL)
    owner.communicate(timeout=10)
    killed_at = time.monotonic()
    followers = [start(worker_env, "collect", "killed", "1", "20") for _ in range(2)]
    settled = [result(follower) for follower in followers]
    took = time.monotonic() - killed_at
    assert [s["status"] for s in settled] == ["failed", "failed"]
    assert "Ask again" in settled[0]["error"] and settled[0]["text"].startswith("word")
    assert settled[0]["pending"]["images"] == running["images"] and settled[1]["pending"] == settled[0]["pending"]
    assert took < LEASE + 8, took  # the lease, plus starting two Python processes on a busy machine


@pytest.mark.timeout(120)
async def test_a_background_turn_whose_process_is_killed_is_finished_once_by_another(
    worker_env: Env, upstream: FakeUpstream, pictures: Path
) -> None:
    upstream.add_reply(Reply(text="Worth the wait.", delay=LEASE + 5))
    env = worker_env  # the owner and its followers all ask for background responses

    def background(**more: str) -> dict[str, str]:
        return env(IMAGECHAT_BACKGROUND="always", **more)

    owner = start(background, "start", "background", str(pictures / "red.png"))
    assert owner.stdout is not None
    running = json.loads(owner.stdout.readline())
    assert running["status"] == "running"
    time.sleep(3)  # the owner's checkpoint records the response id, if the upstream named it after the announce
    os.kill(owner.pid, signal.SIGKILL)
    owner.communicate(timeout=10)
    followers = [start(background, "collect", "background", "1", "30") for _ in range(3)]
    settled = [result(follower) for follower in followers]
    # Each follower sees the one answer; the images stay used by it (a failure would have given them back).
    assert len({(s["status"], s["text"], s["response_id"]) for s in settled}) == 1
    assert settled[0]["status"] == "completed" and settled[0]["text"] == "Worth the wait." and settled[0]["response_id"]
    assert all(s["pending"]["images"] == [] for s in settled)
    assert upstream.responses_bodies()[0]["background"] is True and len(upstream.responses_bodies()) == 1


async def test_a_turn_that_lost_its_lease_keeps_its_answer_under_a_new_number(
    settings: Settings, upstream: FakeUpstream
) -> None:
    """In one process for control: two Deps on one SQLite file, the first one's lease taken from it mid-turn (as
    when its process stalls past the lease), so the second one's turn goes first."""
    shared = replace(settings, store="sqlite")
    upstream.add_reply(Reply(text="slow answer", delay=1.5))
    upstream.add_reply(Reply(text="fast answer"))
    answers: dict[str, int | None] = {}
    async with opened(shared) as one, opened(shared) as two:

        async def slow() -> None:
            answers["slow"] = (await chat(one, "slow question", "stalled", images=[], wait_seconds=20)).turn

        async with anyio.create_task_group() as group:
            group.start_soon(slow)
            while not upstream.requests:
                await anyio.sleep(0.02)
            assert shared.state_dir is not None
            with sqlite3.connect(shared.state_dir / "imagechat-leases.sqlite3") as leases:
                leases.execute("DELETE FROM leases")  # the lease ran out
            answers["fast"] = (await chat(two, "fast question", "stalled", images=[], wait_seconds=20)).turn
        stored = await two.store.get_conversation("stalled")
    assert answers == {"fast": 1, "slow": 2}
    assert stored is not None and [(t.turn, t.output) for t in stored.turns] == [(1, "fast answer"), (2, "slow answer")]
