"""What the workflow steps need from the world, as small protocols that `server/` implements."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from mcp.server.mcpserver.exceptions import ToolError

from tools.models import Conversation, Detail, FileRecord, ImageRecord, Options, Turn, Usage


class Blobs(Protocol):
    """Large bytes (image originals, prepared variants, documents) by content: the key is the sha256 of the
    bytes in hex, so a blob is written once, never changes, and can be checked against its key.

    A put is all or nothing: a reader never sees part of a blob, even when the writer is killed. A blob is put
    before any record names it; one that no record names any more is deleted when the store prunes."""

    async def put(self, data: bytes, *, key: str | None = None, durable: bool = True) -> str:
        """Store `data` (if not already there) and return its key.

        `key`: the sha256 of these very bytes, when the caller has just computed it (an 8 MB photo is hashed
        once, not twice). `durable=False`: a cache that can be made again (a prepared variant): it may be written
        without waiting for the disk, so a power cut can lose it; a reader then finds it missing, never partial."""
        ...

    async def stage(self, data: bytes, key: str) -> None:
        """Do the slow part of a later `put(data, key=key)` now (write the bytes out, wait for the disk) before any
        record names them, so it can run while the bytes are checked; `unstage(key)` follows every stage, stored
        or not. A store with nothing slow to do beforehand does nothing."""
        ...

    async def unstage(self, key: str) -> None:
        """End a `stage`: what it wrote goes unless a put used it or a record names it by now (another load of the
        same bytes stored them); nothing when there is none."""
        ...

    async def get(self, key: str) -> bytes | None: ...
    async def size(self, key: str) -> int | None: ...
    async def delete(self, key: str) -> None: ...
    async def keys(self) -> list[str]:
        """Every stored key (for pruning: which blobs no record names)."""
        ...


class Store(Protocol):
    """Conversations (their own record plus one record per turn), images and files by content id, prepared
    variants by key; the bytes of images, files and variants live in the store's `blobs`.

    A change writes only what changed: `put_changes` writes the conversation's own record (options, pending
    attachments, names) and the turns it is given, so changing the options of a conversation with megabytes of
    answers writes a few hundred bytes. `put_conversation` writes all of it."""

    @property
    def blobs(self) -> Blobs:
        """Where the bytes of images, files and variants are kept."""
        ...

    async def get_conversation(self, conversation_id: str, *, with_turns: bool = True) -> Conversation | None:
        """The conversation; with_turns=False leaves `turns` empty (cheap whatever the answers hold)."""
        ...

    async def put_conversation(self, conversation: Conversation) -> None: ...
    async def put_changes(self, conversation: Conversation, turns: Sequence[Turn] = ()) -> None:
        """The conversation's own record and `turns` (added or replaced by number); other turns stay as stored."""
        ...

    async def list_conversations(self) -> list[str]: ...
    async def put_image(self, record: ImageRecord, data: bytes, *, key: str | None = None) -> None:
        """`key`: the sha256 of `data`, when the caller has it (see Blobs.put)."""
        ...

    async def get_image(self, image_id: str) -> tuple[ImageRecord, bytes] | None: ...
    async def get_image_record(self, image_id: str) -> ImageRecord | None: ...
    async def put_file(self, record: FileRecord, data: bytes) -> None: ...
    async def get_file(self, file_id: str) -> tuple[FileRecord, bytes] | None: ...
    async def get_variant(self, key: str) -> tuple[str, bytes] | None: ...
    async def put_variant(self, key: str, mime: str, data: bytes) -> None: ...
    def lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        """Serialise the changes to one conversation (across replicas, for a shared store). Held briefly."""
        ...

    def turn_lock(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        """One chat turn at a time per conversation, held while the answer is generated. A key space of its
        own: it never blocks `lock` of any conversation, whatever the conversation ids."""
        ...

    async def turn_holder(self, conversation_id: str) -> str | None:
        """The owner (a process id, tools/running.py) whose live lease holds the conversation's turn lock, if any:
        a turn recorded as running while nobody holds the lock was cut off (its process stopped or died)."""
        ...

    async def keep_leases(self) -> None:
        """Run for the process's life (its lifespan's task group): renew the cross-process locks it holds. A store
        whose locks live in the process returns at once."""
        ...

    async def put_batch_record(self, run_id: str, item: str, record: str) -> None:
        """One record (JSON text) of a bulk run's manifest (tools/batch_manifest.py): item "" is the run itself,
        any other item one image of it; written again, it replaces the earlier record."""
        ...

    async def get_batch_records(self, run_id: str) -> dict[str, str]:
        """Every record of the run's manifest by item (empty for a run never seen)."""
        ...

    async def close(self) -> None: ...


Origin = Literal["path", "file-url", "data-url", "https", "http"]


@dataclass(frozen=True)
class SourceData:
    """What a source held: its bytes, a display name, where it came from, and the media type it declared."""

    data: bytes
    name: str  # display name: file basename, URL path's last segment, or "data-url"
    origin: Origin
    media_type: str | None  # from the data: URL or the HTTP Content-Type, else None


class SourceReader(Protocol):
    """Reads what an agent named, only inside the allowed folders and limits; raises ToolError otherwise.

    Every rule about which local files may be read lives behind this port: callers ask it for the
    allowed folders, for a folder they were given, and for a name inside a folder."""

    @property
    def allowed_dirs(self) -> tuple[Path, ...]:
        """The allowed folders, resolved, in the order relative paths are looked up (may be empty)."""
        ...

    async def allowed_folder(self, folder: str, *, argument: str) -> Path:
        """`folder` as an existing folder inside the allowed ones (a relative one is looked up in them),
        else a ToolError that names it as the tool argument `argument`."""
        ...

    async def path_in(self, folder: Path, name: str) -> str:
        """The source to `read` for `name` in the input folder `folder`; a ToolError saying it is not in
        the input folder when it would lie inside it and does not exist."""
        ...

    async def read(self, source: str, *, max_bytes: int | None = None, kind: str = "image") -> SourceData:
        """The bytes behind a path, file://, data: or https:// URL, at most `max_bytes` (default: the
        reader's own cap); `kind` ("image", "file", ...) words the messages."""
        ...


@dataclass(frozen=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ImagePart:
    image_id: str
    mime: str
    data: bytes
    detail: Detail
    width: int
    height: int
    tokens: int
    type: Literal["image"] = "image"


@dataclass(frozen=True)
class FilePart:
    file_id: str
    name: str
    mime: str
    data: bytes
    type: Literal["file"] = "file"


Part = TextPart | ImagePart | FilePart


@dataclass(frozen=True)
class Message:
    role: Literal["user", "assistant"]
    parts: list[Part]


@dataclass(frozen=True)
class ChatRequest:
    """One upstream call, independent of which API carries it."""

    options: Options
    messages: list[Message]
    previous_response_id: str | None = None
    # Whether a later turn may continue from this one's stored response; a stand-alone turn is not kept upstream.
    store: bool = True
    # A JSON schema the answer must match (strict structured outputs: tools/batch_schema.py), for bulk runs.
    json_schema: dict[str, Any] | None = None


@dataclass
class ChatReply:
    text: str
    status: str
    model: str
    response_id: str | None
    usage: Usage | None
    api: str
    stored: bool
    incomplete_reason: str | None = None
    background: bool = False
    # What the upstream adapter changed to fit the API in use (a detail the API lacks, say), for the caller.
    notes: list[str] = field(default_factory=list)


class UpstreamFailure(ToolError):
    """The model's server failed or refused (as opposed to bad input): a ToolError scripts can tell apart."""


class ContextLost(Exception):
    """The upstream no longer has the previous response (or cannot be trusted to keep it): replay the recorded
    turns instead. `note`, when given, tells the caller why in place of the generic note."""

    def __init__(self, reason: str, note: str | None = None) -> None:
        super().__init__(reason)
        self.note = note


class Listener(Protocol):
    """Hears a streamed answer as it arrives."""

    async def started(self, response_id: str, background: bool) -> None:
        """The upstream named the response: with background mode it can be fetched again by this id."""
        ...

    async def text(self, delta: str) -> None: ...


class Upstream(Protocol):
    def render(self, request: ChatRequest) -> dict[str, Any]:
        """The request exactly as it would be sent: the API, the endpoint and the body."""
        ...

    async def send(self, request: ChatRequest, listener: Listener | None = None) -> ChatReply: ...

    async def retrieve(self, response_id: str) -> ChatReply | None:
        """A background response by id: the reply when it has finished, None while it is still running."""
        ...

    async def cancel(self, response_id: str) -> None: ...

    async def list_models(self) -> list[str]: ...

    async def close(self) -> None: ...


def api_in_use(upstream: Upstream) -> str | None:
    """The API `upstream` speaks now ("responses" or "chat"), when it says: an adapter may expose it as `api`.

    Read this way rather than as a member of the port, so that an Upstream without it (a test double) still
    fits; the model rules that depend on the API then apply when the request is sent."""
    api = getattr(upstream, "api", None)
    return api if isinstance(api, str) else None
