"""The Input Files step: documents (text and PDF) that go with the next turn as input_file parts."""

from __future__ import annotations

import json
import time
from pathlib import PurePosixPath
from typing import Annotated

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools.deps import ConversationId, Deps, check_conversation_id, content_id_of
from tools.models import FileRecord
from tools.sanitize import clean_text
from tools.source_label import source_label

# What OpenAI's input_file accepts and ComfyUI's Input Files node offers, by extension.
DOCUMENT_TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".json": "application/json",
    ".pdf": "application/pdf",
}
# The step's argument; the MCP tool's parameters are this and conversation_id (server/mcp_tools.py).
DocumentSourceArg = Annotated[
    str,
    Field(
        description="Path, file:// or data: URL of a .txt, .md, .csv, .json or .pdf "
        "document inside the allowed folders."
    ),
]
MEDIA_TO_EXT = {
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/csv": ".csv",
    "application/json": ".json",
    "application/pdf": ".pdf",
}


class AttachedFile(BaseModel):
    file_id: str
    name: str
    mime: str
    bytes: int


class AttachFileResult(BaseModel):
    conversation_id: str
    file: AttachedFile
    pending_files: int


def document_type(name: str, media_type: str | None) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in DOCUMENT_TYPES:
        return DOCUMENT_TYPES[suffix]
    media = (media_type or "").split(";")[0].strip().lower()
    if media in MEDIA_TO_EXT:
        return media
    raise ToolError(
        f"{name!r} is not a supported document. attach_file takes {', '.join(sorted(DOCUMENT_TYPES))} "
        "files; send images with load_image."
    )


def check_content(name: str, mime: str, data: bytes) -> None:
    """The bytes must be what the name claims: a PDF starts like one, text is UTF-8, JSON parses."""
    if mime == "application/pdf":
        if not data.lstrip()[:5] == b"%PDF-":
            raise ToolError(f"{name!r} is named as a PDF but is not one (no %PDF- header).")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ToolError(f"{name!r} is not UTF-8 text. Save it as UTF-8, or convert it to PDF.") from None
    if "\x00" in text:
        raise ToolError(f"{name!r} contains NUL bytes: it looks binary, not like a text document.")
    if mime == "application/json":
        try:
            json.loads(text)
        except ValueError as exc:
            raise ToolError(f"{name!r} is not valid JSON ({exc}). Fix it, or attach it as .txt.") from None


async def store_document(deps: Deps, source: str) -> FileRecord:
    """Read a document, check it is what its name says, and store it once by content (not attached)."""
    read = await deps.reader.read(source, max_bytes=deps.limits.max_file_bytes, kind="file")
    # The name is returned to the model and sent upstream: no hidden characters in it.
    name = clean_text(read.name) if read.name != "data-url" else ""
    name = name or "document"
    mime = document_type(name, read.media_type)
    if not PurePosixPath(name).suffix:
        name += MEDIA_TO_EXT[mime]
    if not read.data:
        raise ToolError(f"{source_label(source)} is empty: there is nothing to attach.")
    check_content(name, mime, read.data)
    record = FileRecord(file_id=await content_id_of("file", read.data), name=name, mime=mime, bytes=len(read.data))
    await deps.store.put_file(record, read.data)
    return record


async def attach_file(
    deps: Deps, source: DocumentSourceArg, conversation_id: ConversationId = "default"
) -> AttachFileResult:
    check_conversation_id(conversation_id)
    if not isinstance(source, str) or not source.strip():
        raise ToolError("source is empty: give a path to a .txt, .md, .csv, .json or .pdf file.")
    record = await store_document(deps, source.strip())
    async with deps.store.lock(conversation_id):
        conversation = await deps.conversation(conversation_id, with_turns=False)
        if record.file_id not in conversation.pending_files:
            conversation.pending_files.append(record.file_id)
        conversation.names.setdefault(record.file_id, record.name)
        conversation.updated_at = time.time()
        await deps.store.put_changes(conversation)
    return AttachFileResult(
        conversation_id=conversation_id,
        file=AttachedFile(**record.model_dump()),
        pending_files=len(conversation.pending_files),
    )
