"""The Batch API path: JSONL request files within OpenAI's limits, uploaded, batched, polled, joined by custom_id.

Exactly once at the Batch API's edge: each request file is uploaded and recorded in the manifest as a part
("part:<n>": its custom ids -> image, its input file) before its batch is created, and the batch is created with
metadata naming the run and the part. The batch's own record ("batch:<id>") follows. A run restarted between the
two finds the batch already made for that part (listing the batches by their metadata) and adopts it instead of
creating another; a part whose batch was never made gets it then. So a restarted run polls the batches it made
and never sends their images again.

Answered lines become results (at half the price: the Batch API's discount); lines refused (4xx) become failed
results; lines that failed for a passing reason, or that an expired batch never reached, are left for a rerun.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from mcp.server.mcpserver.exceptions import ToolError

from tools.batch_direct import Progress
from tools.batch_spec import Ledger, Result
from tools.batch_work import TRANSIENT_STATUSES, Permanent, prepare, request_of, result_of
from tools.deps import Deps
from tools.ports import ChatReply, UpstreamFailure

log = logging.getLogger(__name__)
BATCH_DISCOUNT = 0.5
FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})
PREPARED_AT_ONCE = 16


@dataclass(frozen=True)
class BatchState:
    status: str
    output_file_id: str | None
    error_file_id: str | None


class BatchService(Protocol):
    """OpenAI's Files and Batches endpoints (server/batch_service.py implements it on the SDK)."""

    async def upload(self, name: str, data: bytes) -> str: ...
    async def create(self, file_id: str, metadata: dict[str, str]) -> str: ...
    async def find(self, metadata: dict[str, str], since: float) -> str | None:
        """The id of a batch made with this metadata at or after `since` (a Unix time), if any."""
        ...

    async def state(self, batch_id: str) -> BatchState: ...
    async def content(self, file_id: str) -> bytes: ...
    def reply(self, body: dict[str, Any], model: str) -> ChatReply:
        """A batch line's response body as a reply (UpstreamFailure when the response failed)."""
        ...


@dataclass(frozen=True)
class FileLimits:
    """Per input file: OpenAI takes up to 50,000 requests and 200 MB (a margin is kept under the bytes)."""

    lines: int = 50_000
    bytes: int = 190 * 1024 * 1024


class Submitter:
    """Lines gathered into one request file at a time; a full file is uploaded and made a batch."""

    def __init__(self, deps: Deps, ledger: Ledger, service: BatchService, limits: FileLimits) -> None:
        self.deps, self.ledger, self.service, self.limits = deps, ledger, service, limits
        self.lines: list[bytes] = []
        self.size = 0
        self.ids: dict[str, list[str]] = {}  # custom_id -> [path, image id]
        self.made: list[str] = []

    async def add(self, path: str, image_id: str, body: dict[str, Any]) -> None:
        line = self.line(body)
        if self.lines and (len(self.lines) >= self.limits.lines or self.size + len(line) > self.limits.bytes):
            await self.flush()
            line = self.line(body)
        self.ids[str(len(self.lines))] = [path, image_id]
        self.lines.append(line)
        self.size += len(line)

    def line(self, body: dict[str, Any]) -> bytes:
        request = {"custom_id": str(len(self.lines)), "method": "POST", "url": "/v1/responses", "body": body}
        return json.dumps(request).encode() + b"\n"

    async def flush(self) -> None:
        if not self.lines:
            return
        run = self.ledger.run_id
        part = sum(1 for item in self.ledger.records if item.startswith("part:"))
        file_id = await self.service.upload(f"{run}-{part}.jsonl", b"".join(self.lines))
        record = {"ids": self.ids, "input_file_id": file_id, "part": part, "at": time.time()}
        await remember(self.ledger, f"part:{part}", record)
        batch_id = await made_for(self.ledger, self.service, record, adopt=False)
        log.info("batch %s: %d requests, %d bytes", batch_id, len(self.lines), self.size)
        self.made.append(batch_id)
        self.lines, self.size, self.ids = [], 0, {}


async def remember(ledger: Ledger, item: str, record: dict[str, Any]) -> None:
    ledger.records[item] = json.dumps(record)
    await ledger.store.put_batch_record(ledger.run_id, item, ledger.records[item])


def metadata_of(ledger: Ledger, part: int) -> dict[str, str]:
    return {"imagechat_run": ledger.run_id, "imagechat_part": str(part)}


async def made_for(ledger: Ledger, service: BatchService, part: dict[str, Any], *, adopt: bool) -> str:
    """The batch of a recorded part: with `adopt`, one already made for it (a run stopped before recording it),
    else a new one; recorded in the manifest."""
    metadata = metadata_of(ledger, int(part["part"]))
    batch_id = await service.find(metadata, float(part["at"]) - 60) if adopt else None
    if batch_id is not None:
        log.info("part %s: adopting batch %s, made before the run stopped", part["part"], batch_id)
    else:
        batch_id = await service.create(part["input_file_id"], metadata)
    record = {"ids": part["ids"], "input_file_id": part["input_file_id"], "part": part["part"], "joined": False}
    await remember(ledger, f"batch:{batch_id}", record)
    return batch_id


async def settle_parts(ledger: Ledger, service: BatchService) -> None:
    """Every part recorded without its batch gets one: the batch made for it if there is one, else a new one."""
    with_batch = {
        json.loads(record).get("part") for item, record in ledger.records.items() if item.startswith("batch:")
    }
    for item, record in list(ledger.records.items()):
        part = json.loads(record) if item.startswith("part:") else None
        if part is not None and part["part"] not in with_batch:
            await made_for(ledger, service, part, adopt=True)


