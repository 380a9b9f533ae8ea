"""Safe by default when callers are remote: no exposure without authentication, no local files unless named,
request bodies large enough for the image limit and refused clearly beyond it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from server.remote import exposure_problem
from server.settings import Settings
from tests.fake_upstream import FakeUpstream
from tests.helpers import call
from tests.test_auth import HEADERS, running_server

TOKEN = "remote-test-token-abcdef0123456789"
LIMIT = 30_000_000


def test_serving_beyond_loopback_without_authentication_is_refused(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IMAGECHAT_"))},
        "IMAGECHAT_STATE_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "server", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    message = done.stderr.decode()
    assert "IMAGECHAT_AUTH_ISSUER" in message and "IMAGECHAT_AUTH_TOKENS_FILE" in message and "--no-auth" in message
    # The explicit flag (a gateway authenticates), loopback, or authentication each make it acceptable.
    exposed = Settings(transport="streamable-http", host="0.0.0.0")
    assert exposure_problem(exposed, no_auth=True) is None
    assert exposure_problem(Settings(transport="streamable-http", host="::1"), no_auth=False) is None
    assert exposure_problem(Settings(transport="streamable-http", host="localhost"), no_auth=False) is None
    assert exposure_problem(Settings(transport="streamable-http", host="example.org"), no_auth=False)
    with_tokens = Settings(transport="streamable-http", host="0.0.0.0", auth_tokens_file=tmp_path / "tokens")
    assert exposure_problem(with_tokens, no_auth=False) is None


@pytest.fixture
def server(tmp_path: Path, upstream: FakeUpstream, pictures: Path) -> Iterator[str]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"carol sha256:{hashlib.sha256(TOKEN.encode()).hexdigest()}\n")
    extra = {"IMAGECHAT_AUTH_TOKENS_FILE": str(tokens), "IMAGECHAT_MAX_REQUEST_BYTES": str(LIMIT)}
    # Started in the pictures folder: locally, the working folder is one of the default allowed folders.
    with running_server(tmp_path, upstream, extra, cwd=pictures) as url:
        yield url


def authorized(url: str) -> tuple[httpx2.AsyncClient, Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    return http, Client(streamable_http_client(url, http_client=http))


def noise_png(size: int) -> bytes:
    side = int((size / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=0)
    return out.getvalue()


async def test_a_remote_caller_cannot_read_local_files_by_default(server: str, pictures: Path) -> None:
    http, client = authorized(server)
    async with http, client:
        for source in (str(pictures / "red.png"), "red.png", (pictures / "red.png").as_uri()):
            result = await client.call_tool("load_image", {"source": source, "conversation_id": "c"})
            assert result.is_error, source
            text = result.content[0].text  # type: ignore[union-attr]
            assert "no folder is allowed for reading" in text and "IMAGECHAT_ALLOWED_DIRS" in text


async def test_a_20_mb_data_url_within_the_limit_is_loaded(server: str) -> None:
    data = noise_png(20_000_000)
    assert 19_000_000 < len(data) < 21_000_000
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert 4 * 1024 * 1024 < len(url) < LIMIT  # more than the SDK's 4 MiB default would take
    http, client = authorized(server)
    async with http, client:
        loaded = await call(client, "load_image", {"source": url, "conversation_id": "big"})
    assert loaded["images"][0]["bytes"] == len(data)
    assert (loaded["images"][0]["width"], loaded["pending_images"]) == (int((20_000_000 / 3) ** 0.5), 1)


def test_a_body_over_the_limit_gets_a_clear_error(server: str) -> None:
    url = "data:image/png;base64," + base64.b64encode(b"\0" * (LIMIT * 3 // 4 + 1000)).decode()
    body = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "load_image", "arguments": {"source": url}},
    }
    response = httpx2.post(
        server, headers={**HEADERS, "Authorization": f"Bearer {TOKEN}"}, content=json.dumps(body), timeout=60
    )
    assert response.status_code == 413
    message = response.json()["error"]["message"]
    assert "IMAGECHAT_MAX_REQUEST_BYTES" in message and str(LIMIT) in message
    # The server is still up for the next request.
    assert httpx2.post(server, headers={**HEADERS, "Authorization": f"Bearer {TOKEN}"}, content="{}").status_code < 500
