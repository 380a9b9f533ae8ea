"""Serving streamable HTTP: authentication from the settings, and the ASGI app uvicorn runs."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import anyio
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.settings import Settings, SettingsError

AUTH_SETTINGS = (
    "IMAGECHAT_AUTH_ISSUER with IMAGECHAT_AUTH_AUDIENCE (OAuth) or IMAGECHAT_AUTH_TOKENS_FILE (static tokens)"
)


def authenticates(settings: Settings) -> bool:
    return settings.transport == "streamable-http" and bool(settings.auth_issuer or settings.auth_tokens_file)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def remote(settings: Settings) -> bool:
    """Callers may be other people: streamable HTTP with authentication, or bound beyond loopback."""
    return settings.transport == "streamable-http" and (authenticates(settings) or not loopback(settings.host))


def exposure_problem(settings: Settings, *, no_auth: bool) -> str | None:
    """Why serving these settings would be unsafe: anyone who reaches the address could use it."""
    if settings.transport != "streamable-http" or no_auth or authenticates(settings) or loopback(settings.host):
        return None
    return (
        f"refusing to serve {settings.host} without authentication: anyone who reaches it could use your API key "
        f"and read your conversations. Set {AUTH_SETTINGS}, bind 127.0.0.1, or pass --no-auth if a gateway in "
        "front of this server authenticates its callers."
    )


def readable_folders(settings: Settings) -> list[Path] | None:
    """The configured allowed folders; for remote callers none unless IMAGECHAT_ALLOWED_DIRS is set explicitly
    (a remote user must not read the server's Pictures folder). None: the local defaults."""
    if remote(settings) and "allowed_dirs" not in settings.given:
        return []
    return settings.allowed_dirs


def request_limit(settings: Settings) -> int:
    """The request body limit: as set, or room for the largest image or document as a data: URL."""
    if settings.max_request_bytes is not None:
        return settings.max_request_bytes
    largest = max(settings.max_image_bytes, settings.max_file_bytes)
    return largest * 4 // 3 + 1024 * 1024  # base64, plus the rest of the JSON-RPC message


class BodyLimit:
    """Refuses a body over the limit by its Content-Length with a message that says which setting to change
    (the SDK's own limit, set alike, still counts the bytes of a body sent without a length)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = dict(scope.get("headers", [])).get(b"content-length", b"0") if scope["type"] == "http" else b"0"
        if length.isdigit() and int(length) > self.limit:
            message = (
                f"The request is {int(length)} bytes, over this server's limit of {self.limit} bytes "
                "(IMAGECHAT_MAX_REQUEST_BYTES). Send a large image as an https URL, or make it smaller."
            )
            body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def resource_url(settings: Settings) -> str:
    """This server's URL as clients reach it: the tokens' audience; the address it binds when not named."""
    if settings.auth_audience:
        return settings.auth_audience
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}/mcp"


def auth_options(settings: Settings) -> dict[str, Any]:
    """MCPServer's `token_verifier` and `auth` for these settings (none over stdio or without authentication)."""
    if not authenticates(settings):
        return {}
    if settings.auth_issuer and not settings.auth_audience:
        raise SettingsError(
            "IMAGECHAT_AUTH_ISSUER needs IMAGECHAT_AUTH_AUDIENCE, this server's URL as its tokens name it "
            "(e.g. https://images.example.com/mcp)."
        )
    # Imported here: PyJWT and cryptography cost a stdio server's start-up 30 ms for nothing.
    from server.auth import EitherVerifier, JwtVerifier, StaticTokens

    resource = resource_url(settings)
    scopes = list(settings.auth_scopes or [])
    static = (
        StaticTokens(settings.auth_tokens_file, resource=resource, scopes=scopes) if settings.auth_tokens_file else None
    )
    oauth = (
        JwtVerifier(settings.auth_issuer, resource, jwks_url=settings.auth_jwks_url) if settings.auth_issuer else None
    )
    auth = AuthSettings(
        # With static tokens only there is no authorization server: the metadata names this server itself.
        issuer_url=settings.auth_issuer or resource,  # type: ignore[arg-type]  # pydantic parses the URL
        resource_server_url=resource,  # type: ignore[arg-type]
        required_scopes=scopes or None,
        validate_token_resource=True,
    )
    return {"token_verifier": EitherVerifier(static, oauth), "auth": auth}


class ScopeChallenge:
    """Adds `scope="..."` to the SDK's 401/403 challenge (RFC 6750 section 3; the MCP spec's SHOULD), so a
    client knows which scopes to ask its authorization server for."""

    def __init__(self, app: ASGIApp, scopes: list[str]) -> None:
        self.app = app
        self.scope_param = f', scope="{" ".join(scopes)}"'.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                message["headers"] = [
                    (name, value + self.scope_param if name.lower() == b"www-authenticate" else value)
                    for name, value in message["headers"]
                ]
            await send(message)

        await self.app(scope, receive, sending)


def serve_http(server: MCPServer[Any], settings: Settings) -> None:
    """Run streamable HTTP as `MCPServer.run` would, with the challenge naming the required scopes."""
    import uvicorn

    # Behind a round-robin balancer no session may live in one replica: each request stands alone.
    limit = request_limit(settings)
    app: ASGIApp = server.streamable_http_app(
        stateless_http=settings.replicas > 1, host=settings.host, max_request_body_size=limit
    )
    if authenticates(settings) and settings.auth_scopes:
        app = ScopeChallenge(app, list(settings.auth_scopes))
    app = BodyLimit(app, limit)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    anyio.run(uvicorn.Server(config).serve)
