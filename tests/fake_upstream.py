"""A fake OpenAI-compatible upstream that speaks real HTTP on 127.0.0.1.

It is the only stand-in the test-suite uses for OpenAI, so the real `openai` SDK has to work
against it unchanged: the JSON shapes, the order of the Responses streaming events and their
`sequence_number`s, chunked SSE, error bodies and status codes follow what OpenAI sends.
It runs a stdlib `ThreadingHTTPServer` in a daemon thread, so sync tests, async tests and a
stdio subprocess of the server under test can all reach it by URL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from tests import spec

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

# Errors a client causes by going away; they are normal in tests and must not print tracebacks.
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)

# What OpenAI puts in `error.type` for each status when a test does not say.
_DEFAULT_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "requests"}
_DEFAULT_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    403: "You are not allowed to sample from this model.",
    404: "Not found.",
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The engine is currently overloaded, please try again later.",
}
_DEFAULT_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}

# Ollama (Gin) answers an unknown route like this; llama.cpp and others are similar.
_PLAIN_404 = b"404 page not found"


class SpecReport:
    """Every request body any fake received on a route with a published schema, as checked against OpenAI's spec.

    Shared by all fakes in the process, so one check at the end of the session covers the whole suite."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.checked = 0
        self.violations: list[str] = []

    def check(self, path: str, body: Any) -> list[str]:
        found = spec.problems(path, body)
        with self._lock:
            self.checked += 1
            self.violations += [f"POST {path}: {problem}" for problem in found]
        return found


SPEC_REPORT = SpecReport()


@dataclass
class Reply:
    """One scripted answer; `parts` (when given) replaces `text` with several output_text parts."""

    text: str = "A red square on a white background."
    status: str = "completed"  # "completed", "incomplete" or "failed"
    incomplete_reason: str | None = None  # defaults to "max_output_tokens" when incomplete
    chunks: int = 3  # text deltas per part when streamed
    delay: float = 0.0  # seconds before the first byte (for background: until it completes)
    chunk_delay: float = 0.0  # seconds between streamed deltas
    usage: dict[str, int] | None = None  # input_tokens, output_tokens, total_tokens, cached/reasoning_tokens
    parts: list[str] | None = None
    drop_after: int | None = None  # close the connection abruptly after this many deltas
    # Streamed: spend `delay` dripping one byte (of an SSE comment) every `drip` seconds instead of in silence, so
    # a client's read timeout never fires however long the delay.
    drip: float = 0.0
    created_delay: float = 0.0  # seconds before response.created is streamed (the upstream queueing the request)

    @property
    def texts(self) -> list[str]:
        return list(self.parts) if self.parts is not None else [self.text]

    @property
    def full_text(self) -> str:
        return "".join(self.texts)


@dataclass
class Recorded:
    """One request as received; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class _Failure:
    status: int
    payload: bytes
    content_type: str
    headers: dict[str, str]
    remaining: int
    path: str | None


@dataclass
class _Stored:
    final: JSONDict  # the response as it is once finished
    background: bool
    started: float  # time.monotonic() at creation
    delay: float
    cancelled: JSONDict | None = None


class _HTTPError(Exception):
    def __init__(
        self,
        status: int,
        payload: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.content_type = content_type
        self.headers = headers or {}


class _Abort(Exception):
    """Stop answering and drop the connection (a scripted drop, or the fake is stopping)."""


def error_body(message: str, err_type: str, param: str | None = None, code: str | None = None) -> bytes:
    """OpenAI's error JSON: {"error": {"message", "type", "param", "code"}}."""
    error = {"message": message, "type": err_type, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def _api_error(
    status: int,
    message: str,
    err_type: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
) -> _HTTPError:
    return _HTTPError(status, error_body(message, err_type, param, code))


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def _split(text: str, pieces: int) -> list[str]:
    """Cut text into `pieces` consecutive slices (fewer when it is short) that join back to it."""
    if not text:
        return []
    count = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), count)
    out: list[str] = []
    pos = 0
    for i in range(count):
        step = size + (1 if i < extra else 0)
        out.append(text[pos : pos + step])
        pos += step
    return out


