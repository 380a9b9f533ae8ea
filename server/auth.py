"""Who is calling over streamable HTTP: OAuth access tokens (JWTs from one issuer) or static tokens from a file.

Both are the SDK's `TokenVerifier`: `verify_token(token)` answers an `AccessToken` or None, and the SDK's bearer
middleware turns None into 401 and a missing scope into 403. Nothing here logs a token or a claim's value.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
from mcp.server.auth.provider import AccessToken, TokenVerifier

from server.settings import SettingsError

logger = logging.getLogger(__name__)

# Asymmetric algorithms only: `none` and HMAC (where a public key would serve as the shared secret) never pass.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 60  # clock skew tolerated on exp, nbf and iat
REFETCH_SECONDS = 30.0  # an unknown key id refetches the key set at most this often
FETCH_TIMEOUT = 10.0


class AuthError(SettingsError):
    """The authentication settings cannot work (a bad tokens file, an issuer without a key set)."""


def scopes_of(claims: dict[str, Any]) -> list[str]:
    """RFC 8693/9068 `scope` (space-separated) or the `scp` list some issuers use."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = claims.get("scp")
    if isinstance(scp, list):
        return [str(item) for item in scp]
    return scp.split() if isinstance(scp, str) else []


class JwtVerifier:
    """OAuth access tokens as JWTs signed by `issuer`'s keys, issued for `audience` (this server's URL)."""

    def __init__(self, issuer: str, audience: str, *, jwks_url: str | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self._keys: jwt.PyJWKSet | None = None
        self._fetched_at = float("-inf")
        self._lock: anyio.Lock | None = None

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            return None
        key = await self._key(header.get("kid"))
        if key is None:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):  # a key of another type than alg raises from cryptography
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or claims["sub"]),
            scopes=scopes_of(claims),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=str(claims["sub"]),
            claims={"iss": self.issuer},
        )

    async def _key(self, kid: object) -> jwt.PyJWK | None:
        key = self._find(kid)
        if key is not None:
            return key
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            key = self._find(kid)  # another request may have refetched meanwhile
            if key is None and time.monotonic() - self._fetched_at >= REFETCH_SECONDS:
                # A key id not seen yet: the issuer may have rotated its keys. Refetch, at most once in so long
                # (the first load aside), so tokens with made-up key ids cannot make this server hammer the issuer.
                limited = self._keys is not None
                try:
                    self._keys = await self._fetch()
                except (httpx2.HTTPError, ValueError, jwt.PyJWTError) as exc:
                    logger.warning("could not fetch the issuer's keys: %s", type(exc).__name__)
                    limited = True  # an issuer that is down is not asked on every request
                if limited:
                    self._fetched_at = time.monotonic()
                key = self._find(kid)
        return key

    def _find(self, kid: object) -> jwt.PyJWK | None:
        if self._keys is None:
            return None
        keys = [key for key in self._keys.keys if key.public_key_use in (None, "sig")]
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((key for key in keys if key.key_id == kid), None)

    async def _fetch(self) -> jwt.PyJWKSet:
        async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False) as client:
            if self.jwks_url is None:
                self.jwks_url = await jwks_url_of(client, self.issuer)
            response = await client.get(self.jwks_url)
            response.raise_for_status()
            return jwt.PyJWKSet.from_dict(response.json())


async def jwks_url_of(client: httpx2.AsyncClient, issuer: str) -> str:
    """The key set's URL from the issuer's metadata (RFC 8414, then OpenID Connect discovery)."""
    base = issuer.rstrip("/")
    for suffix in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        response = await client.get(base + suffix)
        if response.status_code == 200:
            url = response.json().get("jwks_uri")
            if isinstance(url, str) and url:
                return url
    raise ValueError("the issuer's metadata names no jwks_uri")


@dataclass(frozen=True)
class StaticToken:
    principal: str
    digest: bytes


def read_tokens_file(path: Path) -> list[StaticToken]:
    """Lines `principal sha256:<hex>`; blank lines and `#` comments are skipped."""
    tokens: list[StaticToken] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) != 2 or not parts[1].startswith("sha256:"):
            raise AuthError(f"{path} line {number}: expected `principal sha256:<hex digest of the token>`")
        try:
            digest = bytes.fromhex(parts[1].removeprefix("sha256:"))
        except ValueError as exc:
            raise AuthError(f"{path} line {number}: the digest is not hexadecimal") from exc
        if len(digest) != 32:
            raise AuthError(f"{path} line {number}: a sha256 digest has 64 hexadecimal digits")
        tokens.append(StaticToken(parts[0], digest))
    return tokens


class StaticTokens:
    """Tokens named in a file by their sha256 digest (no token stored in clear). The file is read again when it
    changes, so removing a line revokes that token without a restart."""

    def __init__(self, path: Path, *, resource: str, scopes: Sequence[str]) -> None:
        self.path = path
        self.resource = resource
        self.scopes = list(scopes)
        self._seen: tuple[int, int, int] | None = None
        self._tokens = self._load()

    def _load(self) -> list[StaticToken]:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise AuthError(f"IMAGECHAT_AUTH_TOKENS_FILE cannot be read: {exc.strerror}") from exc
        self._seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        return read_tokens_file(self.path)

    def _current(self) -> list[StaticToken]:
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._seen:
                self._tokens = self._load()
        except (OSError, AuthError) as exc:
            # A file being rewritten or removed: accept no static token until it reads well again.
            logger.warning("static tokens file unreadable: %s", exc)
            self._seen, self._tokens = None, []
        return self._tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for entry in self._current():  # every entry is compared, so the time taken says nothing about which
            if hmac.compare_digest(digest, entry.digest):
                found = entry.principal
        if found is None:
            return None
        return AccessToken(
            token=token, client_id=found, scopes=self.scopes, resource=self.resource, subject=found, claims={}
        )


class EitherVerifier:
    """Static tokens first (a digest and a compare), then JWTs (only tokens shaped like one)."""

    def __init__(self, static: StaticTokens | None, oauth: JwtVerifier | None) -> None:
        self.static = static
        self.oauth = oauth

    async def verify_token(self, token: str) -> AccessToken | None:
        if self.static is not None:
            found = await self.static.verify_token(token)
            if found is not None:
                return found
        if self.oauth is not None and token.count(".") == 2:
            return await self.oauth.verify_token(token)
        return None


def _check(verifier: EitherVerifier) -> TokenVerifier:
    return verifier  # mypy checks here that the class meets the SDK's protocol
