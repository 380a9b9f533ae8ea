"""`imagechat-mcp batch PATH... --prompt TEXT`: the same question asked of many images, into one results file.

The run is tools/batch.py's; this module only turns the command line into a run: the paths (folders walked
recursively, images only, in a stable order; `-` reads paths from stdin), the estimate printed before starting,
and the progress (a bar on a terminal, log lines otherwise). Rerunning the same command continues the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import get_args

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from server import settings as settings_module
from server.cli import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_UPSTREAM,
    absolute,
    add_settings,
    fail,
    setup_logging,
    with_deps,
)
from server.settings import Settings
from tools import batch
from tools.batch_direct import Progress
from tools.batch_schema import check_strict
from tools.batch_sources import IMAGE_SUFFIXES
from tools.batch_spec import BatchSpec
from tools.deps import Deps
from tools.models import Detail
from tools.ports import UpstreamFailure

log = logging.getLogger("imagechat.batch")
LOG_EVERY = 5.0  # seconds between progress lines when not on a terminal


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(
        prog="imagechat-mcp batch",
        usage="imagechat-mcp batch PATH... --prompt TEXT [--preset NAME] [--model M] [--detail D] "
        "[--out results.jsonl|.csv] [--concurrency N] [--via direct|batch-api|auto] [--json-schema FILE] "
        "[--dry-run] [server flags]",
        description="Ask the same question of every image: one result per image (path, image id, answer, status, "
        "tokens, cost, error) in --out. Folders are read recursively (images only); '-' reads paths from stdin. "
        "Rerunning the same command continues where it stopped and never asks or writes an image twice.",
        epilog=EXIT_CODES,
        conflict_handler="resolve",  # --model below is the run's model, not the server default
    )
    add_settings(made, "server settings (as when serving)")
    made.add_argument("paths", nargs="+", metavar="PATH", help="Image files, folders, or '-' (paths on stdin).")
    made.add_argument("--prompt", "-p", required=True, metavar="TEXT", help="What to ask about each image.")
    made.add_argument("--preset", help="Named instructions: image-to-prompt, describe, extract-text, compare.")
    made.add_argument("--model", dest="run_model", metavar="M", help="The model (default: the server's).")
    made.add_argument("--detail", choices=get_args(Detail), default="auto", help="How closely the model looks.")
    made.add_argument("--out", default="results.jsonl", help="The results file: .jsonl (default) or .csv.")
    made.add_argument("--concurrency", type=int, default=8, metavar="N", help="Requests in flight (direct mode).")
    made.add_argument("--via", choices=("direct", "batch-api", "auto"), default="auto", help="How to ask.")
    made.add_argument("--json-schema", metavar="FILE", help="Ask for JSON matching this schema; it is parsed.")
    made.add_argument("--dry-run", action="store_true", help="Print the estimate and stop.")
    return made


def main(args_list: list[str]) -> int:
    made = parser()
    args = made.parse_args(args_list)  # exits with 2 on a usage error
    try:
        paths = expand(args.paths)
        schema = read_schema(args.json_schema)
        settings = settings_for(args, paths)
        if args.concurrency < 1:
            raise ToolError("--concurrency must be at least 1.")
    except (settings_module.SettingsError, ToolError, OSError) as exc:
        made.error(str(exc))
    setup_logging(settings)
    try:
        return anyio.run(with_deps, settings, lambda deps: job(deps, settings, args, paths, schema))
    except UpstreamFailure as exc:
        return fail(exc, EXIT_UPSTREAM)
    except ToolError as exc:
        return fail(exc, EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        log.debug("unexpected failure", exc_info=True)
        return fail(exc, EXIT_UNEXPECTED, f"unexpected {type(exc).__name__}: ")


def expand(given: list[str]) -> list[str]:
    """Files as given, folders walked (images only, sorted), '-' as paths on stdin; absolute, no repeats."""
    if given.count("-") > 1:
        raise ToolError("'-' (stdin) can be given once.")
    found: list[str] = []
    skipped = 0
    for arg in given:
        names = [line.strip() for line in sys.stdin] if arg == "-" else [arg]
        for name in filter(None, names):
            path = Path(absolute(name))
            if path.is_dir():
                for folder, dirs, files in os.walk(path):
                    dirs.sort()
                    for file in sorted(files):
                        if Path(file).suffix.lower() in IMAGE_SUFFIXES and not file.startswith("."):
                            found.append(os.path.join(folder, file))
                        else:
                            skipped += 1
            elif path.exists():
                found.append(str(path))
            else:
                raise ToolError(f"No such file or folder: {name}")
    if skipped:
        log.warning("skipped %d files in the folders that are not images (by their names)", skipped)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise ToolError("No images found in the paths given.")
    return unique


def read_schema(name: str | None) -> dict[str, object] | None:
    if name is None:
        return None
    try:
        schema = json.loads(Path(name).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ToolError(f"--json-schema {name} is not JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise ToolError(f"--json-schema {name} must hold a JSON object.")
    check_strict(schema)
    return schema


def settings_for(args: argparse.Namespace, paths: list[str]) -> Settings:
    """The server's settings; the folders of the images named are allowed for this run (the user's choice),
    and the upstream's own retries are off unless asked for (the run retries, and slows down on 429)."""
    from server.folders import allowed_folders

    settings = settings_module.resolve(args, os.environ)
    folders = sorted({Path(path).parent for path in paths})
    settings = dataclasses.replace(settings, allowed_dirs=allowed_folders(settings.allowed_dirs, folders))
    if "max_retries" not in settings.given:
        settings = dataclasses.replace(settings, max_retries=0)
    return settings


