"""Serving streamable HTTP: authentication from the settings, and the ASGI app uvicorn runs."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import EitherVerifier, JwtVerifier, StaticTokens
from server.settings import Settings, SettingsError

AUTH_SETTINGS = (
    "IMAGECHAT_AUTH_ISSUER with IMAGECHAT_AUTH_AUDIENCE (OAuth) or IMAGECHAT_AUTH_TOKENS_FILE (static tokens)"
)


def authenticates(settings: Settings) -> bool:
    return settings.transport == "streamable-http" and bool(settings.auth_issuer or settings.auth_tokens_file)


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
    app: ASGIApp = server.streamable_http_app(stateless_http=settings.replicas > 1, host=settings.host)
    if authenticates(settings) and settings.auth_scopes:
        app = ScopeChallenge(app, list(settings.auth_scopes))
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    anyio.run(uvicorn.Server(config).serve)
