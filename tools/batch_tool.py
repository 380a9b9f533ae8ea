"""The run_batch step: a bulk run started in the server, answered in the background, its id returned at once.

The run is tools/batch.py's, as for `imagechat-mcp batch`; what differs is where the images come from (files and
folders read through the source reader, tools/batch_sources.py), where the results go (the run's manifest in the
caller's store: preview(target="batch:<id>") and the batch:// resource read them) and who waits (nobody: the run
goes on in the server's task group, as a long chat answer does).

A restart: a run cut off by a stop of the server is continued when the server starts again (`resume_unfinished`,
for the server's own store), by run_batch(resume=<id>), or by the same run_batch call again (the same arguments
are the same run). In every case the manifest says which images have a result, and those are never sent again.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools import batch, batch_runs
from tools.batch_direct import Progress
from tools.batch_schema import check_strict
from tools.batch_sources import expand
from tools.batch_spec import NO_FILE, RUN_ITEM, BatchSpec, Ledger
from tools.deps import Deps
from tools.models import Detail

log = logging.getLogger(__name__)

SourcesArg = Annotated[list[str] | None, Field(max_length=1000, description="Image files and folders.")]
RunPresetArg = Annotated[str | None, Field(description="As in set_options.")]
ViaArg = Annotated[
    Literal["direct", "batch-api", "auto"],
    Field(description="auto: batch-api (half price, within 24 h) for 1000+ images."),
]
ConcurrencyArg = Annotated[int, Field(ge=1, le=64, description="In flight (direct).")]
JsonSchemaArg = Annotated[dict[str, Any] | None, Field(description="Strict schema of JSON answers.")]
BatchDryRunArg = Annotated[bool, Field(description="Count and price only.")]
ResumeArg = Annotated[str | None, Field(description="A run id to continue.")]


class RunBatchResult(BaseModel):
    run_id: str
    status: str  # started, running (already), finished (nothing left) or estimated (a dry run)
    images: int
    already_answered: int
    via: str
    estimated_cost: float | None  # USD at most, for the images left; None: no price known for the model


def not_found(run_id: str, known: list[dict[str, Any]]) -> ToolError:
    listing = ", ".join(repr(run["id"]) for run in known[:20]) if known else "none yet"
    return ToolError(f"No batch run {run_id!r}. Known runs: {listing}. Start one with run_batch, or check the id.")


async def stored_spec(deps: Deps, run_id: str) -> BatchSpec:
    """The spec a run was started with, to continue it; only run_batch's runs (a command's run is continued by
    running the command again: its results file is the command's)."""
    run = await batch_runs.get_run(deps.store, run_id)
    if run is None:
        raise not_found(run_id, await batch_runs.list_runs(deps.store))
    if run.get("by") != "tool":
        raise ToolError(f"Run {run_id!r} was started by `imagechat-mcp batch`: run that command again to continue it.")
    record = json.loads((await deps.store.get_batch_records(run_id)).get(RUN_ITEM) or "{}")
    return BatchSpec.from_record(record["spec"])


async def new_spec(
    deps: Deps,
    sources: list[str] | None,
    prompt: str | None,
    preset: str | None,
    model: str | None,
    detail: Detail,
    json_schema: dict[str, Any] | None,
) -> BatchSpec:
    from tools.chat import check_prompt

    if not sources:
        raise ToolError("run_batch needs sources (image files or folders) and a prompt, or resume=<run id>.")
    check_prompt(deps, prompt or "")
    if json_schema is not None:
        check_strict(json_schema)
    instructions = batch.instructions_of(deps, preset)
    paths = await expand(deps.reader, sources)
    return BatchSpec(
        paths=tuple(paths),
        prompt=prompt or "",
        out=NO_FILE,
        model=model or deps.default_model,
        detail=detail,
        instructions=instructions,
        schema=json_schema,
        sources=tuple(sources),
    )


async def run_batch(
    deps: Deps,
    sources: SourcesArg = None,
    prompt: str | None = None,
    preset: RunPresetArg = None,
    model: str | None = None,
    detail: Detail = "auto",
    via: ViaArg = "auto",
    concurrency: ConcurrencyArg = 8,
    json_schema: JsonSchemaArg = None,
    dry_run: BatchDryRunArg = False,
    resume: ResumeArg = None,
    *,
    backend: batch.Backend,
) -> RunBatchResult:
    if resume:
        spec = await stored_spec(deps, resume.strip())
        asked = await batch_runs.get_run(deps.store, spec.run_id) or {}
        via, concurrency = asked.get("via") or via, int(asked.get("concurrency", concurrency))
    else:
        spec = await new_spec(deps, sources, prompt, preset, model, detail, json_schema)
    planned = await batch.plan(deps, spec, via=via, backend=backend, by="tool")
    store, run_id = deps.store, spec.run_id
    await batch_runs.mark(store, run_id, via_asked=via, concurrency=concurrency)
    left = len(spec.paths) - planned.already
    if dry_run or left == 0:
        status = "estimated" if left else "finished"
        if not dry_run:
            await batch_runs.mark(store, run_id, status="finished")
    elif await batch_runs.holder(store, run_id) is not None:
        status = "running"
    else:
        status = "started"
        spawn(deps, spec, planned.via, concurrency, backend)
    return RunBatchResult(
        run_id=run_id,
        status=status,
        images=len(spec.paths),
        already_answered=planned.already,
        via=planned.via,
        estimated_cost=planned.estimate.total(batch_api=planned.via == "batch-api"),
    )


def spawn(deps: Deps, spec: BatchSpec, via: batch.Via, concurrency: int, backend: batch.Backend) -> None:
    """Answer the run in the server's task group; its failure is recorded in the runs index, never raised there."""

    async def work() -> None:
        try:
            ledger = Ledger(deps.store, spec)
            await batch.execute(
                deps, ledger, via=via, concurrency=concurrency, progress=Progress(total=0), backend=backend
            )
        except Exception as exc:  # recorded as the run's error by execute; the server goes on
            log.warning("bulk run %s stopped: %s", spec.run_id, exc)

    deps.turns.spawn(work)


async def resume_unfinished(deps: Deps, backend: batch.Backend) -> list[str]:
    """Continue the runs run_batch started that a stop of the server cut off."""
    resumed = []
    for run in await batch_runs.list_runs(deps.store):
        # One still held (by another replica, or by a process just killed whose lease has not run out) is spawned
        # all the same: its runner waits for the lease, then finds what is left, which may be nothing.
        if run.get("by") != "tool" or run.get("status") != "running":
            continue
        try:
            spec = await stored_spec(deps, run["id"])
        except (ToolError, KeyError, ValueError) as exc:
            log.warning("bulk run %s cannot be continued: %s", run["id"], exc)
            continue
        spawn(deps, spec, run.get("via") or "direct", int(run.get("concurrency") or 8), backend)
        resumed.append(run["id"])
    if resumed:
        log.info("continuing %d bulk runs cut off by a stop: %s", len(resumed), ", ".join(resumed))
    return resumed
