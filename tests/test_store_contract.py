"""The store contract, the same for every store: memory, SQLite, and Redis (a real redis-server, tests/redis_server.py).

What the steps rely on: records round-trip and stay apart from the objects handed in; `put_changes` writes the
conversation's own record and the given turns only; bytes live in the blobs; `lock` serialises changes to one
conversation; `turn_lock` is a key space of its own, held by an owner that `turn_holder` names; a lease whose
holder stopped renewing runs out (the shared stores), and one that is renewed does not.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from server.stores.leases import LeaseBackend, LeaseLocks
from server.stores.memory import MemoryStore
from server.stores.redis import RedisLeases, RedisStore
from server.stores.retention import DAY, PrunableStore, Retention
from server.stores.sqlite import SqliteStore
from server.stores.sqlite_leases import SqliteLeases
from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
from tools.models import Conversation, FileRecord, ImageRecord, Options, Turn

KINDS = ["memory", "sqlite", "redis"]
Opener = Callable[..., PrunableStore]


@pytest.fixture(params=KINDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a store of the kind under test; every store it opens shares the same state (one file, one Redis),
    as the processes of one deployment do; memory has one store only."""
    if request.param == "memory":
        only = MemoryStore()
        return lambda **_: only
    if request.param == "sqlite":
        return lambda **kw: SqliteStore(tmp_path / "state" / "imagechat.sqlite3", **kw)
    url = request.getfixturevalue("redis_url")
    return lambda owner="test-owner", lease_seconds=15.0: RedisStore(url, owner=owner, lease_seconds=lease_seconds)


@pytest.fixture
async def store(opener: Opener) -> AsyncIterator[PrunableStore]:
    opened = opener()
    yield opened
    await opened.close()


def turn(number: int, output: str = "o", images: list[str] | None = None) -> Turn:
    return Turn(turn=number, parent=number - 1 or None, prompt=f"p{number}", output=output, images=images or [])


async def test_records_round_trip_and_stay_apart_from_the_objects_handed_in(store: PrunableStore) -> None:
    conversation = Conversation(id="c:1 ü", options=Options(model="m"), pending_images=["img_1"])
    conversation.turns.append(turn(1))
    await store.put_conversation(conversation)
    conversation.turns.clear()
    found = await store.get_conversation("c:1 ü")
    assert found is not None and [t.output for t in found.turns] == ["o"] and found.pending_images == ["img_1"]
    assert await store.get_conversation("c:1") is None
    record = ImageRecord(image_id="img_1", width=1, height=2, format="PNG", mime="image/png", bytes=3)
    await store.put_image(record, b"abc")
    assert await store.get_image("img_1") == (record, b"abc")
    assert await store.get_image_record("img_1") == record
    assert await store.get_image_record("img_2") is None and await store.get_image("img_2") is None
    document = FileRecord(file_id="file_1", name="a.txt", mime="text/plain", bytes=1)
    await store.put_file(document, b"x")
    assert await store.get_file("file_1") == (document, b"x") and await store.get_file("file_2") is None
    await store.put_variant("img_1/1x2", "image/jpeg", b"j")
    assert await store.get_variant("img_1/1x2") == ("image/jpeg", b"j") and await store.get_variant("no") is None
    assert await store.list_conversations() == ["c:1 ü"]


async def test_put_changes_writes_the_record_and_the_given_turns_only(store: PrunableStore) -> None:
    conversation = Conversation(id="c", options=Options(model="m"))
    conversation.turns = [turn(1, "one"), turn(2, "two")]
    await store.put_conversation(conversation)
    head = Conversation(id="c", options=Options(model="other"))  # no turns: those stored stay
    await store.put_changes(head, [turn(2, "two, revised"), turn(3, "three")])
    found = await store.get_conversation("c")
    light = await store.get_conversation("c", with_turns=False)
    assert found is not None and found.options.model == "other"
    assert [(t.turn, t.output) for t in found.turns] == [(1, "one"), (2, "two, revised"), (3, "three")]
    assert light is not None and light.turns == [] and light.options.model == "other"


async def test_bytes_live_in_the_blobs_by_content(store: PrunableStore) -> None:
    key = await store.blobs.put(b"some bytes")
    assert await store.blobs.put(b"some bytes") == key
    assert await store.blobs.get(key) == b"some bytes" and await store.blobs.size(key) == 10
    assert key in await store.blobs.keys()
    await store.blobs.delete(key)
    assert await store.blobs.get(key) is None and await store.blobs.size(key) is None


