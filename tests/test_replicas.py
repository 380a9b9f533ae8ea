"""Three real server processes on one real Redis behind the real HAProxy (deploy/haproxy.cfg), in both eras.

A conversation continues whichever replica a call lands on; two agents on two replicas get two chained turns;
a turn started on one replica is collected through another, with progress; and a replica killed with SIGKILL in
the middle of a turn leaves the conversation consistent, the turn settled within the lease.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis
from mcp import Client

from tests import images
from tests.cluster import Cluster
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call
from tests.redis_server import RedisServer, redis_server  # noqa: F401 - fixture

LEASE = 4.0
MODES = ["auto", "legacy"]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    (folder / "red.png").write_bytes(images.png(64, 48, (200, 30, 30)))
    return folder


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer,  # noqa: F811
    upstream: FakeUpstream,
    pictures: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy; .ci/run installs it)")
    redis_server.flush()
    env = {"IMAGECHAT_ALLOWED_DIRS": str(pictures), "IMAGECHAT_LEASE_SECONDS": str(LEASE)}
    with Cluster(tmp_path_factory.mktemp("cluster"), redis_server.url, upstream.base_url, env=env) as running:
        # One chat per replica first: a process's first upstream call imports much of the SDK (seconds on a busy
        # machine), which is not what these tests measure.
        anyio.run(warm_up, running)
        try:
            yield running
        except BaseException:
            print(running.logs())
            raise


async def warm_up(cluster: Cluster) -> None:
    for index in range(cluster.count):
        async with Client(cluster.replica_url(index)) as client:
            await call(client, "chat", {"prompt": "warm up", "images": [], "conversation_id": f"warm-up-{index}"})


def owner_pid(cluster: Cluster, conversation_id: str) -> int:
    """The pid of the replica holding the conversation's turn lease (its token starts with the owner id)."""
    with redis.Redis.from_url(cluster.redis_url) as client:
        token = client.get(f"imagechat:turn:{conversation_id}")
    assert token is not None, "no replica holds the turn"
    return cluster.pid_of(token.decode())


@pytest.mark.parametrize("mode", MODES)
async def test_turns_continue_one_conversation_whichever_replica_serves_them(
    cluster: Cluster, upstream: FakeUpstream, pictures: Path, mode: str
) -> None:
    conversation = f"alternating-{mode}"
    args = {"conversation_id": conversation}
    sent_before = len(upstream.responses_bodies())
    # Loaded through replica 1, sent by replica 2; then a turn through each replica in turn, then the balancer's.
    async with Client(cluster.replica_url(0), mode=mode) as client:
        loaded = await call(client, "load_image", {"source": str(pictures / "red.png"), **args})
    answers = []
    for index in [1, 2, 0]:
        async with Client(cluster.replica_url(index), mode=mode) as client:
            answers.append(await call(client, "chat", {"prompt": f"turn on replica {index + 1}", **args}))
    async with Client(cluster.url, mode=mode) as client:
        for index in range(3):
            answers.append(await call(client, "chat", {"prompt": f"through the balancer {index}", **args}))
        shown = json.loads(
            (await call(client, "preview", {"target": "conversation", "format": "json", **args}))["text"]
        )
    bodies = upstream.responses_bodies()[sent_before:]
    assert [a["turn"] for a in answers] == [1, 2, 3, 4, 5, 6] and [t["turn"] for t in shown] == [1, 2, 3, 4, 5, 6]
    assert [a["parent"] for a in answers] == [None, 1, 2, 3, 4, 5]
    assert [b.get("previous_response_id") for b in bodies] == [None, *[a["response_id"] for a in answers[:-1]]]
    first_parts = [part["type"] for part in bodies[0]["input"][0]["content"]]
    assert first_parts == ["input_text", "input_image"] and answers[0]["images"] == [loaded["images"][0]["image_id"]]


@pytest.mark.parametrize("mode", MODES)
async def test_two_agents_on_two_replicas_get_two_chained_turns(
    cluster: Cluster, upstream: FakeUpstream, mode: str
) -> None:
    conversation = f"two-agents-{mode}"
    upstream.add_reply(Reply(text="first answer", delay=1.0))
    upstream.add_reply(Reply(text="second answer", delay=1.0))
    sent_before = len(upstream.responses_bodies())
    answers: dict[int, dict[str, object]] = {}

    async def agent(index: int) -> None:
        async with Client(cluster.replica_url(index), mode=mode) as client:
            prompt = f"agent on replica {index + 1}"
            answers[index] = await call(
                client, "chat", {"prompt": prompt, "images": [], "conversation_id": conversation}
            )

    async with anyio.create_task_group() as group:
        group.start_soon(agent, 0)
        group.start_soon(agent, 1)
    first, second = sorted(answers.values(), key=lambda answer: int(str(answer["turn"])))
    bodies = upstream.responses_bodies()[sent_before:]
    assert (first["turn"], second["turn"], second["parent"]) == (1, 2, 1)
    assert [first["text"], second["text"]] == ["first answer", "second answer"]
    assert [b.get("previous_response_id") for b in bodies] == [None, first["response_id"]]


