"""The command line: `imagechat-mcp` serves MCP (stdio by default); `ask` and `workflow` do one job for a script.

`ask` and `workflow` run the same step functions as the tools, with the same settings (so `--conversation`
continues in the same SQLite store as the server), then print the answer on stdout and errors on stderr.
Only these subcommands write to stdout: serving never does, since stdout is the MCP protocol.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar, cast, get_args

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from server import logsafe, malloc_tuning
from server import settings as settings_module
from server.settings import Settings
from tools.chat import ChatResult, chat
from tools.deps import Deps
from tools.load_image import load_image
from tools.models import Detail
from tools.options import OptionChanges, set_options
from tools.ports import UpstreamFailure
from tools.workflow import WorkflowResult, run_workflow

T = TypeVar("T")

EXIT_OK, EXIT_UNEXPECTED, EXIT_BAD_INPUT, EXIT_UPSTREAM = 0, 1, 2, 3
EXIT_CODES = (
    "exit codes: 0 done; 2 bad input or usage (a missing file, an unknown node, a bad flag); 3 the model's "
    "server failed or refused (auth, quota, rate limit, outage); 1 anything else. Errors go to stderr."
)
# A script waits for its answer: unless told otherwise, wait up to chat's limit rather than the ~1 minute an
# interactive client gets (after which chat answers "running").
SCRIPT_WAIT_SECONDS = 3600.0
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")


def main(argv: Sequence[str] | None = None) -> None:
    # First, before any thread allocates: image buffers then reuse their pages (server/malloc_tuning.py).
    malloc_tuning.tune()
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = args_list[0] if args_list else None
    if command == "settings":
        # Prints the README's settings table.
        sys.stdout.write(settings_module.markdown_table() + "\n")
        return
    if command == "ask":
        sys.exit(run(ask_parser(), args_list[1:], ask))
    if command == "workflow":
        sys.exit(run(workflow_parser(), args_list[1:], workflow))
    if command == "prune":
        sys.exit(prune(args_list[1:]))
    if command == "batch":
        from server import batch_cli

        sys.exit(batch_cli.main(args_list[1:]))
    serve(args_list)


def serve(args_list: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="imagechat-mcp",
        description=(
            "An MCP server for ComfyUI's OpenAI Chat workflow. Serves stdio by default. Subcommands: "
            "`imagechat-mcp ask IMAGE... --prompt TEXT` (one turn), `imagechat-mcp workflow FILE.json` (run a "
            "ComfyUI workflow), `imagechat-mcp prune [--dry-run]` (remove what the --keep-* settings do not keep), "
            "`imagechat-mcp settings` (the settings table); each takes --help."
        ),
        epilog="ask and workflow " + EXIT_CODES,
    )
    add_settings(parser)
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="Serve streamable-http beyond loopback without authentication (a gateway in front authenticates).",
    )
    args = parser.parse_args(args_list)
    try:
        settings = settings_module.resolve(args, os.environ)
    except settings_module.SettingsError as exc:
        parser.error(str(exc))
    from server.remote import exposure_problem

    exposure = exposure_problem(settings, no_auth=args.no_auth)
    if exposure is not None:
        parser.exit(2, f"imagechat-mcp: error: {exposure}\n")
    if settings.replicas > 1 and not settings.state_key:
        parser.error("IMAGECHAT_REPLICAS > 1 needs IMAGECHAT_STATE_KEY, the same secret on every replica.")
    setup_logging(settings)
    from server.failures import state_problem

    problem = state_problem(settings)
    if problem is not None:
        parser.exit(2, f"imagechat-mcp: error: {problem}\n")
    from server import terminal

    by_hand = settings.transport == "stdio" and terminal.on_terminal()
    if by_hand:  # said before the imports below, which take a moment
        terminal.greet(has_key=bool(settings.api_key))
    from server.app import build_server

    try:
        server = build_server(settings)
    except settings_module.SettingsError as exc:
        parser.error(str(exc))
    if settings.transport == "streamable-http":
        from server.failures import quiet_disconnects
        from server.remote import serve_http

        quiet_disconnects()
        serve_http(server, settings)
    elif by_hand:
        terminal.run(server)
    else:
        from server import stdio_pipes

        if stdio_pipes.usable():
            stdio_pipes.run(server)
        else:
            server.run("stdio")


def add_settings(parser: argparse.ArgumentParser, title: str | None = None) -> None:
    """Every server setting as a flag (in their own help section when titled)."""
    target = parser.add_argument_group(title) if title else parser
    settings_module.add_arguments(cast(argparse.ArgumentParser, target))  # a group takes add_argument alike


def setup_logging(settings: Settings) -> None:
    logsafe.install(settings.api_key)
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


# -- the subcommands ----------------------------------------------------------------------------------


def ask_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagechat-mcp ask",
        usage="imagechat-mcp ask [IMAGE ...] --prompt TEXT [--model M] [--instructions TEXT | --preset NAME] "
        "[--detail D] [--conversation ID] [--json] [server flags]",
        description="One chat turn about some images: the answer on stdout. Without --conversation each call is "
        "a fresh conversation (its id is in the --json output); with it, the turn continues that conversation.",
        epilog=EXIT_CODES,
        conflict_handler="resolve",  # --model below means this turn's model, not the server default
    )
    add_settings(parser, "server settings (as when serving)")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="Image paths or https:// URLs; '-' reads stdin.")
    parser.add_argument("--prompt", "-p", required=True, metavar="TEXT", help="What to ask about the images.")
    parser.add_argument("--model", dest="turn_model", metavar="M", help="The model, e.g. gpt-4.1-mini, gpt-4o, o3.")
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--instructions", help="System instructions.")
    given.add_argument("--preset", help="Named instructions: image-to-prompt, describe, extract-text, compare.")
    parser.add_argument("--detail", choices=get_args(Detail), help="How closely the model looks.")
    parser.add_argument("--conversation", help="Continue this conversation (created on first use).")
    parser.add_argument("--json", action="store_true", help="Print the whole result as JSON.")
    return parser


def workflow_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagechat-mcp workflow",
        usage="imagechat-mcp workflow FILE.json [--input-dir DIR] [--name NAME] [--json] [server flags]",
        description="Run a ComfyUI OpenAI Chat workflow file (UI or API format) and print each Preview Any. "
        "LoadImage and OpenAIInputFiles names are looked up in --input-dir.",
        epilog=EXIT_CODES,
    )
    add_settings(parser, "server settings (as when serving; --input-dir is among them)")
    parser.add_argument("file", metavar="FILE.json", help="The workflow file, as saved or exported from ComfyUI.")
    parser.add_argument("--name", help="Names its conversations workflow:<name>:node<id> (default: the file's name).")
    parser.add_argument("--json", action="store_true", help="Print the whole result as JSON.")
    return parser


async def ask(deps: Deps, args: argparse.Namespace) -> ChatResult:
    conversation_id = args.conversation or f"ask-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    if any(value is not None for value in (args.turn_model, args.instructions, args.preset, args.detail)):
        changes = OptionChanges(
            model=args.turn_model, instructions=args.instructions, preset=args.preset, detail=args.detail
        )
        await set_options(deps, conversation_id, changes)
    if args.images:
        await load_image(deps, args.images, conversation_id)
    result = await chat(deps, args.prompt, conversation_id, wait_seconds=None)
    if result.status == "running":
        raise UpstreamFailure(f"The answer was not ready within {deps.wait_seconds:.0f} s (--wait-seconds).")
    return result


async def workflow(deps: Deps, args: argparse.Namespace) -> WorkflowResult:
    return await run_workflow(deps, args.file, name=args.name)


def printable(result: ChatResult | WorkflowResult) -> str:
    """The answer (ask), or each preview (workflow; headed by its node when there are several)."""
    if isinstance(result, ChatResult):
        return result.text
    texts = result.previews or {node_id: chat.text for node_id, chat in result.chats.items()}
    if len(texts) == 1:
        return next(iter(texts.values()))
    return "\n\n".join(f"--- node {node_id} ---\n{text}" for node_id, text in texts.items())


def prune(args_list: list[str]) -> int:
    """`imagechat-mcp batch PATH... --prompt TEXT` (many images into one results file), "
    "`imagechat-mcp prune [--dry-run]`: remove from the store what the keep_* settings do not keep."""
    parser = argparse.ArgumentParser(
        prog="imagechat-mcp prune",
        description="Remove what the retention settings (--keep-*) do not keep: old conversations, images and "
        "files no kept conversation refers to, old prepared images; in the server's store and in each "
        "authenticated user's. Says what it removed.",
    )
    add_settings(parser, "server settings (the store, its state folder and the --keep-* limits)")
    parser.add_argument("--dry-run", action="store_true", help="Say what would be removed; remove nothing.")
    args = parser.parse_args(args_list)
    try:
        settings = settings_module.resolve(args, os.environ)
    except settings_module.SettingsError as exc:
        parser.error(str(exc))
    setup_logging(settings)
    from server.stores import retention_of
    from server.stores.prune_all import prune_all

    async def job() -> str:  # the server's own store and every authenticated user's
        return await prune_all(settings, retention_of(settings), dry_run=args.dry_run)

    sys.stdout.write(anyio.run(job) + "\n")
    return EXIT_OK


