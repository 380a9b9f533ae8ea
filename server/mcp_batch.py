"""Bulk runs as MCP: the run_batch tool, the runs and their results as resources, and the runs a stop cut off
continued when the server starts (tools/batch_tool.py says how a run survives a restart)."""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp_types import ToolAnnotations

from server.batch_service import backend_of
from server.mcp_tools import deps_of, parameters_of, takes
from server.settings import Settings
from tools import batch_runs, batch_tool, batch_view
from tools.deps import Deps

log = logging.getLogger(__name__)


def register_batch(server: MCPServer[Deps], settings: Settings) -> None:
    @server.tool(
        title="Bulk run",
        # The same arguments are the same run: asking again continues it and sends nothing already answered.
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
    )
    @takes(parameters_of(batch_tool.run_batch, leave_out={"backend"}))
    async def run_batch(ctx: Context[Deps, Any], **arguments: Any) -> batch_tool.RunBatchResult:
        """Ask one prompt of every image in files/folders, in the background; returns a run id for
        preview(target='batch:<run_id>') at once."""
        deps = deps_of(ctx)
        return await batch_tool.run_batch(deps, backend=backend_of(deps.upstream, settings), **arguments)

    @server.resource(
        "batches://{scope}",
        name="batches",
        title="Bulk runs",
        description="Every run_batch and `imagechat-mcp batch` run: id, status, images, prompt (use scope 'all').",
        mime_type="application/json",
    )
    async def batches(scope: str, ctx: Context[Deps, Any]) -> str:
        if scope != "all":
            raise ResourceNotFoundError("Use batches://all.")
        return json.dumps(await batch_runs.list_runs(ctx.request_context.lifespan_context.store), indent=2)

    @server.resource(
        "batch://{run_id}",
        name="batch",
        title="A bulk run's results",
        description="One JSON line per image answered so far: path, image_id, status, answer, tokens, cost, error.",
        mime_type="application/jsonl",
    )
    async def batch_results(run_id: str, ctx: Context[Deps, Any]) -> str:
        return batch_view.jsonl(await rows_of(ctx, run_id))

    @server.resource(
        "batch://{run_id}/csv",
        name="batch-csv",
        title="A bulk run's results as CSV",
        description="A header, then one row per image answered so far (the columns of batch://<run_id>).",
        mime_type="text/csv",
    )
    async def batch_csv(run_id: str, ctx: Context[Deps, Any]) -> str:
        return batch_view.csv_text(await rows_of(ctx, run_id))


async def rows_of(ctx: Context[Deps, Any], run_id: str) -> list[dict[str, Any]]:
    """A run's results so far; an unknown run is a resource not found, with the known runs named."""
    try:
        _, rows = await batch_view.results(ctx.request_context.lifespan_context, run_id)
    except ToolError as exc:
        raise ResourceNotFoundError(str(exc)) from None
    return rows


async def resume_runs(deps: Deps, settings: Settings) -> None:
    """Continue the server's own runs that a stop cut off (a principal's: run_batch(resume=<id>))."""
    try:
        await batch_tool.resume_unfinished(deps, backend_of(deps.upstream, settings))
    except Exception as exc:  # the server starts whatever the store says
        log.warning("bulk runs cut off by a stop were not continued: %s", exc)
