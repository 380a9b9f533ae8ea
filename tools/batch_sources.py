"""The images of a bulk run started by the run_batch tool: files and folders read through the source reader.

A folder must be one the reader allows (the allowed folders, and over authenticated HTTP the remote rules, as for
load_image); it is walked recursively, images only by their names, hidden names skipped, in a sorted order. Any
other source is read once through the reader now, so one it refuses (outside the allowed folders, say) fails the
call with the reader's own message before anything is sent. What a folder walk finds is read through the reader
again when the run reaches it: a symlink out of the folder is refused then, as a failed result, and never sent.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError

from tools.ports import SourceReader

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
MAX_IMAGES = 100_000  # one run; more is a second run (the manifest and previews stay a sensible size)


def walk(folder: Path) -> list[str]:
    """The images under `folder` in a stable order (blocking: call from a worker thread)."""
    found: list[str] = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
                found.append(os.path.join(parent, name))
                if len(found) > MAX_IMAGES:
                    raise ToolError(f"{folder} holds more than {MAX_IMAGES} images; give fewer folders per run.")
    return found


async def expand(reader: SourceReader, sources: list[str]) -> list[str]:
    """The run's images, in the order given (folders walked), without repeats; ToolError for a source refused."""
    found: list[str] = []
    for source in sources:
        folder = None
        if "://" not in source and not source.startswith("data:"):
            try:
                folder = await reader.allowed_folder(source, argument="source")
            except ToolError:
                folder = None  # not a folder it allows: read it as a file, for the reader's own words
        if folder is not None:
            found += await anyio.to_thread.run_sync(walk, folder)
        else:
            await reader.read(source, kind="image")
            found.append(source)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise ToolError("No images found in the sources given (folders are searched for image files by name).")
    if len(unique) > MAX_IMAGES:
        raise ToolError(f"The sources hold {len(unique)} images, over {MAX_IMAGES} a run; split them.")
    return unique
