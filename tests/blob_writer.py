"""A process that stores large images in a SQLite store until it is killed (the crash test's victim).

    python -m tests.blob_writer STATE_DIR

Prints "ready" once the store is open, then writes 4 MB images (and a variant of each) for ever, as load_image
does: every other image is first written out ahead of its record (staged, as during its check)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import anyio

from server.stores.sqlite import SqliteStore
from tools.deps import content_id
from tools.models import ImageRecord


async def main(state: Path) -> None:
    store = SqliteStore(state / "imagechat.sqlite3")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    staging = False
    while True:
        data = os.urandom(4 * 1024 * 1024)
        image_id = content_id("img", data)
        record = ImageRecord(image_id=image_id, width=1, height=1, format="PNG", mime="image/png", bytes=len(data))
        staging = not staging
        if staging:
            key = hashlib.sha256(data).hexdigest()
            await store.blobs.stage(data, key)
            await store.put_image(record, data, key=key)
        else:
            await store.put_image(record, data)
        await store.put_variant(f"{image_id}/1x1", "image/jpeg", data[: len(data) // 2])


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
