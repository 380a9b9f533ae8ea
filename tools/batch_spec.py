"""A bulk run's definition, its manifest in the store, and its results file (JSONL or CSV).

Exactly once: a result is appended to the results file first, then recorded in the manifest. On resume the two
are reconciled (`Ledger.open`): a line in the file that the manifest lacks is recorded, a result the manifest
holds that the file lacks (a deleted or truncated file) is written again, and a half-written last line (the
process killed mid-write) is cut off. So a crash between the two steps never writes a result twice, and an
image with a result is never sent again. A run started by the run_batch tool has no results file (`out` is
NO_FILE): its manifest is where its results are (preview and the batch:// resource read them there).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.deps import content_id
from tools.models import Detail
from tools.ports import Store

RUN_ITEM = ""  # the manifest item holding the run's own record
# Manifest items that are not images: the Batch API's batches and the parts written ahead of them (tools/batch_api.py).
OWN_ITEMS = ("batch:", "part:")
NO_FILE = Path()  # `out` of a run whose results stay in the manifest: "." is a folder, never a results file
CSV_COLUMNS = ("path", "image_id", "status", "answer", "input_tokens", "output_tokens", "cost", "error")


@dataclass(frozen=True)
class BatchSpec:
    """What a run asks: the same question of every image, answered stand-alone (nothing kept upstream)."""

    paths: tuple[str, ...]  # in the run's stable order; not part of the run's id, so a grown folder continues
    prompt: str
    out: Path  # the results file; NO_FILE: the results are in the manifest only (a run_batch run)
    model: str
    detail: Detail = "auto"
    instructions: str | None = None
    schema: dict[str, Any] | None = None
    sources: tuple[str, ...] = ()  # what run_batch was given (files and folders): part of its run's id

    @property
    def run_id(self) -> str:
        """The same command with the same --out (the same run_batch arguments) is the same run, so asking again
        continues it."""
        key = {k: v for k, v in asdict(self).items() if k not in ("paths", "sources")}
        key["out"] = str(self.out.resolve()) if self.writes_file else None
        if self.sources:
            key["sources"] = list(self.sources)
        return content_id("batch", json.dumps(key, sort_keys=True).encode())

    @property
    def writes_file(self) -> bool:
        return self.out != NO_FILE

    def summary(self) -> dict[str, Any]:
        out = str(self.out) if self.writes_file else None
        return {"out": out, "prompt": self.prompt, "model": self.model, "images": len(self.paths)}

    def record(self) -> dict[str, Any]:
        """Everything needed to run it again after a restart (`from_record`)."""
        found = asdict(self)
        found["out"] = str(self.out) if self.writes_file else None
        return found

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> BatchSpec:
        out = record.get("out")
        return cls(
            paths=tuple(record["paths"]),
            prompt=record["prompt"],
            out=NO_FILE if out is None else Path(out),
            model=record["model"],
            detail=record.get("detail", "auto"),
            instructions=record.get("instructions"),
            schema=record.get("schema"),
            sources=tuple(record.get("sources") or ()),
        )


@dataclass
class Result:
    """One image's line in the results file."""

    path: str
    status: str  # "done" or "failed" (permanently: unreadable, refused)
    image_id: str | None = None
    answer: Any = None  # the text, or the parsed JSON when the run asked for JSON
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # not written: what the runner keeps for itself

    def row(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in CSV_COLUMNS}


def is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def encode(result: Result, *, as_csv: bool) -> bytes:
    row = result.row()
    if not as_csv:
        return (json.dumps(row, ensure_ascii=False) + "\n").encode()
    buffer = io.StringIO()
    values = [json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v for v in row.values()]
    csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buffer.getvalue().encode()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a results file; a half-written last line is cut off the file first."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        os.truncate(path, end)
        data = data[:end]
    text = data.decode("utf-8", "replace")
    if is_csv(path):
        rows = list(csv.DictReader(io.StringIO(text)))
        return [dict(row) for row in rows if row.get("path")]
    found: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("path"), str):
            found.append(row)
    return found


class Ledger:
    """The results file and the manifest together: what is done, and the one way a result is recorded."""

    def __init__(self, store: Store, spec: BatchSpec) -> None:
        self.store = store
        self.spec = spec
        self.run_id = spec.run_id
        self.as_csv = is_csv(spec.out)
        self.done: dict[str, str] = {}  # path -> status, for every image with a result
        self.records: dict[str, str] = {}

    async def open(self) -> None:
        """Reconcile the file and the manifest (see the module docstring), and record the run."""
        self.records = await self.store.get_batch_records(self.run_id)
        in_file = await self._reconcile_file() if self.spec.writes_file else {}
        for path, record in self.records.items():
            if path == RUN_ITEM or path in in_file or path.startswith(OWN_ITEMS):
                continue
            row = json.loads(record)
            if self.spec.writes_file:
                self._write(encode(Result(**row), as_csv=self.as_csv))
            self.done[path] = str(row.get("status"))
        before = json.loads(self.records.get(RUN_ITEM) or "{}")
        run = {**self.spec.summary(), "id": self.run_id, "spec": self.spec.record()}
        run["created"] = before.get("created") or time.time()
        await self.store.put_batch_record(self.run_id, RUN_ITEM, json.dumps(run))

    async def _reconcile_file(self) -> dict[str, dict[str, Any]]:
        self.spec.out.parent.mkdir(parents=True, exist_ok=True)
        rows = read_rows(self.spec.out)
        in_file = {str(row["path"]): row for row in rows}
        if not self.spec.out.exists() or self.spec.out.stat().st_size == 0:
            self._write(",".join(CSV_COLUMNS).encode() + b"\n" if self.as_csv else b"")
        for path, row in in_file.items():
            self.done[path] = str(row.get("status") or "done")
            if path not in self.records:
                await self._remember(path, row)
        return in_file

    async def record(self, result: Result) -> None:
        """Written to the file first, then to the manifest (see the module docstring)."""
        if result.path in self.done:
            return
        if self.spec.writes_file:
            self._write(encode(result, as_csv=self.as_csv))
        self.done[result.path] = result.status
        await self._remember(result.path, result.row())

    async def _remember(self, path: str, row: dict[str, Any]) -> None:
        record = json.dumps({key: row.get(key) for key in CSV_COLUMNS}, ensure_ascii=False)
        self.records[path] = record
        await self.store.put_batch_record(self.run_id, path, record)

    def _write(self, data: bytes) -> None:
        # One write on an O_APPEND descriptor: a kill leaves at most a partial last line, which `read_rows` cuts.
        if not data:
            self.spec.out.touch()
            return
        fd = os.open(self.spec.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def pending(self) -> list[str]:
        return [path for path in self.spec.paths if path not in self.done]
