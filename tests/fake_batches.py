"""OpenAI's Files and Batch API for the fake upstream: /v1/files (upload, retrieve, content) and /v1/batches
(create with metadata, retrieve, list newest first with the `after`/`limit` cursor the SDK pages with), with real
JSONL in and out.

A batch's lines are answered by the fake's normal logic for POST /v1/responses (`FakeUpstream.answer_line`:
the spec check, scripted failures, the model check, queued replies), when the batch is retrieved for the
`polls`-th time; answered lines go to the output file, failed ones to the error file, each keyed by custom_id.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from tests.fake_upstream import FakeUpstream

JSONDict = dict[str, Any]


class FakeBatches:
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.files: dict[str, tuple[str, bytes]] = {}  # id -> (file name, bytes)
        self.batches: dict[str, JSONDict] = {}
        self.polls = 2  # retrieves before a batch completes (the first ones see it in progress)
        self.seen: dict[str, int] = {}
        self.lines_answered = 0  # lines of every batch run so far
        self.created_bodies: list[JSONDict] = []  # the body of every POST /v1/batches
        self.list_calls = 0  # GET /v1/batches (pages)
        self._lock = threading.Lock()

    def route(self, method: str, path: str, headers: Any, raw: bytes, query: str = "") -> tuple[int, bytes, str] | None:
        """(status, payload, content type) for a files or batches route, else None."""
        if method == "POST" and path == "/v1/files":
            return self._json(self.upload(headers.get("Content-Type", ""), raw))
        if method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            found = self.files.get(path.removeprefix("/v1/files/").removesuffix("/content"))
            return (200, found[1], "application/octet-stream") if found else self._missing("file")
        if method == "GET" and path.startswith("/v1/files/"):
            file_id = path.removeprefix("/v1/files/")
            return self._json(self._file(file_id)) if file_id in self.files else self._missing("file")
        if method == "POST" and path == "/v1/batches":
            return self._json(self.create(json.loads(raw)))
        if method == "GET" and path == "/v1/batches":
            return self._json(self.listed(dict(parse_qsl(query))))
        if method == "GET" and path.startswith("/v1/batches/"):
            batch_id = path.removeprefix("/v1/batches/")
            return self._json(self.retrieve(batch_id)) if batch_id in self.batches else self._missing("batch")
        return None

    def upload(self, content_type: str, raw: bytes) -> JSONDict:
        head = b"Content-Type: " + content_type.encode() + b"\r\n\r\n"
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(head + raw)
        name, data, purpose = "upload.jsonl", b"", ""
        for part in message.iter_parts() if message.is_multipart() else []:
            payload = part.get_payload(decode=True)
            payload = payload if isinstance(payload, bytes) else b""
            if part.get_param("name", header="content-disposition") == "file":
                name, data = str(part.get_filename() or name), payload
            else:
                purpose = payload.decode()
        file_id = "file-" + secrets.token_hex(12)
        with self._lock:
            self.files[file_id] = (name, data)
        return self._file(file_id, purpose or "batch")

    def _file(self, file_id: str, purpose: str = "batch") -> JSONDict:
        name, data = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": name,
            "purpose": purpose,
            "status": "processed",
        }

    def create(self, body: JSONDict) -> JSONDict:
        batch_id = "batch_" + secrets.token_hex(12)
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "created_at": int(time.time()),
            "output_file_id": None,
            "error_file_id": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }
        with self._lock:
            self.batches[batch_id] = batch
            self.created_bodies.append(body)
        return batch

    def listed(self, query: dict[str, str]) -> JSONDict:
        """GET /v1/batches: newest first, `limit` at a time, after the id `after` (the SDK's cursor paging)."""
        with self._lock:
            newest = [dict(batch) for batch in reversed(self.batches.values())]
        self.list_calls += 1
        if "after" in query:
            ids = [batch["id"] for batch in newest]
            newest = newest[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
        limit = int(query.get("limit", 20))
        page = newest[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(newest) > limit,
        }

    def retrieve(self, batch_id: str) -> JSONDict:
        with self._lock:
            batch = self.batches[batch_id]
            self.seen[batch_id] = self.seen.get(batch_id, 0) + 1
            due = batch["status"] not in ("completed", "failed") and self.seen[batch_id] >= self.polls
            if not due:
                if batch["status"] == "validating":
                    batch["status"] = "in_progress"
                return dict(batch)
        self._run(batch)
        return dict(batch)

    def _run(self, batch: JSONDict) -> None:
        """Answer every line as POST /v1/responses would; write the output and error files."""
        outputs: list[bytes] = []
        errors: list[bytes] = []
        for line in self.files[batch["input_file_id"]][1].splitlines():
            request = json.loads(line)
            status, body = self.upstream.answer_line(request["body"])
            item = {
                "id": "batch_req_" + secrets.token_hex(8),
                "custom_id": request["custom_id"],
                "response": {"status_code": status, "request_id": secrets.token_hex(8), "body": body},
                "error": None,
            }
            (outputs if status == 200 else errors).append(json.dumps(item).encode() + b"\n")
        with self._lock:
            self.lines_answered += len(outputs) + len(errors)
            for kind, lines in (("output_file_id", outputs), ("error_file_id", errors)):
                if lines:
                    file_id = "file-" + secrets.token_hex(12)
                    self.files[file_id] = (f"{batch['id']}_{kind}.jsonl", b"".join(lines))
                    batch[kind] = file_id
            batch["status"] = "completed"
            batch["request_counts"] = {
                "total": len(outputs) + len(errors),
                "completed": len(outputs),
                "failed": len(errors),
            }

    @staticmethod
    def _json(data: JSONDict) -> tuple[int, bytes, str]:
        return 200, json.dumps(data).encode(), "application/json"

    @staticmethod
    def _missing(kind: str) -> tuple[int, bytes, str]:
        error = {"error": {"message": f"No such {kind}.", "type": "invalid_request_error", "param": None, "code": None}}
        return 404, json.dumps(error).encode(), "application/json"
