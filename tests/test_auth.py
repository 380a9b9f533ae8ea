"""Authentication on streamable HTTP: the server as a real process, a test issuer, every token an attacker might try."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.fake_upstream import FakeUpstream
from tests.helpers import call
from tests.oauth_issuer import Key, OAuthIssuer
from tests.test_http import free_port

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
STATIC_TOKEN = "static-token-for-bob-0123456789"


def wait_for_port(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode() if process.stderr else "server exited")
        time.sleep(0.1)
    raise AssertionError("the server did not start")


@contextmanager
def running_server(
    tmp_path: Path, upstream: FakeUpstream, extra: dict[str, str], cwd: Path | None = None, log: Path | None = None
) -> Iterator[str]:
    """The server as a real process; its stderr goes to `log` when given."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IMAGECHAT_"))},
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": upstream.base_url,
        "IMAGECHAT_STATE_DIR": str(tmp_path / "state"),
        **{key: value.replace("{port}", str(port)) for key, value in extra.items()},
    }
    sink = log.open("wb") if log is not None else subprocess.PIPE
    process = subprocess.Popen(
        [sys.executable, "-m", "server", "--transport", "streamable-http", "--port", str(port)],
        env=env,
        stderr=sink,
        cwd=cwd,
    )
    try:
        wait_for_port(process, port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr:
            process.stderr.close()
        if not isinstance(sink, int):
            sink.close()


@pytest.fixture
def issuer() -> Iterator[OAuthIssuer]:
    with OAuthIssuer() as test_issuer:
        yield test_issuer


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(
        f"# who and the sha256 of their token\nbob sha256:{hashlib.sha256(STATIC_TOKEN.encode()).hexdigest()}\n"
    )
    return path


@pytest.fixture
def server(tmp_path: Path, upstream: FakeUpstream, issuer: OAuthIssuer, tokens_file: Path) -> Iterator[str]:
    extra = {
        "IMAGECHAT_AUTH_ISSUER": issuer.url,
        "IMAGECHAT_AUTH_AUDIENCE": "http://127.0.0.1:{port}/mcp",
        "IMAGECHAT_AUTH_SCOPES": "images",
        "IMAGECHAT_AUTH_TOKENS_FILE": str(tokens_file),
    }
    with running_server(tmp_path, upstream, extra) as url:
        yield url


def post(url: str, token: str | None) -> httpx2.Response:
    headers = {**HEADERS, **({"Authorization": f"Bearer {token}"} if token is not None else {})}
    return httpx2.post(url, headers=headers, content=json.dumps(INITIALIZE), timeout=20)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, object], header: dict[str, object]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


def claims_for(issuer: OAuthIssuer, audience: str) -> dict[str, object]:
    now = int(time.time())
    return {"iss": issuer.url, "aud": audience, "sub": "mallory", "exp": now + 300, "scope": "images"}


def test_no_token_is_401_pointing_at_the_metadata_and_the_scope(server: str, issuer: OAuthIssuer) -> None:
    response = post(server, None)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    origin = server.removesuffix("/mcp")
    assert f'resource_metadata="{origin}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert 'scope="images"' in challenge
    metadata = httpx2.get(f"{origin}/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["resource"] == server
    assert metadata["authorization_servers"] == [issuer.url] or metadata["authorization_servers"] == [issuer.url + "/"]
    assert metadata["scopes_supported"] == ["images"]


def test_good_tokens_pass_rs256_es256_and_static(server: str, issuer: OAuthIssuer) -> None:
    assert post(server, issuer.token(server, scope="images")).status_code == 200
    assert post(server, issuer.token(server, key=issuer.keys[1], scope="images")).status_code == 200
    assert post(server, STATIC_TOKEN).status_code == 200


def test_forged_and_misdirected_tokens_are_401(server: str, issuer: OAuthIssuer) -> None:
    impostor = Key("rsa-1", "RS256")  # the issuer's key id, another key: a bad signature
    assert post(server, issuer.token(server, key=impostor, scope="images")).status_code == 401
    claims = claims_for(issuer, server)
    assert post(server, unsigned(claims, {"alg": "none", "typ": "JWT"}) + ".").status_code == 401
    # HMAC keyed with the issuer's public key (the classic algorithm confusion).
    public_pem = (
        issuer.keys[0]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    body = unsigned(claims, {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"})
    mac = hmac.new(public_pem, body.encode(), hashlib.sha256).digest()
    assert post(server, f"{body}.{b64(mac)}").status_code == 401
    assert post(server, issuer.token("http://127.0.0.1:1/mcp", scope="images")).status_code == 401  # audience
    assert post(server, issuer.token(server, ttl=-120, scope="images")).status_code == 401  # expired past leeway
    assert post(server, issuer.token(server, nbf=int(time.time()) + 600, scope="images")).status_code == 401
    assert post(server, issuer.token(server, iss="http://127.0.0.1:2", scope="images")).status_code == 401
    assert post(server, "not-a-token").status_code == 401
    assert post(server, STATIC_TOKEN + "x").status_code == 401


def test_a_token_without_the_scope_is_403(server: str, issuer: OAuthIssuer) -> None:
    response = post(server, issuer.token(server, scope="other"))
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["www-authenticate"]
    assert 'scope="images"' in response.headers["www-authenticate"]


def test_a_rotated_key_is_fetched_and_the_old_one_refused(server: str, issuer: OAuthIssuer) -> None:
    old = issuer.keys[0]
    assert post(server, issuer.token(server, scope="images")).status_code == 200
    fetched = issuer.jwks_requests
    new = issuer.rotate()
    assert post(server, issuer.token(server, key=new, scope="images")).status_code == 200
    assert issuer.jwks_requests == fetched + 1
    assert post(server, issuer.token(server, key=old, scope="images")).status_code == 401
    # Unknown key ids do not make the server refetch on every request (at most once per 30 s).
    for number in range(5):
        stranger = Key(f"made-up-{number}", "RS256")
        assert post(server, issuer.token(server, key=stranger, scope="images")).status_code == 401
    assert issuer.jwks_requests <= fetched + 2


def test_a_revoked_static_token_is_refused_without_a_restart(server: str, tokens_file: Path) -> None:
    assert post(server, STATIC_TOKEN).status_code == 200
    tokens_file.write_text("# bob's token revoked\n")
    assert post(server, STATIC_TOKEN).status_code == 401


async def test_an_authenticated_client_uses_the_tools(server: str, issuer: OAuthIssuer, pictures: Path) -> None:
    token = issuer.token(server, scope="images")
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with http, Client(streamable_http_client(server, http_client=http)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        await call(client, "set_options", {"model": "gpt-4o", "conversation_id": "mine"})
        shown = await client.read_resource("conversations://all")
    assert "chat" in names
    assert "mine" in shown.contents[0].text  # type: ignore[union-attr]


def test_a_bad_tokens_file_stops_the_start_with_its_reason(tmp_path: Path, upstream: FakeUpstream) -> None:
    bad = tmp_path / "bad-tokens"
    bad.write_text("bob plaintext-token\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IMAGECHAT_"))},
        "IMAGECHAT_STATE_DIR": str(tmp_path / "state"),
        "IMAGECHAT_AUTH_TOKENS_FILE": str(bad),
    }
    done = subprocess.run(
        [sys.executable, "-m", "server", "--transport", "streamable-http", "--port", str(free_port())],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"sha256:<hex digest of the token>" in done.stderr