async def job(
    deps: Deps, settings: Settings, args: argparse.Namespace, paths: list[str], schema: dict[str, object] | None
) -> int:
    from server.batch_service import backend_of

    spec = BatchSpec(
        paths=tuple(paths),
        prompt=args.prompt,
        out=Path(absolute(args.out)),
        model=args.run_model or deps.default_model,
        detail=args.detail,
        instructions=batch.instructions_of(deps, args.preset),
        schema=schema,
    )
    backend = backend_of(deps.upstream, settings)
    planned = await batch.plan(deps, spec, via=args.via, backend=backend)
    left = len(paths) - planned.already
    say(f"run {spec.run_id}: {len(paths)} images, {planned.already} already answered; via {planned.via}")
    said = planned.estimate.text() + ("; the Batch API charges half of this" if planned.via == "batch-api" else "")
    say(f"estimated cost: {said}")
    if args.dry_run or left == 0:
        return EXIT_OK
    progress = Progress(total=left, changed=Reporter(left).show)
    await batch.execute(
        deps, planned.ledger, via=planned.via, concurrency=args.concurrency, progress=progress, backend=backend
    )
    Reporter.end()
    say(
        f"done {progress.done}, failed {progress.failed}, to retry {progress.left_over}; "
        f"cost ${progress.cost:.4f}; results in {spec.out}"
    )
    return EXIT_UPSTREAM if progress.left_over else EXIT_OK


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Reporter:
    """A progress bar on a terminal (stderr), a log line every few seconds otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.on_terminal = sys.stderr.isatty()
        self.last = 0.0

    def show(self, progress: Progress) -> None:
        now = time.monotonic()
        finished = progress.finished
        if not self.on_terminal and now - self.last < LOG_EVERY and finished < self.total:
            return
        self.last = now
        rate = progress.rate()
        eta = (self.total - finished) / rate if rate > 0 else 0.0
        cost_left = progress.cost / finished * (self.total - finished) if finished else 0.0
        text = (
            f"{finished}/{self.total} (failed {progress.failed}) {rate:.1f}/s, ~{eta:.0f} s and ${cost_left:.4f} left"
        )
        if self.on_terminal:
            width = 30
            filled = int(width * finished / max(1, self.total))
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}  ")
            sys.stderr.flush()
        else:
            sys.stderr.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    @staticmethod
    def end() -> None:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
