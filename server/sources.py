"""The one place where a `source` string from an agent becomes bytes.

`load_image` and `attach_file` take a source from a model that may have been prompt-injected, so the
reader assumes every source is hostile: local files only inside the allowed folders (after following
symlinks), no hidden files, regular files only, sizes capped (the rules in server.folders); URLs through
server.fetch, which only reaches public addresses. `SafeSourceReader` is the `tools.ports.SourceReader`
that the server gives the steps. Errors are `ToolError`s that name the source (never its contents), say what
went wrong and what to do instead.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError

from server.addresses import Resolver
from server.folders import AllowedFolders, too_big
from tools.ports import Origin, SourceData
from tools.source_label import source_label

if TYPE_CHECKING:
    from server.fetch import Fetcher

__all__ = ["Resolver", "SafeSourceReader"]

logger = logging.getLogger(__name__)

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# How PNG, JPEG, GIF, WebP, PDF and TIFF files start once base64-encoded.
_BASE64_MAGIC = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR", "JVBERi0", "SUkqAA", "TU0AKg")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_WHITESPACE = str.maketrans("", "", " \t\r\n")
# Windows' long-path limit; Linux stops at 4096, macOS at 1024.
_MAX_PATH_CHARS = 32_767


class SafeSourceReader:
    """Reads a `source` string: a path, a file:// URL, a data: URL, or an https:// (http://) URL.

    Paths: `~` is expanded; a relative path is looked up in each allowed folder in order and the
    first that exists wins (the process's working directory means nothing to a desktop client,
    which starts servers in `/`). The path is resolved with symlinks followed and must then lie
    inside an allowed folder, with no hidden component ("." names such as .ssh, .env) below it
    unless `allow_hidden`. Only regular files are read, and at most `max_bytes`.

    `image://` ids are the caller's business; a bare base64 string is refused with a hint.
    `_trusted_test_networks` exempts networks (127.0.0.0/8) from the public-address rule so tests can
    serve files locally; it is a test knob that no configuration reaches.
    """

    def __init__(
        self,
        allowed_dirs: Sequence[Path],
        *,
        allow_hidden: bool = False,
        allow_http: bool = False,
        max_bytes: int = 50 * 1024 * 1024,
        connect_timeout: float = 10.0,
        total_timeout: float = 30.0,
        max_redirects: int = 5,
        resolver: Resolver | None = None,
        user_agent: str = "imagechat-mcp/0.1 (+https://github.com/imagechat-mcp)",
        _trusted_test_networks: Sequence[str] = (),
    ) -> None:
        self._folders = AllowedFolders(allowed_dirs, allow_hidden=allow_hidden)
        self._max_bytes = max_bytes

        def make_fetcher() -> Fetcher:
            # Made at the first URL: server.fetch imports the HTTP stack (httpx2, httpcore2, h11, truststore),
            # some 20 ms that a start without URLs does not need.
            from server.fetch import Fetcher

            return Fetcher(
                allow_http=allow_http,
                connect_timeout=connect_timeout,
                total_timeout=total_timeout,
                max_redirects=max_redirects,
                user_agent=user_agent,
                resolver=resolver,
                trusted_networks=_trusted_test_networks,
            )

        self._make_fetcher = make_fetcher
        self._fetcher: Fetcher | None = None

    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            self._fetcher = self._make_fetcher()
        return self._fetcher

    @property
    def allowed_dirs(self) -> tuple[Path, ...]:
        return self._folders.dirs

    async def allowed_folder(self, folder: str, *, argument: str) -> Path:
        return await anyio.to_thread.run_sync(lambda: self._folders.folder(folder, argument=argument))

    async def path_in(self, folder: Path, name: str) -> str:
        return await anyio.to_thread.run_sync(self._folders.path_in, folder, name)

    async def read(self, source: str, *, max_bytes: int | None = None, kind: str = "image") -> SourceData:
        """The bytes behind `source`, or a ToolError that says why not and what to do."""
        limit = self._max_bytes if max_bytes is None else max_bytes
        text = source.strip()
        if not text:
            raise ToolError(f"The {kind} source is empty. {_forms(kind)}")
        match = _SCHEME.match(text)
        scheme = match.group(1).lower() if match and len(match.group(1)) > 1 else None  # not C:\
        if scheme is None:
            try:
                if len(text) > _MAX_PATH_CHARS:
                    # No file system takes it, and resolving it would stat each of its thousands of parts.
                    raise ToolError(
                        f"The {kind} source ({len(text)} characters) is longer than any file path. {_forms(kind)}"
                    )
                return await anyio.to_thread.run_sync(self._read_path, text, "path", limit, kind)
            except ToolError:
                if _looks_like_base64(text):
                    raise ToolError(
                        f"The {kind} source ({len(text)} characters) looks like raw base64 data, not a path "
                        f"or URL. Wrap it as a data URL, e.g. {_data_url_example(kind)} with the real media "
                        "type, or give a file path or an https:// URL."
                    ) from None
                raise
        if scheme == "file":
            return await anyio.to_thread.run_sync(self._read_file_url, text, limit, kind)
        if scheme == "data":
            return _read_data_url(text, limit, kind)
        if scheme in ("http", "https"):
            return await self._read_url(text, "https" if scheme == "https" else "http", limit)
        if scheme == "image":
            raise ToolError(f"{source_label(text)} is an id of an image already loaded, not a file or URL to read.")
        raise ToolError(
            f"{source_label(text)} uses the unsupported '{scheme}:' scheme. {_forms(kind)} "
            "(A file name containing ':' can be written as ./name.)"
        )

    async def _read_url(self, url: str, origin: Origin, limit: int) -> SourceData:
        logger.debug("fetching %s", source_label(url))
        from server.fetch import FetchError

        try:
            fetched = await self.fetcher().fetch(url, limit)
        except FetchError as exc:
            raise ToolError(f"{source_label(url)} {exc.problem}. {exc.advice}.") from None
        name = _url_name(url) or _url_name(fetched.url) or urlsplit(fetched.url).hostname or "download"
        return SourceData(fetched.data, _clean_name(name), origin, fetched.media_type)

    def _read_file_url(self, url: str, limit: int, kind: str) -> SourceData:
        parts = urlsplit(url)
        if parts.netloc.lower() not in ("", "localhost"):
            raise ToolError(
                f"{source_label(url)} names another computer ({parts.netloc}); file:// URLs are read only from "
                "this one. Copy the file into an allowed folder and give its path."
            )
        path = url2pathname(parts.path)
        if not Path(path).is_absolute():
            raise ToolError(f"{source_label(url)} does not contain an absolute path. Use file:///full/path/to/file.")
        return self._read_path(path, "file-url", limit, kind, shown=url)

    def _read_path(self, raw: str, origin: Origin, limit: int, kind: str, shown: str | None = None) -> SourceData:
        """Runs in a worker thread: resolving and reading touch the disk."""
        data, name = self._folders.read(raw, source_label(shown or raw), limit, kind)
        return SourceData(data, _clean_name(name), origin, None)


def _read_data_url(url: str, limit: int, kind: str) -> SourceData:
    header, comma, payload = url[5:].partition(",")
    params = [p.strip().lower() for p in header.split(";")]
    media_type = params[0]
    label = f"The data: URL ({_clean_name(media_type[:60] or 'no media type')}, {len(url)} characters)"
    if not comma:
        raise ToolError(f"{label} has no ','. Use the form {_data_url_example(kind)}.")
    if len(params) < 2 or params[-1] != "base64":
        raise ToolError(f"{label} is not base64-encoded. Use the form {_data_url_example(kind)}.")
    if media_type and not _MEDIA_TYPE.fullmatch(media_type):
        raise ToolError(f"{label} has an invalid media type. Use the form {_data_url_example(kind)}.")
    compact = payload.translate(_WHITESPACE)
    # Refuse by the encoded length before decoding anything: base64 holds 3 bytes per 4 characters.
    if len(compact) * 3 // 4 - compact[-2:].count("=") > limit:
        raise ToolError(too_big(label, len(compact) * 3 // 4, limit, kind))
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ToolError(
            f"{label} does not hold valid base64 (only A-Z, a-z, 0-9, +, / and '=' padding are allowed). "
            "Re-encode the file with standard base64."
        ) from None
    if not data:
        raise ToolError(f"{label} is empty. Put the base64 of the {kind} after the ','.")
    return SourceData(data, "data-url", "data-url", media_type or None)


def _looks_like_base64(text: str) -> bool:
    """Raw base64 rather than a path: a known file signature, or a "name" longer than any file system
    allows. Asked only after reading it as a path failed, so a real path keeps its own error."""
    compact = text.translate(_WHITESPACE)
    if len(compact) < 64 or not _BASE64_TEXT.fullmatch(compact):
        return False
    return compact.startswith(_BASE64_MAGIC) or max(len(part) for part in compact.split("/")) > 255


def _url_name(url: str) -> str:
    try:
        return unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    except ValueError:
        return ""


def _clean_name(name: str) -> str:
    """A name from outside, safe to show: no control characters, bounded length."""
    return "".join(c for c in name if c.isprintable())[:255] or "unnamed"


def _forms(kind: str) -> str:
    return (
        f"Give a file path inside the allowed folders, a file:// URL, an https:// URL or a data: URL "
        f"({_data_url_example(kind)})."
    )


def _data_url_example(kind: str) -> str:
    return "data:image/png;base64,..." if kind == "image" else "data:application/pdf;base64,..."
