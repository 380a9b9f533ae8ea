"""A bulk run's manifest in each store (memory, SQLite, Redis): records by run and item, replaced when written
again, kept apart between runs, and read back by another process's store on the same state."""

from __future__ import annotations

from server.stores.retention import PrunableStore
from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
from tests.test_store_contract import Opener, opener, store  # noqa: F401 - fixtures


async def test_manifest_records_by_run_and_item(store: PrunableStore, opener: Opener) -> None:  # noqa: F811
    assert await store.get_batch_records("batch_unknown") == {}
    await store.put_batch_record("batch_a", "", '{"out": "a.csv"}')
    await store.put_batch_record("batch_a", "/photos/1.jpg", '{"status": "failed"}')
    await store.put_batch_record("batch_a", "/photos/1.jpg", '{"status": "done"}')  # replaces
    await store.put_batch_record("batch_b", "/photos/1.jpg", '{"status": "failed"}')
    expected = {"": '{"out": "a.csv"}', "/photos/1.jpg": '{"status": "done"}'}
    assert await store.get_batch_records("batch_a") == expected
    other = opener()  # another process on the same state (the same store, for memory)
    try:
        assert await other.get_batch_records("batch_a") == expected
        assert await other.get_batch_records("batch_b") == {"/photos/1.jpg": '{"status": "failed"}'}
    finally:
        if other is not store:
            await other.close()
