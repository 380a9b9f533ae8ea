"""Secrets stay secret in every form: the key however an upstream echoes it, credentials in the base URL."""

from __future__ import annotations

import base64
import json
import logging
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import stdio_client

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, fails
from tests.test_stdio import server_params

KEY = "gw-9f8e7d6c5b4a39281706f5e4d3"  # not shaped like an OpenAI key: only knowing it can remove it
PASSWORD = "hunter2-proxy-pass"
QUERY_KEY = "qk-55aa66bb77cc88dd"


def encodings(secret: str) -> dict[str, str]:
    """The forms the adversarial pass saw an upstream quote the key back in."""
    return {
        "plain": secret,
        "base64": base64.b64encode(secret.encode()).decode(),
        "base64 of 'Bearer KEY'": base64.b64encode(f"Bearer {secret}".encode()).decode(),
        "base64 of a Basic credential": base64.b64encode(f"user:{secret}".encode()).decode(),
        "hex": secret.encode().hex(),
        "HEX": secret.encode().hex().upper(),
        "JSON-escaped": json.dumps(secret).strip('"').replace("-", "\\u002d").replace("9", "\\u0039"),
        "JSON-escaped, every character": "".join(f"\\u{ord(c):04x}" for c in secret),
        "URL-encoded": urllib.parse.quote(secret, safe="").replace("f", "%66"),
        "URL-encoded, every character": "".join(f"%{ord(c):02X}" for c in secret),
    }


FORMS = encodings(KEY)


@pytest.fixture
def echo() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.mark.parametrize("form", list(FORMS))
async def test_an_echoed_key_is_removed_from_errors_in_every_encoding(
    settings: Settings, echo: FakeUpstream, form: str
) -> None:
    echo.fail(400, message=f"Key {FORMS[form]} is not allowed to use this deployment.")
    async with connect(settings, base_url=echo.base_url, api_key=KEY) as client:
        message = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert "is not allowed to use this deployment" in message and "[redacted]" in message
    assert FORMS[form] not in message
    assert FORMS[form][4:24] not in message  # not even a long piece of it


@pytest.mark.parametrize("form", list(FORMS))
async def test_an_echoed_key_is_removed_from_answers_in_every_encoding(
    settings: Settings, echo: FakeUpstream, form: str
) -> None:
    echo.add_reply(Reply(text=f"Your header was {FORMS[form]} as sent."))
    async with connect(settings, base_url=echo.base_url, api_key=KEY) as client:
        result = await call(client, "chat", {"prompt": "What did I send?", "images": []})
        preview = await call(client, "preview", {"target": "last"})
    for text in (result["text"], preview["text"]):
        assert "Your header was" in text and FORMS[form][4:24] not in text


async def test_a_key_across_the_500_character_cut_is_removed_before_the_cut(
    settings: Settings, echo: FakeUpstream
) -> None:
    # The key starts at character 473: a cut at 500 would keep 27 of its 28 characters, where no one finds it.
    echo.fail(400, raw_body="x" * 472 + " " + KEY + " and more text after the key")
    async with connect(settings, base_url=echo.base_url, api_key=KEY) as client:
        message = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert "xxxx" in message and KEY[:12] not in message


async def test_retry_after_is_shown_only_as_a_number_of_seconds(settings: Settings, echo: FakeUpstream) -> None:
    echo.fail(429, headers={"Retry-After": "soon<script>"})
    echo.fail(429, headers={"Retry-After": "7"})
    async with connect(settings, base_url=echo.base_url) as client:
        odd = await fails(client, "chat", {"prompt": "hi", "images": []})
        plain = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert "Rate limited" in odd and "soon" not in odd and "<script>" not in odd and "asked to wait" not in odd
    assert "The upstream asked to wait 7 s." in plain


def credentialed(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    return urllib.parse.urlunsplit(
        (parts.scheme, f"proxyuser:{PASSWORD}@{parts.netloc}", parts.path, f"api-key={QUERY_KEY}", "")
    )


def assert_hidden(text: str) -> None:
    assert PASSWORD not in text and QUERY_KEY not in text and "proxyuser" not in text


async def test_the_dry_run_endpoint_shows_no_credentials(settings: Settings, echo: FakeUpstream, mode: str) -> None:
    async with connect(settings, mode, base_url=credentialed(echo.base_url)) as client:
        dry = await call(client, "chat", {"prompt": "hi", "dry_run": True, "images": []})
    assert dry["request"]["endpoint"] == echo.base_url + "/responses?api-key=[redacted]"
    assert_hidden(json.dumps(dry))


async def test_an_unreachable_upstream_is_named_without_credentials(
    settings: Settings, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    async with connect(settings, mode, base_url=credentialed(f"http://127.0.0.1:{port}/v1")) as client:
        message = await fails(client, "chat", {"prompt": "hi", "images": []})
    assert f"Could not reach the upstream at http://127.0.0.1:{port}/v1?api-key=[redacted]." in message
    assert_hidden(message)
    assert_hidden(caplog.text)


async def test_log_lines_show_no_credentials(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeUpstream(serve_responses=False) as chat_only:
        async with connect(settings, base_url=credentialed(chat_only.base_url)) as client:
            await call(client, "chat", {"prompt": "hi", "images": []})
    # The HTTP client logs each request's URL; the server logs its switch to Chat Completions.
    assert "does not serve the Responses API" in caplog.text and chat_only.base_url in caplog.text
    assert "HTTP Request" in caplog.text
    assert_hidden(caplog.text)
    # The query reaches the upstream on every request, after the endpoint's path.
    assert [(r.path, r.query) for r in chat_only.requests] == [
        ("/v1/responses", {"api-key": QUERY_KEY}),
        ("/v1/chat/completions", {"api-key": QUERY_KEY}),
    ]


async def test_over_stdio_the_log_shows_neither_the_base_url_credentials_nor_an_encoded_key(
    tmp_path: Path, pictures: Path
) -> None:
    with FakeUpstream(serve_responses=False) as chat_only:
        chat_only.fail(400, message=f"Bad key {FORMS['base64 of a Basic credential']}", path="/v1/chat/completions")
        params = server_params(tmp_path / "state", pictures, chat_only)
        params.env = {
            **(params.env or {}),
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": credentialed(chat_only.base_url),
            "IMAGECHAT_LOG_LEVEL": "DEBUG",
        }
        stderr = tmp_path / "stderr.log"
        with stderr.open("w", encoding="utf-8") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
                rejected = await fails(client, "chat", {"prompt": "hi", "images": []})
                dry = await call(client, "chat", {"prompt": "hi", "dry_run": True, "images": []})
    log = stderr.read_text(encoding="utf-8")
    assert "does not serve the Responses API" in log and "HTTP Request" in log  # the log was written
    assert_hidden(log)
    assert_hidden(rejected + json.dumps(dry))
    for form in FORMS.values():
        assert form[4:24] not in log and form[4:24] not in rejected
