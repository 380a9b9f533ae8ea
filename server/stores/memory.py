"""An ephemeral store: everything lives in this process and is gone when it stops."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

from server.stores.blobs import MemoryBlobs
from server.stores.locks import LocalLocks
from server.stores.retention import Entry, Inventory, Pruned, Retention, choose
from tools.models import Conversation, FileRecord, ImageRecord, Turn


class MemoryStore:
    def __init__(self, owner: str = "this process") -> None:
        self.owner = owner  # the process's id, named by turn_holder
        # Records are kept as JSON so that a caller mutating a returned object changes nothing until it puts it
        # back, exactly as with the persistent stores. A conversation is its own record plus one per turn.
        self.heads: dict[str, str] = {}
        self.turns: dict[str, dict[int, str]] = {}
        self.updated: dict[str, float] = {}
        # id -> (record as JSON, blob key, when stored)
        self.images: dict[str, tuple[str, str, float]] = {}
        self.files: dict[str, tuple[str, str, float]] = {}
        self.variants: dict[str, tuple[str, str, float]] = {}  # key -> (mime, blob key, when stored)
        self.blobs = MemoryBlobs()
        self.batch_records: dict[str, dict[str, str]] = {}  # run id -> item -> record (bulk runs' manifests)
        self._locks = LocalLocks()
        self._turn_locks = LocalLocks()  # apart from _locks: no conversation id can name a turn lock

    async def get_conversation(self, conversation_id: str, *, with_turns: bool = True) -> Conversation | None:
        head = self.heads.get(conversation_id)
        if head is None:
            return None
        conversation = Conversation.model_validate_json(head)
        if with_turns:
            stored = self.turns.get(conversation_id, {})
            conversation.turns = [Turn.model_validate_json(stored[number]) for number in sorted(stored)]
        return conversation

    async def put_conversation(self, conversation: Conversation) -> None:
        await self.put_changes(conversation, conversation.turns)

    async def put_changes(self, conversation: Conversation, turns: Sequence[Turn] = ()) -> None:
        self.heads[conversation.id] = conversation.model_dump_json(exclude={"turns"})
        self.updated[conversation.id] = time.time()
        stored = self.turns.setdefault(conversation.id, {})
        for turn in turns:
            stored[turn.turn] = turn.model_dump_json()

    async def list_conversations(self) -> list[str]:
        return sorted(self.heads)

    async def put_image(self, record: ImageRecord, data: bytes, *, key: str | None = None) -> None:
        if record.image_id not in self.images:
            key = await self.blobs.put(data, key=key)
            self.images.setdefault(record.image_id, (record.model_dump_json(), key, time.time()))

    async def get_image(self, image_id: str) -> tuple[ImageRecord, bytes] | None:
        found = self.images.get(image_id)
        data = None if found is None else await self.blobs.get(found[1])
        return None if found is None or data is None else (ImageRecord.model_validate_json(found[0]), data)

    async def get_image_record(self, image_id: str) -> ImageRecord | None:
        found = self.images.get(image_id)
        return None if found is None else ImageRecord.model_validate_json(found[0])

    async def put_file(self, record: FileRecord, data: bytes) -> None:
        if record.file_id not in self.files:
            key = await self.blobs.put(data)
            self.files.setdefault(record.file_id, (record.model_dump_json(), key, time.time()))

    async def get_file(self, file_id: str) -> tuple[FileRecord, bytes] | None:
        found = self.files.get(file_id)
        data = None if found is None else await self.blobs.get(found[1])
        return None if found is None or data is None else (FileRecord.model_validate_json(found[0]), data)

    async def put_batch_record(self, run_id: str, item: str, record: str) -> None:
        self.batch_records.setdefault(run_id, {})[item] = record

    async def get_batch_records(self, run_id: str) -> dict[str, str]:
        return dict(self.batch_records.get(run_id, {}))

    async def get_variant(self, key: str) -> tuple[str, bytes] | None:
        found = self.variants.get(key)
        data = None if found is None else await self.blobs.get(found[1])
        return None if found is None or data is None else (found[0], data)

    async def put_variant(self, key: str, mime: str, data: bytes) -> None:
        self.variants[key] = (mime, await self.blobs.put(data), time.time())

    async def prune(self, policy: Retention, *, dry_run: bool = False, now: float | None = None) -> Pruned:
        moment = time.time() if now is None else now
        stock = self.inventory()
        pruned = choose(stock, policy, moment)
        if dry_run:
            return pruned
        for conversation_id in pruned.conversations:
            for table in (self.heads, self.turns, self.updated):
                table.pop(conversation_id, None)
        for records, gone in (
            (self.images, pruned.images),
            (self.files, pruned.files),
            (self.variants, pruned.variants),
        ):
            for item in gone:
                records.pop(item, None)
        for key in pruned.blobs:
            await self.blobs.delete(key)
        return pruned

    def inventory(self) -> Inventory:
        conversations = []
        for conversation_id, head in self.heads.items():
            turns = [Turn.model_validate_json(doc) for doc in self.turns.get(conversation_id, {}).values()]
            found = Conversation.model_validate_json(head)
            uses = {*found.pending_images, *found.pending_files}
            uses.update(item for turn in turns for item in (*turn.images, *turn.files))
            size = len(head) + sum(len(doc) for doc in self.turns.get(conversation_id, {}).values())
            conversations.append(Entry(conversation_id, size, self.updated[conversation_id], uses=frozenset(uses)))

        def records(table: dict[str, tuple[str, str, float]]) -> list[Entry]:
            return [
                Entry(item, len(self.blobs.data.get(key, b"")), at, blob=key) for item, (_, key, at) in table.items()
            ]

        blobs = [Entry(key, len(data), self.blobs.added[key]) for key, data in self.blobs.data.items()]
        return Inventory(conversations, records(self.images), records(self.files), records(self.variants), blobs)

    def lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(conversation_id)

    def turn_lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        return self._turn_locks.hold(conversation_id)

    async def turn_holder(self, conversation_id: str) -> str | None:
        return self.owner if self._turn_locks.held(conversation_id) else None

    async def keep_leases(self) -> None:
        return None  # its locks are this process's own: nothing to renew

    async def close(self) -> None:
        return None