@pytest.mark.parametrize("mode", MODES)
async def test_a_turn_started_on_one_replica_is_collected_through_another_with_progress(
    cluster: Cluster,
    upstream: FakeUpstream,
    mode: str,
) -> None:
    conversation = f"collected-{mode}"
    upstream.add_reply(Reply(text=" ".join(["word"] * 12), chunks=12, chunk_delay=0.4))
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async with Client(cluster.url, mode=mode) as client:
        running = await call(
            client,
            "chat",
            {"prompt": "Talk slowly", "images": [], "conversation_id": conversation, "wait_seconds": 0.3},
        )
    assert running["status"] == "running"
    owner = cluster.index_of(owner_pid(cluster, conversation))
    other = (owner + 1) % cluster.count
    async with Client(cluster.replica_url(other), mode=mode) as client:
        args = {"prompt": "", "conversation_id": conversation, "turn": running["turn"], "wait_seconds": 30}
        done = await client.call_tool("chat", args, progress_callback=on_progress)
    assert not done.is_error and done.structured_content is not None
    assert done.structured_content["status"] == "completed" and done.structured_content["text"] == " ".join(
        ["word"] * 12
    )
    assert any(m and "running on another server process" in m for m in seen)
    assert any(m and "characters so far" in m for m in seen)  # the owner's checkpoints of the answer so far


@pytest.mark.parametrize("mode", MODES)
async def test_a_replica_killed_mid_turn_leaves_the_conversation_consistent(
    cluster: Cluster,
    upstream: FakeUpstream,
    pictures: Path,
    mode: str,
) -> None:
    conversation = f"killed-{mode}"
    args = {"conversation_id": conversation}
    upstream.add_reply(Reply(text=" ".join(["word"] * 60), chunks=60, chunk_delay=0.25))
    async with Client(cluster.url, mode=mode) as client:
        loaded = await call(client, "load_image", {"source": str(pictures / "red.png"), **args})
        running = await call(client, "chat", {"prompt": "Talk for a long time", "wait_seconds": 0.5, **args})
    owner = cluster.index_of(owner_pid(cluster, conversation))
    cluster.kill(owner)
    killed_at = time.monotonic()
    try:
        async with Client(cluster.url, mode=mode) as client:
            settled = await call(client, "chat", {"prompt": "", "turn": running["turn"], "wait_seconds": 30, **args})
            took = time.monotonic() - killed_at
            pending = json.loads(
                (await call(client, "preview", {"target": "pending", "format": "json", **args}))["text"]
            )
            again = await call(client, "chat", {"prompt": "Once more", **args})
            turns = json.loads(
                (await call(client, "preview", {"target": "conversation", "format": "json", **args}))["text"]
            )
    finally:
        cluster.restart(owner)
    image_id = loaded["images"][0]["image_id"]
    assert running["status"] == "running" and settled["status"] == "failed" and "Ask again" in settled["error"]
    assert took < LEASE + 3, took
    assert pending["images"] == [image_id]
    assert again["turn"] == 2 and again["status"] == "completed" and again["images"] == [image_id]
    assert [(t["turn"], t["status"]) for t in turns] == [(1, "failed"), (2, "completed")]


@pytest.mark.parametrize("mode", MODES)
async def test_progress_reaches_the_caller_through_the_balancer(
    cluster: Cluster, upstream: FakeUpstream, mode: str
) -> None:
    upstream.add_reply(Reply(text="one two three four", chunks=4, chunk_delay=0.4))
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    async with Client(cluster.url, mode=mode) as client:
        args = {"prompt": "Count", "images": [], "conversation_id": f"progress-{mode}"}
        answer = await client.call_tool("chat", args, progress_callback=on_progress)
    assert not answer.is_error and answer.structured_content is not None
    assert answer.structured_content["text"] == "one two three four"
    assert seen and all(message and "tokens so far" in message for message in seen)