def _count_tokens(value: Any) -> int:
    """A crude, deterministic token estimate: words, plus a flat 85 for each inline image."""
    if isinstance(value, str):
        return 85 if value.startswith("data:") else len(value.split())
    if isinstance(value, dict):
        return sum(_count_tokens(v) for k, v in value.items() if k not in ("type", "role", "detail"))
    if isinstance(value, list):
        return sum(_count_tokens(v) for v in value)
    return 0


def _usage(reply: Reply, body: JSONDict) -> dict[str, int]:
    given = reply.usage or {}
    prompt = _count_tokens([body.get("input"), body.get("instructions"), body.get("messages")])
    input_tokens = given.get("input_tokens", max(1, prompt))
    output_tokens = given.get("output_tokens", max(1, len(reply.full_text.split())))
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": given.get("total_tokens", input_tokens + output_tokens),
        "cached_tokens": given.get("cached_tokens", 0),
        "reasoning_tokens": given.get("reasoning_tokens", 0),
    }


def _responses_usage(numbers: dict[str, int]) -> JSONDict:
    return {
        "input_tokens": numbers["input_tokens"],
        "input_tokens_details": {"cached_tokens": numbers["cached_tokens"], "cache_write_tokens": 0},
        "output_tokens": numbers["output_tokens"],
        "output_tokens_details": {"reasoning_tokens": numbers["reasoning_tokens"]},
        "total_tokens": numbers["total_tokens"],
    }