# -- running one --------------------------------------------------------------------------------------


def run(
    parser: argparse.ArgumentParser,
    args_list: list[str],
    job: Callable[[Deps, argparse.Namespace], Awaitable[ChatResult | WorkflowResult]],
) -> int:
    args = parser.parse_args(args_list)  # exits with 2 on a usage error
    try:
        settings = script_settings(args)
        if hasattr(args, "images"):
            if args.images.count("-") > 1:
                raise ToolError("'-' (stdin) can be given once.")
            args.images = [stdin_source(settings.max_image_bytes) if arg == "-" else arg for arg in args.images]
    except (settings_module.SettingsError, ToolError) as exc:
        parser.error(str(exc))
    setup_logging(settings)
    try:
        result = anyio.run(with_deps, settings, lambda deps: job(deps, args))
    except UpstreamFailure as exc:
        return fail(exc, EXIT_UPSTREAM)
    except ToolError as exc:
        return fail(exc, EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        logging.getLogger(__name__).debug("unexpected failure", exc_info=True)
        return fail(exc, EXIT_UNEXPECTED, f"unexpected {type(exc).__name__}: ")
    text = result.model_dump_json(indent=2) if args.json else printable(result)
    sys.stdout.write(logsafe.scrub_secrets(text).rstrip("\n") + "\n")
    return EXIT_OK


def fail(exc: BaseException, code: int, prefix: str = "") -> int:
    sys.stderr.write(f"imagechat-mcp: error: {prefix}{logsafe.scrub_secrets(str(exc))}\n")
    return code


async def with_deps(settings: Settings, job: Callable[[Deps], Awaitable[T]]) -> T:
    """Deps as the server builds them, with the task group chat turns run in, closed afterwards."""
    from server.app import opened

    done: list[T] = []
    failed: list[Exception] = []
    async with opened(settings) as deps:
        try:
            done.append(await job(deps))
        except Exception as exc:  # raised after the task group, so it is not wrapped in a group
            failed.append(exc)
    if failed:
        raise failed[0]
    return done[0]


def script_settings(args: argparse.Namespace) -> Settings:
    """The server's settings, plus what a script's command line implies.

    Files named on the command line, and --input-dir, are the user's own choice: their folders are added to
    the allowed folders for this run (every other rule of the source reader still applies)."""
    settings = settings_module.resolve(args, os.environ)
    if "wait_seconds" not in settings.given:
        settings = dataclasses.replace(settings, wait_seconds=SCRIPT_WAIT_SECONDS)
    named: list[Path] = []
    if getattr(args, "file", None):
        args.file = absolute(args.file)
        named.append(Path(args.file).parent)
    for index, source in enumerate(getattr(args, "images", [])):
        if source != "-" and not _SCHEME.match(source):
            args.images[index] = absolute(source)
            named.append(Path(args.images[index]).parent)
    if settings.input_dir is not None:
        input_dir = Path(absolute(str(settings.input_dir)))
        settings = dataclasses.replace(settings, input_dir=input_dir)
        named.append(input_dir)
    if not named:
        return settings
    from server.folders import allowed_folders

    return dataclasses.replace(settings, allowed_dirs=allowed_folders(settings.allowed_dirs, named))


def absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def stdin_source(limit: int) -> str:
    """Standard input as a data: URL, so it goes through load_image like any other source."""
    from tools.image_mime import sniff_mime

    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise ToolError(f"stdin holds more than {limit} bytes, the image size limit (--max-image-bytes).")
    if not data:
        raise ToolError("'-' reads an image from stdin, but stdin is empty.")
    mime = sniff_mime(data)
    if mime is None:
        raise ToolError("stdin does not hold an image format imagechat knows (PNG, JPEG, GIF, WebP, ...).")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"
