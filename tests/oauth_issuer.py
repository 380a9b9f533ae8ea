"""A test OAuth issuer on 127.0.0.1: its metadata and key set over real HTTP, and tokens signed with its keys."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


class Key:
    def __init__(self, kid: str, alg: str) -> None:
        self.kid = kid
        self.alg = alg
        self.private: PrivateKeyTypes = (
            ec.generate_private_key(ec.SECP256R1())
            if alg == "ES256"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


class OAuthIssuer:
    """Serves /.well-known/oauth-authorization-server and /jwks.json; `rotate()` swaps in a new key."""

    def __init__(self) -> None:
        self.keys = [Key("rsa-1", "RS256"), Key("ec-1", "ES256")]
        self.jwks_requests = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, Any]
                if self.path == "/.well-known/oauth-authorization-server":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks.json"}
                elif self.path == "/jwks.json":
                    issuer.jwks_requests += 1
                    body = {"keys": [key.public_jwk() for key in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> OAuthIssuer:
        self.thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def rotate(self) -> Key:
        key = Key(f"rsa-{len(self.keys) + 1}", "RS256")
        self.keys = [key]
        return key

    def token(self, audience: str, *, key: Key | None = None, ttl: float = 300, **claims: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        body = {"iss": self.url, "aud": audience, "sub": "alice", "iat": now, "exp": now + int(ttl), **claims}
        return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid})  # type: ignore[arg-type]