def _chat_usage(numbers: dict[str, int]) -> JSONDict:
    return {
        "prompt_tokens": numbers["input_tokens"],
        "completion_tokens": numbers["output_tokens"],
        "total_tokens": numbers["total_tokens"],
        "prompt_tokens_details": {"cached_tokens": numbers["cached_tokens"], "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": numbers["reasoning_tokens"],
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _text_part(text: str) -> JSONDict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, status: str, texts: list[str]) -> JSONDict:
    content = [_text_part(t) for t in texts]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


class UpstreamServer(ThreadingHTTPServer):
    """Keeps track of open connections so stop() can close them and join their threads."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops connections when 50 chats arrive at once.
    request_queue_size = 128

    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self._conn_lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"fake-upstream-conn-{client_address[1]}",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[request] = thread
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._conns.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], _DISCONNECTS):
            log.debug("client %s went away", client_address)
            return
        super().handle_error(request, client_address)  # a bug in the fake: let it show

    def close_connections(self, timeout: float = 5.0) -> None:
        with self._conn_lock:
            conns = list(self._conns.items())
        for sock, _ in conns:
            # Wakes a handler blocked reading the next keep-alive request.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in conns:
            thread.join(timeout)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive, as the SDK's connection pool expects.
    protocol_version = "HTTP/1.1"
    # Small SSE writes would otherwise wait ~40 ms for the client's delayed ACK (Nagle), on every event.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        cast(UpstreamServer, self.server).upstream._dispatch(self)

    do_POST = do_GET
    do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _SSE:
    """Server-sent events over chunked transfer encoding, one flush per event."""

    def __init__(self, handler: _Handler, request_id: str) -> None:
        self._handler = handler
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("x-request-id", request_id)
        handler.end_headers()

    def event(self, data: JSONDict | str, name: str | None = None) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        block = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
        payload = block.encode()
        self._handler.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")

    def raw(self, payload: bytes) -> None:
        """Bytes as they are, in a chunk of their own (flushed at once)."""
        self._handler.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")
        self._handler.wfile.flush()

    def end(self) -> None:
        self._handler.wfile.write(b"0\r\n\r\n")


class FakeUpstream:
    """An OpenAI-compatible server on 127.0.0.1 that answers with scripted replies."""

    def __init__(
        self,
        *,
        serve_responses: bool = True,
        serve_chat: bool = True,
        models: Sequence[str] = ("gpt-4.1-mini", "gpt-4o", "o3", "gpt-5"),
        api_key: str | None = None,
        chat_files: bool = True,
        keeps_responses: bool = True,
        check_spec: bool = True,
    ) -> None:
        # False: a gateway that converts the Responses API to Chat Completions (LiteLLM's routes for most
        # providers): it accepts previous_response_id and ignores it, keeps nothing, and answers a request for
        # a response by id with an error (not a 404).
        self.keeps_responses = keeps_responses
        # False only where the fake stands in for a fast upstream in a benchmark: the check is the suite's own
        # instrument (a millisecond for a request with an image), not work an upstream does before answering.
        self.check_spec = check_spec
        self.serve_responses = serve_responses
        # Whether the Chat Completions route takes `file` parts (OpenAI's and LiteLLM's do; many local servers not).
        self.chat_files = chat_files
        self.serve_chat = serve_chat
        self.models = list(models)
        self.api_key = api_key
        self.base_url = ""
        self._lock = threading.Condition()
        self._requests: list[Recorded] = []
        self._replies: deque[Reply] = deque()
        self._failures: list[_Failure] = []
        self._stored: dict[str, _Stored] = {}
        self._stopping = threading.Event()
        self._server: UpstreamServer | None = None
        # Requests whose client hung up before the answer was complete (a cancelled stream, say).
        self.disconnects = 0
        # The answer when no reply is queued (a slow upstream for every request, say); None: Reply().
        self.default_reply: Reply | None = None
        # POST /v1/responses being answered now, and the most there ever were at once.
        self.in_flight = 0
        self.most_in_flight = 0
        self.answered: list[JSONDict] = []  # the bodies of the POST /v1/responses answered without an error
        from tests.fake_batches import FakeBatches

        self.batches = FakeBatches(self)  # /v1/files and /v1/batches
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = UpstreamServer(self)
        port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-upstream",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # interrupts scripted delays
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(5.0)
        self._server = self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------------------

    def add_reply(self, reply: Reply | None = None, **kwargs: Any) -> None:
        """Queue an answer; when the queue is empty a default Reply() is used."""
        if reply is not None and kwargs:
            raise TypeError("pass a Reply or keyword arguments, not both")
        with self._lock:
            self._replies.append(reply if reply is not None else Reply(**kwargs))

    def fail(
        self,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        err_type: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        path: str | None = None,
        raw_body: str | None = None,
        json_body: Any = None,
    ) -> None:
        """Answer the next `times` requests whose path starts with `path` (None: any) with an error.

        The body is OpenAI's error JSON unless `raw_body` is given (sent as text/plain), which
        stands in for proxies and servers that answer errors with plain text or HTML, or `json_body`
        (sent as JSON as it is), which stands in for gateways with their own error shape
        (LiteLLM: {"message": "Error processing stream start"}).
        """
        if raw_body is not None:
            payload, content_type = raw_body.encode(), "text/plain; charset=utf-8"
        elif json_body is not None:
            payload, content_type = json.dumps(json_body).encode(), "application/json"
        else:
            err_type = err_type or _DEFAULT_TYPES.get(status, "server_error" if status >= 500 else None)
            payload = error_body(
                message or _DEFAULT_MESSAGES.get(status, f"Error {status}."),
                err_type or "invalid_request_error",
                param,
                code if code is not None else _DEFAULT_CODES.get(status),
            )
            content_type = "application/json"
        failure = _Failure(status, payload, content_type, dict(headers or {}), times, path)
        with self._lock:
            self._failures.append(failure)

    # -- inspection --------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """Every request received, in order (a snapshot copy)."""
        with self._lock:
            return list(self._requests)

    def responses_bodies(self) -> list[JSONDict]:
        return [r.body for r in self.requests if r.method == "POST" and r.path == "/v1/responses" and r.body]

    def chat_bodies(self) -> list[JSONDict]:
        return [r.body for r in self.requests if r.method == "POST" and r.path == "/v1/chat/completions" and r.body]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        """Block until at least `count` requests were received (for tests driving a subprocess)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"expected {count} requests, got {len(self._requests)}")
            return list(self._requests)

    def stored_ids(self) -> list[str]:
        with self._lock:
            return list(self._stored)

    # -- request handling (runs on a connection thread) --------------------------------------

    def _dispatch(self, h: _Handler) -> None:
        url = urlsplit(h.path)
        path = url.path.rstrip("/") or "/"
        try:
            raw = self._read_body(h)
            # Parsed once, for the record and the route: a 200 KB image request parsed twice cost the benchmarks'
            # timed chats half a millisecond of the fake's own time.
            parsed = self._loads(raw)
            self._record(h, path, url.query, parsed)
            if path.startswith(("/v1/files", "/v1/batches")):
                self._check_auth(h)
                self._take_failure(path)
                found = self.batches.route(h.command, path, h.headers, raw, url.query)
                if found is None:
                    raise _api_error(404, f"Invalid URL ({h.command} {path})")
                self._send(h, *found)
                return
            self._route(h, path, self._parse_body(raw, parsed))
        except _HTTPError as err:
            self._send(h, err.status, err.payload, err.content_type, err.headers)
        except _Abort:
            h.close_connection = True
        except _DISCONNECTS:
            h.close_connection = True
            with self._lock:
                self.disconnects += 1
            log.debug("client went away during %s %s", h.command, path)

    def _read_body(self, h: _Handler) -> bytes:
        length = h.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _api_error(400, "Invalid Content-Length header.") from None
        return h.rfile.read(size) if size > 0 else b""

    @staticmethod
    def _loads(raw: bytes) -> Any:
        """The body as JSON, None when it is empty or not JSON (both readers take only a JSON object)."""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    @staticmethod
    def _parse_body(raw: bytes, parsed: Any) -> JSONDict | None:
        if not raw:
            return None
        if not isinstance(parsed, dict):
            raise _api_error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly.)",
            )
        return parsed

    def _record(self, h: _Handler, path: str, query: str, parsed: Any) -> None:
        recorded = Recorded(
            method=h.command,
            path=path,
            headers={k.lower(): v for k, v in h.headers.items()},
            body=parsed if isinstance(parsed, dict) else None,
            query=dict(parse_qsl(query)),
        )
        with self._lock:
            self._requests.append(recorded)
            self._lock.notify_all()

    def _send(
        self,
        h: _Handler,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(payload)))
        h.send_header("x-request-id", _new_id("req_")[:36])
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(payload)

    def _send_json(self, h: _Handler, data: JSONDict, status: int = 200) -> None:
        self._send(h, status, json.dumps(data).encode(), "application/json")

    def _pause(self, seconds: float) -> None:
        if seconds > 0 and self._stopping.wait(seconds):
            raise _Abort

    def _route(self, h: _Handler, path: str, body: JSONDict | None) -> None:
        method = h.command
        is_responses = path == "/v1/responses" or path.startswith("/v1/responses/")
        is_chat = path == "/v1/chat/completions"
        # Every body sent is checked, also one to a route this server does not serve.
        if self.check_spec and method == "POST" and path in spec.ROUTES and body is not None:
            self._check_spec(path, body)
        # A server without the route answers before looking at keys, as Ollama and llama.cpp do.
        if (is_responses and not self.serve_responses) or (is_chat and not self.serve_chat):
            raise _HTTPError(404, _PLAIN_404, "text/plain; charset=utf-8")
        self._check_auth(h)
        self._take_failure(path)

        if is_responses and method != "POST" and not self.keeps_responses:
            # LiteLLM cannot decode a converted route's response id into a provider that stores responses.
            raise _api_error(400, "GET/DELETE/cancel responses is not supported for this provider.")
        if method == "GET" and path == "/v1/models":
            self._send_json(h, {"object": "list", "data": [self._model_json(m) for m in self.models]})
        elif method == "GET" and path.startswith("/v1/models/"):
            self._send_json(h, self._model_json(self._known_model(path.removeprefix("/v1/models/"), 404)))
        elif method == "POST" and path == "/v1/responses":
            self._create_response(h, self._require_body(body))
        elif method == "POST" and is_responses and path.endswith("/cancel"):
            self._send_json(h, self._cancel(path.removeprefix("/v1/responses/").removesuffix("/cancel")))
        elif method == "GET" and is_responses:
            self._send_json(h, self._retrieve(path.removeprefix("/v1/responses/")))
        elif method == "DELETE" and is_responses:
            rid = path.removeprefix("/v1/responses/")
            self._retrieve(rid)
            with self._lock:
                self._stored.pop(rid, None)
            self._send_json(h, {"id": rid, "object": "response.deleted", "deleted": True})
        elif method == "POST" and is_chat:
            self._chat(h, self._require_body(body))
        else:
            raise _api_error(404, f"Invalid URL ({method} {path})")

    @staticmethod
    def _check_spec(path: str, body: JSONDict) -> None:
        """Refuse, loudly, a body OpenAI's published request schema does not allow (and remember it for the
        session's check, in case the test expected an error anyway)."""
        found = SPEC_REPORT.check(path, body)
        if found:
            message = "The request body does not match OpenAI's API specification: " + "; ".join(found)
            raise _api_error(400, message, code="spec_violation")

    def _check_auth(self, h: _Handler) -> None:
        if self.api_key is None:
            return
        header = h.headers.get("Authorization", "")
        if header == f"Bearer {self.api_key}":
            return
        if not header.startswith("Bearer ") or not header.removeprefix("Bearer ").strip():
            raise _api_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        key = header.removeprefix("Bearer ")
        masked = key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 8 else "*" * len(key)
        raise _api_error(
            401,
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    def _take_failure(self, path: str) -> None:
        with self._lock:
            for failure in self._failures:
                if failure.path is None or path.startswith(failure.path):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                    raise _HTTPError(failure.status, failure.payload, failure.content_type, failure.headers)

    def _next_reply(self) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
            return replace(self.default_reply) if self.default_reply is not None else Reply()

    @staticmethod
    def _require_body(body: JSONDict | None) -> JSONDict:
        if body is None:
            raise _api_error(400, "We could not parse the JSON body of your request.")
        return body

    def _known_model(self, model: Any, missing_status: int) -> str:
        if not isinstance(model, str) or not model:
            raise _api_error(
                400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
            )
        if model not in self.models:
            if missing_status == 404:
                message = f"The model `{model}` does not exist or you do not have access to it."
                raise _api_error(404, message, code="model_not_found")
            # The Responses API says it this way, with 400 and param "model".
            raise _api_error(
                400, f"The requested model '{model}' does not exist.", param="model", code="model_not_found"
            )
        return model

    @staticmethod
    def _model_json(model: str) -> JSONDict:
        return {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "system"}

    # -- Responses API -----------------------------------------------------------------------

    def _create_response(self, h: _Handler, body: JSONDict) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self._answer_response(h, body)
            with self._lock:
                self.answered.append(body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def answer_line(self, body: JSONDict) -> tuple[int, JSONDict]:
        """One line of a batch (tests/fake_batches.py), answered as POST /v1/responses would be, without
        streaming: (status, the response or OpenAI's error JSON)."""
        try:
            self._check_spec("/v1/responses", body)
            self._take_failure("/v1/responses")
            self._known_model(body.get("model"), 400)
            reply = self._next_reply()
            final = self._final_response(
                body, reply, rid=_new_id("resp_"), item_id=_new_id("msg_"), created_at=int(time.time())
            )
        except _HTTPError as err:
            return err.status, json.loads(err.payload)
        with self._lock:
            self.answered.append(body)
        return 200, final

    def _answer_response(self, h: _Handler, body: JSONDict) -> None:
        self._known_model(body.get("model"), 400)
        store = body.get("store") is not False
        background = bool(body.get("background"))
        previous = body.get("previous_response_id") if self.keeps_responses else None
        if previous is not None:
            with self._lock:
                found = previous in self._stored
            if not found:
                raise _api_error(
                    400,
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
        if background and not store:
            raise _api_error(400, "Background mode requires `store` to be true.", param="background")
        reply = self._next_reply()
        rid, item_id, created_at = _new_id("resp_"), _new_id("msg_"), int(time.time())
        final = self._final_response(body, reply, rid=rid, item_id=item_id, created_at=created_at)
        if store and self.keeps_responses:
            entry = _Stored(final=final, background=background, started=time.monotonic(), delay=reply.delay)
            with self._lock:
                self._stored[rid] = entry
        if background and not body.get("stream"):
            self._send_json(h, self._snapshot(final, "queued"))
        elif body.get("stream"):
            self._stream_response(h, reply, final, item_id)
        else:
            self._pause(reply.delay)
            if reply.status == "failed":
                raise _api_error(500, _DEFAULT_MESSAGES[500], "server_error", code="server_error")
            if reply.drop_after is not None:
                raise _Abort
            self._send_json(h, final)

    def _final_response(self, body: JSONDict, reply: Reply, *, rid: str, item_id: str, created_at: int) -> JSONDict:
        status = reply.status
        completed = status == "completed"
        error = None
        output: list[JSONDict] = []
        usage: JSONDict | None = None
        if status == "failed":
            error = {"code": "server_error", "message": "The model failed to generate a response."}
        else:
            output = [_message_item(item_id, status, reply.texts)]
            usage = _responses_usage(_usage(reply, body))
        return {
            "id": rid,
            "object": "response",
            "created_at": created_at,
            "status": status,
            "background": bool(body.get("background")),
            "completed_at": created_at + round(reply.delay) if completed else None,
            "error": error,
            "incomplete_details": (
                {"reason": reply.incomplete_reason or "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "metadata": body.get("metadata") or {},
            "model": body["model"],
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store") is not False,
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": usage,
            "user": body.get("user"),
        }

    @staticmethod
    def _snapshot(final: JSONDict, status: str) -> JSONDict:
        """The response as it looks before it finishes (no output, no usage)."""
        return {
            **final,
            "status": status,
            "output": [],
            "usage": None,
            "error": None,
            "incomplete_details": None,
            "completed_at": None,
        }

    def _stream_response(self, h: _Handler, reply: Reply, final: JSONDict, item_id: str) -> None:
        background = bool(final.get("background"))
        if not background and not reply.drip:
            self._pause(reply.delay)
        sse = _SSE(h, _new_id("req_")[:36])
        if not background and reply.drip:
            self._drip(sse, reply)
        seq = 0

        def emit(event: JSONDict) -> None:
            nonlocal seq
            sse.event({**event, "sequence_number": seq}, event["type"])
            seq += 1

        # A background response is announced (queued) at once and then works for its delay, as OpenAI does:
        # the client learns the id it can retrieve later before any output exists.
        self._pause(reply.created_delay)
        emit({"type": "response.created", "response": self._snapshot(final, "queued" if background else "in_progress")})
        if background:
            self._pause(reply.delay)
        emit({"type": "response.in_progress", "response": self._snapshot(final, "in_progress")})
        if reply.status == "failed":
            emit({"type": "response.failed", "response": final})
            sse.end()
            return
        emit(
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": _message_item(item_id, "in_progress", []),
            }
        )
        sent = 0
        for index, text in enumerate(reply.texts):
            where = {"item_id": item_id, "output_index": 0, "content_index": index}
            emit({"type": "response.content_part.added", **where, "part": _text_part("")})
            for delta in _split(text, reply.chunks):
                if sent:
                    self._pause(reply.chunk_delay)
                if reply.drop_after is not None and sent >= reply.drop_after:
                    raise _Abort
                emit({"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []})
                sent += 1
            emit({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
            emit({"type": "response.content_part.done", **where, "part": _text_part(text)})
        emit({"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]})
        done_type = "response.incomplete" if reply.status == "incomplete" else "response.completed"
        emit({"type": done_type, "response": final})
        sse.end()

    def _drip(self, sse: _SSE, reply: Reply) -> None:
        until = time.monotonic() + reply.delay
        while time.monotonic() < until:
            self._pause(reply.drip)
            sse.raw(b":")
        sse.raw(b"\n\n")  # ends the comment line

    def _stored_entry(self, rid: str) -> _Stored:
        with self._lock:
            entry = self._stored.get(rid)
        if entry is None:
            raise _api_error(404, f"Response with id '{rid}' not found.", param="response_id")
        return entry

    def _retrieve(self, rid: str) -> JSONDict:
        entry = self._stored_entry(rid)
        if entry.cancelled is not None:
            return entry.cancelled
        elapsed = time.monotonic() - entry.started
        if not entry.background or elapsed >= entry.delay:
            return entry.final
        # Background work: queued for the first half of its delay, then in progress.
        return self._snapshot(entry.final, "queued" if elapsed < entry.delay / 2 else "in_progress")

    def _cancel(self, rid: str) -> JSONDict:
        entry = self._stored_entry(rid)
        if not entry.background:
            raise _api_error(400, "Only responses created with background=true can be cancelled.")
        current = self._retrieve(rid)
        if current["status"] not in ("queued", "in_progress", "cancelled"):
            raise _api_error(400, f"Cannot cancel a response with status '{current['status']}'.")
        with self._lock:
            entry.cancelled = self._snapshot(entry.final, "cancelled")
            return entry.cancelled

    # -- Chat Completions --------------------------------------------------------------------

    def _chat(self, h: _Handler, body: JSONDict) -> None:
        model = self._known_model(body.get("model"), 404)
        if not self.chat_files and _has_file_part(body):
            # What vLLM says; Ollama and llama.cpp word it differently, but all answer 400 before generating.
            raise _api_error(400, "Unknown part type: file", param="messages")
        reply = self._next_reply()
        self._pause(reply.delay)
        if reply.status == "failed":
            raise _api_error(500, _DEFAULT_MESSAGES[500], "server_error")
        base = {
            "id": _new_id("chatcmpl-")[:38],
            "created": int(time.time()),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        finish = "length" if reply.status == "incomplete" else "stop"
        usage = _chat_usage(_usage(reply, body))
        if not body.get("stream"):
            if reply.drop_after is not None:
                raise _Abort
            message: JSONDict = {
                "role": "assistant",
                "content": reply.full_text,
                "refusal": None,
                "annotations": [],
            }
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            self._send_json(h, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        extra = {"usage": None} if include_usage else {}
        sse = _SSE(h, _new_id("req_")[:36])

        def chunk(delta: JSONDict, finish_reason: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            sse.event({**base, "object": "chat.completion.chunk", "choices": [choice], **extra})

        chunk({"role": "assistant", "content": "", "refusal": None})
        for sent, delta in enumerate(_split(reply.full_text, reply.chunks)):
            if sent:
                self._pause(reply.chunk_delay)
            if reply.drop_after is not None and sent >= reply.drop_after:
                raise _Abort
            chunk({"content": delta})
        chunk({}, finish)
        if include_usage:
            sse.event({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        sse.event("[DONE]")
        sse.end()


def _has_file_part(body: JSONDict) -> bool:
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "file" for p in content):
            return True
    return False


__all__ = ["SPEC_REPORT", "FakeUpstream", "Recorded", "Reply", "SpecReport", "error_body"]
