"""Test-only: the real server over streamable HTTP on 127.0.0.1, with the test host page beside it.

The page and /mcp share one origin, as a web host and its MCP connection would, so the browser needs no CORS.
Run by tests/test_app_browser.py as its own process: python -m tests.app_host.serve --port N --bundle FILE ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from server.app import build_server
from server.settings import Settings

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>imagechat test host</title></head>
<body style="margin:0;padding:8px;background:#e8ecf2;font:13px system-ui">
<div style="margin-bottom:6px;color:#445">Test host (AppBridge) &middot; imagechat MCP App</div>
<div id="frame"></div>
<script type="module" src="/host.js"></script>
</body></html>
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--allowed", type=Path, required=True)
    args = parser.parse_args()
    settings = Settings(
        store="memory",
        state_dir=args.state_dir,
        allowed_dirs=[args.allowed],
        api_key="sk-test-key",
        base_url=args.upstream,
        max_retries=0,
        timeout=20.0,
    )
    app = build_server(settings).streamable_http_app(host="127.0.0.1")
    bundle = args.bundle.read_bytes()

    async def page(_: Request) -> Response:
        return HTMLResponse(HOST_PAGE)

    async def script(_: Request) -> Response:
        return Response(bundle, media_type="text/javascript")

    app.router.routes[:0] = [Route("/", page), Route("/host.js", script)]
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
