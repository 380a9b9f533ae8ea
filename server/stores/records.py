"""The typed record methods a store offers, written once over the two generic ones each store implements."""

from __future__ import annotations

from tools.models import FileRecord, ImageRecord


class TypedRecords:
    """put_image / get_image / get_image_record / put_file / get_file over `put_record` and `get_record`, whose
    `kind` ("image" or "file") each store maps to its own table or keys."""

    async def put_record(self, kind: str, item: str, meta: str, data: bytes, *, key: str | None = None) -> None:
        raise NotImplementedError

    async def get_record(self, kind: str, item: str, *, data: bool) -> tuple[str, bytes] | None:
        raise NotImplementedError

    async def put_image(self, record: ImageRecord, data: bytes, *, key: str | None = None) -> None:
        await self.put_record("image", record.image_id, record.model_dump_json(), data, key=key)

    async def get_image(self, image_id: str) -> tuple[ImageRecord, bytes] | None:
        found = await self.get_record("image", image_id, data=True)
        return None if found is None else (ImageRecord.model_validate_json(found[0]), found[1])

    async def get_image_record(self, image_id: str) -> ImageRecord | None:
        found = await self.get_record("image", image_id, data=False)
        return None if found is None else ImageRecord.model_validate_json(found[0])

    async def put_file(self, record: FileRecord, data: bytes) -> None:
        await self.put_record("file", record.file_id, record.model_dump_json(), data)

    async def get_file(self, file_id: str) -> tuple[FileRecord, bytes] | None:
        found = await self.get_record("file", file_id, data=True)
        return None if found is None else (FileRecord.model_validate_json(found[0]), found[1])