async def test_changes_made_under_the_lock_are_never_lost(opener: Opener) -> None:
    """Forty read-change-writes from two stores (two processes' worth of state) at once, on one conversation."""
    stores = [opener(owner="one"), opener(owner="two")]
    await stores[0].put_conversation(Conversation(id="c", options=Options(model="m")))

    async def add(store: PrunableStore, name: str) -> None:
        async with store.lock("c"):
            found = await store.get_conversation("c", with_turns=False)
            assert found is not None
            await anyio.sleep(0)  # give the other writers every chance to interleave
            found.pending_files.append(name)
            await store.put_changes(found)

    async with anyio.create_task_group() as group:
        for index in range(40):
            group.start_soon(add, stores[index % 2], f"file_{index}")
    found = await stores[1].get_conversation("c")
    assert found is not None and sorted(found.pending_files) == sorted(f"file_{i}" for i in range(40))
    for store in {id(s): s for s in stores}.values():
        await store.close()


async def test_the_turn_lock_is_its_own_key_space_and_names_its_holder(store: PrunableStore) -> None:
    assert await store.turn_holder("c") is None
    async with store.turn_lock("c"):
        with anyio.fail_after(5):
            async with store.lock("c"), store.lock("turn:c"):
                pass
        assert await store.turn_holder("c") is not None
        assert await store.turn_holder("d") is None
    assert await store.turn_holder("c") is None


async def test_an_error_inside_a_lock_comes_out_as_it_was_raised(store: PrunableStore) -> None:
    with pytest.raises(KeyError):
        async with store.lock("c"):
            raise KeyError("inside")
    with anyio.fail_after(5):  # and the lock was given back
        async with store.lock("c"):
            pass


async def test_prune_removes_old_conversations_and_keeps_what_kept_ones_use(
    store: PrunableStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    for name, image, moment in (("old", "img_old", now - 20 * DAY), ("kept", "img_kept", now)):
        monkeypatch.setattr(time, "time", lambda moment=moment: moment)  # the stores stamp what they write
        record = ImageRecord(image_id=image, width=1, height=1, format="PNG", mime="image/png", bytes=1)
        await store.put_image(record, image.encode())
        await store.put_conversation(Conversation(id=name, options=Options(model="m"), pending_images=[image]))
    monkeypatch.undo()
    pruned = await store.prune(Retention(conversation_days=10), now=now + 7200)
    assert pruned.conversations == ["old"] and pruned.images == ["img_old"]
    assert await store.list_conversations() == ["kept"]
    assert await store.get_image("img_kept") is not None and await store.get_image_record("img_old") is None


@pytest.mark.parametrize("renewer", ["per lease", "shared"])
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_lease_nobody_renews_runs_out_and_a_renewed_one_does_not(
    kind: str, renewer: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    backends: list[LeaseBackend]
    if kind == "sqlite":
        path = tmp_path / "leases.sqlite3"
        backends = [SqliteLeases(path, "lock:"), SqliteLeases(path, "lock:")]
    else:
        from redis.asyncio import Redis

        clients = [Redis.from_url(request.getfixturevalue("redis_url")) for _ in range(2)]
        backends = [RedisLeases(client, "lock:") for client in clients]
    dead, alive = LeaseLocks(backends[0], "dead", 0.6), LeaseLocks(backends[1], "alive", 0.6)
    # A holder that died: it took the lease and will never renew or drop it.
    assert await dead.backend.take("c", "dead/1", 0.6)
    async with anyio.create_task_group() as group:
        if renewer == "shared":  # a server's one renewer for all its leases (its lifespan runs it)
            group.start_soon(alive.renew_held)
            await anyio.sleep(0)
            assert alive.renewer_running
        started = time.monotonic()
        async with alive.hold("c"):
            waited = time.monotonic() - started
            assert await alive.holder("c") == "alive"
            await anyio.sleep(1.5)  # over twice the lease: renewed meanwhile
            assert await dead.holder("c") == "alive"
            assert not await dead.backend.take("c", "dead/2", 0.6)
        group.cancel_scope.cancel()
    assert 0.3 < waited < 3
    assert await dead.holder("c") is None
    assert alive.held == {}
