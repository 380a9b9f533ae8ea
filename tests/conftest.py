from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.app import build_server
from server.settings import Settings
from tests import images
from tests.fake_upstream import FakeUpstream

MODES = ["auto", "legacy"]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    """An allowed folder with a few images and documents in it."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "red.png").write_bytes(images.png(64, 48, (200, 30, 30)))
    (folder / "blue.jpg").write_bytes(images.jpeg(80, 60))
    (folder / "rotated.jpg").write_bytes(images.jpeg(80, 40, orientation=6))
    (folder / "anim.gif").write_bytes(images.gif(5))
    (folder / "notes.txt").write_text("The red one is a test card.\n", encoding="utf-8")
    (folder / "doc.pdf").write_bytes(images.minimal_pdf())
    return folder


@pytest.fixture
def settings(tmp_path: Path, pictures: Path, upstream: FakeUpstream) -> Settings:
    return Settings(
        store="memory",
        state_dir=tmp_path / "state",
        allowed_dirs=[pictures],
        api_key="sk-test-key",
        base_url=upstream.base_url,
        max_retries=0,
        timeout=20.0,
    )


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def connect(settings: Settings, mode: str = "auto", **changes: Any) -> AsyncIterator[Client]:
    server = build_server(replace(settings, **changes) if changes else settings)
    async with Client(server, mode=mode) as client:
        yield client
