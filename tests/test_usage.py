"""What a user stores, for IMAGECHAT_USER_STORED_MB, is one rule in every store (retention.held: conversations,
images and files, not the prepared-image cache): each store's quick measure (server.stores.usage) agrees with
the inventory a prune takes, and with the bytes actually put."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from server.stores import redis_prune, sqlite_prune, usage
from server.stores.memory import MemoryStore
from server.stores.redis import RedisStore
from server.stores.retention import Inventory, PrunableStore, held
from server.stores.sqlite import SqliteStore
from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
from tests.test_store_contract import opener, store, turn  # noqa: F401 - fixtures
from tools.models import Conversation, FileRecord, ImageRecord, Options


def measures(kept: PrunableStore) -> tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[Inventory]]]:
    """The store's quick measure, and the inventory its prune takes."""
    if isinstance(kept, SqliteStore):
        database = kept
        return (lambda: usage.sqlite_bytes(database)), (
            lambda: database.run(lambda db: sqlite_prune.inventory(db, database.blobs))
        )
    if isinstance(kept, RedisStore):
        shared = kept
        return (lambda: usage.redis_bytes(shared)), (lambda: redis_prune.inventory(shared))
    assert isinstance(kept, MemoryStore)
    memory = kept

    async def stock() -> Inventory:
        return memory.inventory()

    return (lambda: usage.memory_bytes(memory)), stock


async def test_every_store_measures_what_a_user_stored_the_same_way(store: PrunableStore) -> None:  # noqa: F811
    quick, inventory = measures(store)
    assert await quick() == 0
    conversation = Conversation(id="c", options=Options(model="m"), pending_images=["img_1"])
    conversation.turns = [turn(1, "an answer"), turn(2, "another")]
    await store.put_conversation(conversation)
    image = b"\x89PNG" + bytes(5000)
    record = ImageRecord(image_id="img_1", width=1, height=1, format="PNG", mime="image/png", bytes=len(image))
    await store.put_image(record, image)
    await store.put_file(FileRecord(file_id="file_1", name="a.txt", mime="text/plain", bytes=300), b"x" * 300)
    await store.put_variant("img_1/1x1", "image/jpeg", bytes(7000))  # the server's cache: not the user's
    measured = await quick()
    assert measured == held(await inventory())
    records = measured - len(image) - 300
    assert 0 < records < 2000  # the conversation's own record and its two turns, as JSON
