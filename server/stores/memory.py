"""An ephemeral store: everything lives in this process and is gone when it stops."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from server.stores.locks import LocalLocks
from tools.models import Conversation, FileRecord, ImageRecord


class MemoryStore:
    def __init__(self) -> None:
        # Conversations are kept as JSON so that a caller mutating a returned object changes nothing
        # until it puts it back, exactly as with the persistent stores.
        self._conversations: dict[str, str] = {}
        self._images: dict[str, tuple[str, bytes]] = {}
        self._files: dict[str, tuple[str, bytes]] = {}
        self._variants: dict[str, tuple[str, bytes]] = {}
        self._locks = LocalLocks()
        self._turn_locks = LocalLocks()  # apart from _locks: no conversation id can name a turn lock

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        doc = self._conversations.get(conversation_id)
        return None if doc is None else Conversation.model_validate_json(doc)

    async def put_conversation(self, conversation: Conversation) -> None:
        self._conversations[conversation.id] = conversation.model_dump_json()

    async def list_conversations(self) -> list[str]:
        return sorted(self._conversations)

    async def put_image(self, record: ImageRecord, data: bytes) -> None:
        self._images.setdefault(record.image_id, (record.model_dump_json(), data))

    async def get_image(self, image_id: str) -> tuple[ImageRecord, bytes] | None:
        found = self._images.get(image_id)
        return None if found is None else (ImageRecord.model_validate_json(found[0]), found[1])

    async def get_image_record(self, image_id: str) -> ImageRecord | None:
        found = self._images.get(image_id)
        return None if found is None else ImageRecord.model_validate_json(found[0])

    async def put_file(self, record: FileRecord, data: bytes) -> None:
        self._files.setdefault(record.file_id, (record.model_dump_json(), data))

    async def get_file(self, file_id: str) -> tuple[FileRecord, bytes] | None:
        found = self._files.get(file_id)
        return None if found is None else (FileRecord.model_validate_json(found[0]), found[1])

    async def get_variant(self, key: str) -> tuple[str, bytes] | None:
        return self._variants.get(key)

    async def put_variant(self, key: str, mime: str, data: bytes) -> None:
        self._variants[key] = (mime, data)

    def lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(conversation_id)

    def turn_lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        return self._turn_locks.hold(conversation_id)

    async def close(self) -> None:
        return None
