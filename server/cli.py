"""The command line: `imagechat-mcp` serves MCP (stdio by default)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from server import settings as settings_module


def main(argv: Sequence[str] | None = None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["settings"]:
        # Prints the README's settings table: this is the only place the CLI writes to stdout without serving.
        sys.stdout.write(settings_module.markdown_table() + "\n")
        return
    parser = argparse.ArgumentParser(
        prog="imagechat-mcp",
        description=(
            "An MCP server for ComfyUI's OpenAI Chat workflow. Serves stdio by default. "
            "Subcommand: `imagechat-mcp settings` prints the settings table."
        ),
    )
    settings_module.add_arguments(parser)
    args = parser.parse_args(args_list)
    try:
        settings = settings_module.resolve(args, os.environ)
    except settings_module.SettingsError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from server.app import build_server

    server = build_server(settings)
    if settings.transport == "streamable-http":
        server.run("streamable-http", host=settings.host, port=settings.port)
    else:
        server.run("stdio")