async def line_for(deps: Deps, ledger: Ledger, path: str) -> tuple[str, dict[str, Any]]:
    """The image's id and request body; Permanent when it cannot be read."""
    part = await prepare(deps, ledger.spec, path)
    rendered = deps.upstream.render(request_of(ledger.spec, part))
    if rendered.get("api") != "responses":
        raise ToolError("--via batch-api needs the Responses API (IMAGECHAT_API=responses); use --via direct.")
    body = {key: value for key, value in rendered["body"].items() if key not in ("stream", "background")}
    return part.image_id, body


async def prepared_lines(deps: Deps, ledger: Ledger, paths: list[str]) -> dict[str, tuple[str, dict[str, Any]] | str]:
    """Each image's (id, request body), or why it cannot be read; prepared concurrently (the image guard
    bounds the decoding)."""
    found: dict[str, tuple[str, dict[str, Any]] | str] = {}

    async def one(path: str) -> None:
        try:
            found[path] = await line_for(deps, ledger, path)
        except Permanent as exc:
            found[path] = str(exc)

    try:
        async with anyio.create_task_group() as group:
            for path in paths:
                group.start_soon(one, path)
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None  # the run cannot go on (the API in use has no batches, say)
    return found


async def submit(deps: Deps, ledger: Ledger, service: BatchService, paths: list[str], progress: Progress,
                 limits: FileLimits) -> None:  # fmt: skip
    submitter = Submitter(deps, ledger, service, limits)
    for start in range(0, len(paths), PREPARED_AT_ONCE):
        chunk = paths[start : start + PREPARED_AT_ONCE]
        found = await prepared_lines(deps, ledger, chunk)
        for path in chunk:  # in the run's order
            made = found[path]
            if isinstance(made, str):
                result = Result(path=path, status="failed", error=made)
                await ledger.record(result)
                progress.add(result)
            else:
                await submitter.add(path, *made)
    await submitter.flush()


def in_batches(ledger: Ledger) -> bool:
    """Whether images of the run wait in batches (made, or recorded to be made): a rerun must poll them, not ask
    for those images directly (they would be paid for twice)."""
    made = {json.loads(record).get("part") for item, record in ledger.records.items() if item.startswith("batch:")}
    unmade = any(item.startswith("part:") and json.loads(record)["part"] not in made
                 for item, record in ledger.records.items())  # fmt: skip
    return unmade or bool(open_batches(ledger))


def open_batches(ledger: Ledger) -> dict[str, dict[str, Any]]:
    found = {}
    for item, record in ledger.records.items():
        if item.startswith("batch:"):
            data = json.loads(record)
            if not data.get("joined"):
                found[item.removeprefix("batch:")] = data
    return found


async def run_batch_api(deps: Deps, ledger: Ledger, service: BatchService, *, progress: Progress,
                        poll_seconds: float = 30.0, limits: FileLimits | None = None) -> None:  # fmt: skip
    await settle_parts(ledger, service)
    waiting = {ids[0] for data in open_batches(ledger).values() for ids in data["ids"].values()}
    paths = [path for path in ledger.pending() if path not in waiting]
    if waiting:
        log.info("%d images are in batches made before; polling those", len(waiting))
    await submit(deps, ledger, service, paths, progress, limits or FileLimits())
    while batches := open_batches(ledger):
        for batch_id, data in batches.items():
            state = await service.state(batch_id)
            if state.status in FINISHED:
                await join(ledger, service, batch_id, data, state, progress)
        if open_batches(ledger):
            await anyio.sleep(poll_seconds)


async def join(ledger: Ledger, service: BatchService, batch_id: str, data: dict[str, Any], state: BatchState,
               progress: Progress) -> None:  # fmt: skip
    """Each line of the output and error files to its image; the batch marked joined."""
    lines: list[dict[str, Any]] = []
    for file_id in (state.output_file_id, state.error_file_id):
        if file_id:
            lines += [json.loads(line) for line in (await service.content(file_id)).splitlines() if line.strip()]
    ids: dict[str, list[str]] = data["ids"]
    for line in lines:
        path, image_id = ids.pop(str(line.get("custom_id")), [None, None])
        if path is None:
            continue
        result = outcome(ledger, service, path, image_id, line)
        if result is not None:
            await ledger.record(result)
        progress.add(result)
    for _ in ids:  # lines the batch never reached (expired, cancelled, failed): a rerun sends them again
        progress.add(None)
    if ids:
        log.warning("batch %s ended %s with %d requests unanswered; a rerun sends them again", batch_id,
                    state.status, len(ids))  # fmt: skip
    data["joined"] = True
    await remember(ledger, f"batch:{batch_id}", data)


def outcome(ledger: Ledger, service: BatchService, path: str, image_id: str | None,
            line: dict[str, Any]) -> Result | None:  # fmt: skip
    response = line.get("response") or {}
    status = response.get("status_code")
    body = response.get("body") or {}
    if status == 200:
        try:
            reply = service.reply(body, ledger.spec.model)
        except UpstreamFailure as exc:
            return Result(path=path, status="failed", image_id=image_id, error=str(exc))
        result = result_of(ledger.spec, path, image_id or "", reply)
        result.cost = None if result.cost is None else round(result.cost * BATCH_DISCOUNT, 9)
        return result
    if status in TRANSIENT_STATUSES or status is None:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else json.dumps(line.get("error") or body)[:300]
    return Result(path=path, status="failed", image_id=image_id, error=f"The upstream refused it ({status}): {message}")
