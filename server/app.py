"""Wiring: settings in, an MCPServer with the workflow's tools, resources and prompts out."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer, RequestStateSecurity

from prompts import instruction_texts
from prompts.register import register_prompts
from server import logsafe
from server.boundary import ImageChatServer
from server.settings import DEFAULTS, Settings
from server.stores import open_store
from tools.deps import Deps, Limits
from tools.ports import SourceReader
from tools.running import RunningTurns

VERSION = "0.1.0"
INSTRUCTIONS = """\
imagechat runs ComfyUI's OpenAI Chat workflow: load images, optionally set options, chat with an OpenAI \
vision model about them, and preview the answer, turn after turn.
1. load_image(source) with a path, file:// or https URL, data: URL or image://<id>; the images wait for the \
next turn (attach_file does the same for .txt/.md/.csv/.json/.pdf documents).
2. set_options(...) for model, instructions or a preset (image-to-prompt, describe, extract-text, compare), \
detail, limits. Optional.
3. chat(prompt) sends the prompt with the waiting images and files; the conversation continues from the last \
turn unless persist_context=false or starting_point is given. dry_run=true shows the request without sending.
4. preview() shows the last answer again; preview(target='conversation') the whole exchange.
A slow answer comes back as status 'running' with its turn number: chat(turn=N) or preview() fetches it \
later. run_workflow runs a ComfyUI OpenAI Chat workflow file as a whole.
Every tool takes conversation_id (default 'default'; a conversation is created on first use) to keep \
separate conversations apart.
run_batch asks one prompt of every image in files or folders, in the background (resumable, exactly once); \
preview(target='batch:<run_id>') shows its progress and results."""


def make_deps(settings: Settings, *, reader: SourceReader | None = None) -> Deps:
    """`reader` replaces the configured source reader (tests point URLs at local servers with it)."""
    from server.folders import allowed_folders
    from server.sources import SafeSourceReader
    from server.upstream import OpenAIUpstream

    if reader is None:
        # Naming an input folder for workflow files is consent to read from it.
        named = [settings.input_dir] if settings.input_dir is not None else []
        from server.remote import readable_folders

        folders = readable_folders(settings)  # [] for remote callers: only what is named explicitly
        reader = SafeSourceReader(
            named if folders == [] else allowed_folders(folders, named),
            allow_hidden=settings.allow_hidden,
            allow_http=settings.allow_http,
            max_bytes=max(settings.max_image_bytes, settings.max_file_bytes),
        )
    turns = RunningTurns()  # this process's owner id also names it in the store's leases
    return Deps(
        store=open_store(settings, turns.owner),
        turns=turns,
        reader=reader,
        upstream=OpenAIUpstream(settings),
        default_model=settings.model,
        presets=instruction_texts(),
        limits=limits_of(settings),
        wait_seconds=settings.wait_seconds,
        input_dir=settings.input_dir or next(iter(reader.allowed_dirs), None),
    )


def limits_of(settings: Settings) -> Limits:
    """The steps' limits: each configurable one is the setting of the same name. Limits has no defaults of its
    own for them, so the settings table's default is the only one."""
    configurable = (item.name for item in dataclasses.fields(Limits) if item.name in DEFAULTS)
    return Limits(**{name: getattr(settings, name) for name in configurable})


@asynccontextmanager
async def opened(settings: Settings, *, reader: SourceReader | None = None) -> AsyncIterator[Deps]:
    """Deps with the task group that chat turns run in, closed on the way out (the server and the CLI)."""
    deps = make_deps(settings, reader=reader)
    try:
        async with deps.turns.running():
            deps.turns.spawn(deps.store.keep_leases)  # one renewer for every lock this process holds
            yield deps
    finally:
        await deps.upstream.close()
        await deps.store.close()


GC_GEN0 = 10_000  # allocations between young collections (Python's default, 700, suits short scripts)


def tune_gc() -> None:
    """Python's cycle collector, set for a long-lived server (once per process).

    200 chats at once keep a few hundred thousand objects alive; with the default thresholds the collector ran
    600 times and spent about a second in them (900 ms in full collections walking every module, schema and
    model class loaded at start-up), a sixth of the CPU of the run. Freezing what start-up made takes it out of
    every collection, and a larger young generation makes them rarer: 230 collections and 0.35 s
    (benchmarks/bench_concurrency.py)."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.set_threshold(GC_GEN0, 20, 20)


def build_server(settings: Settings, *, reader: SourceReader | None = None) -> ImageChatServer:
    """The server for `settings`; `reader` is a test hook (see make_deps)."""
    logsafe.install(settings.api_key)

    @asynccontextmanager
    async def lifespan(_: MCPServer[Deps]) -> AsyncIterator[Deps]:
        from server.mcp_batch import resume_runs
        from server.remote import authenticates
        from server.stores.scoped import Principals

        tune_gc()
        async with opened(settings, reader=reader) as deps:
            server.current = deps
            server.principals = Principals(settings) if authenticates(settings) else None
            await resume_runs(deps, settings)
            try:
                yield deps
            finally:
                server.current = None
                if server.principals is not None:
                    await server.principals.close()

    from server.mcp_app import build_apps
    from server.remote import auth_options

    server = ImageChatServer(
        "imagechat-mcp",
        title="imagechat: chat with OpenAI vision models about images",
        instructions=INSTRUCTIONS,
        version=VERSION,
        lifespan=lifespan,
        log_level=settings.log_level,  # type: ignore[arg-type]
        extensions=[build_apps()],
        request_state_security=state_security(settings),
        **auth_options(settings),  # streamable-http with authentication only
    )
    from server.mcp_batch import register_batch
    from server.mcp_resources import register_resources
    from server.mcp_tools import register_tools
    from server.mcp_workflow import register_workflow_tool

    server.state_dir = settings.resolved_state_dir() if settings.store == "sqlite" else None
    register_tools(server)
    register_workflow_tool(server)
    register_batch(server, settings)
    register_resources(server, lambda: server.current)
    register_prompts(server)
    return server


def state_security(settings: Settings) -> RequestStateSecurity | None:
    """Replicas seal multi-round-trip state with the key they share, so any of them can continue what another
    began; one process keeps the SDK's per-process key (None)."""
    if settings.state_key:
        return RequestStateSecurity(keys=[settings.state_key])
    return None
