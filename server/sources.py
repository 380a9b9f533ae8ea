"""The one place where a `source` string from an agent becomes bytes.

`load_image` and `attach_file` take a source from a model that may have been prompt-injected, so the
reader assumes every source is hostile: local files only inside the allowed folders (after following
symlinks), no hidden files, regular files only, sizes capped; URLs through server.fetch, which only
reaches public addresses. Errors are `ToolError`s that name the source (never its contents), say what
went wrong and what to do instead.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import anyio.to_thread
import platformdirs
from mcp.server.mcpserver.exceptions import ToolError

from server.fetch import Fetcher, FetchError, Resolver, display_url, format_size

__all__ = ["Resolver", "SourceData", "SourceReader", "default_allowed_dirs"]

logger = logging.getLogger(__name__)

ALLOWED_DIRS_SETTING = "IMAGECHAT_ALLOWED_DIRS / --allowed-dir"
ALLOW_HIDDEN_SETTING = "IMAGECHAT_ALLOW_HIDDEN=1 / --allow-hidden"

Origin = Literal["path", "file-url", "data-url", "https", "http"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# How PNG, JPEG, GIF, WebP, PDF and TIFF files start once base64-encoded.
_BASE64_MAGIC = ("iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR", "JVBERi0", "SUkqAA", "TU0AKg")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_WHITESPACE = str.maketrans("", "", " \t\r\n")
# Windows' long-path limit; Linux stops at 4096, macOS at 1024.
_MAX_PATH_CHARS = 32_767
# Opened without following a last-component symlink, without blocking on a FIFO, not inherited.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


@dataclass(frozen=True)
class SourceData:
    data: bytes
    name: str  # display name: file basename, URL path's last segment, or "data-url"
    origin: Origin
    media_type: str | None  # from the data: URL or the HTTP Content-Type, else None


def default_allowed_dirs(cwd: Path | None = None, home: Path | None = None) -> list[Path]:
    """The folders a user expects to load from without configuring anything.

    The working directory first (an IDE agent's workspace), unless it is the filesystem root, the
    home directory or one of its ancestors: Claude Desktop starts servers in `/`, and the whole home
    holds ~/.ssh and friends. Then the desktop, downloads and pictures folders (platformdirs' answer,
    which follows XDG user-dirs and the OS, plus ~/Desktop, ~/Downloads, ~/Pictures), only those that
    exist. platformdirs is asked only for the real home: an explicit `home` (tests) is used alone.
    Returned resolved and without duplicates, in that order.
    """
    real_home = home is None
    home = (home or Path.home()).resolve()
    cwd = (cwd or Path.cwd()).resolve()
    candidates: list[Path] = []
    if cwd != Path(cwd.anchor) and not home.is_relative_to(cwd):
        candidates.append(cwd)
    if real_home:
        for user_dir in (
            platformdirs.user_desktop_dir(),
            platformdirs.user_downloads_dir(),
            platformdirs.user_pictures_dir(),
        ):
            candidates.append(Path(user_dir))
    candidates += [home / "Desktop", home / "Downloads", home / "Pictures"]
    found = [c.resolve() for c in candidates if c.is_dir()]
    return [d for d in dict.fromkeys(found) if not home.is_relative_to(d)]  # never home or above it


class SourceReader:
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
        self._allowed = tuple(dict.fromkeys(Path(d).expanduser().resolve() for d in allowed_dirs))
        self._allow_hidden = allow_hidden
        self._max_bytes = max_bytes
        self._fetcher = Fetcher(
            allow_http=allow_http,
            connect_timeout=connect_timeout,
            total_timeout=total_timeout,
            max_redirects=max_redirects,
            user_agent=user_agent,
            resolver=resolver,
            trusted_networks=_trusted_test_networks,
        )

    @property
    def allowed_dirs(self) -> tuple[Path, ...]:
        return self._allowed

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
            raise ToolError(f"{_label(text)} is an id of an image already loaded, not a file or URL to read.")
        raise ToolError(
            f"{_label(text)} uses the unsupported '{scheme}:' scheme. {_forms(kind)} "
            "(A file name containing ':' can be written as ./name.)"
        )

    async def _read_url(self, url: str, origin: Origin, limit: int) -> SourceData:
        logger.debug("fetching %s", display_url(url))
        try:
            fetched = await self._fetcher.fetch(url, limit)
        except FetchError as exc:
            raise ToolError(f"{display_url(url)} {exc.problem}. {exc.advice}.") from None
        name = _url_name(url) or _url_name(fetched.url) or urlsplit(fetched.url).hostname or "download"
        return SourceData(fetched.data, _clean_name(name), origin, fetched.media_type)

    def _read_file_url(self, url: str, limit: int, kind: str) -> SourceData:
        parts = urlsplit(url)
        if parts.netloc.lower() not in ("", "localhost"):
            raise ToolError(
                f"{_label(url)} names another computer ({parts.netloc}); file:// URLs are read only from "
                "this one. Copy the file into an allowed folder and give its path."
            )
        path = url2pathname(parts.path)
        if not Path(path).is_absolute():
            raise ToolError(f"{_label(url)} does not contain an absolute path. Use file:///full/path/to/file.")
        return self._read_path(path, "file-url", limit, kind, shown=url)

    def _read_path(self, raw: str, origin: Origin, limit: int, kind: str, shown: str | None = None) -> SourceData:
        """Runs in a worker thread: resolving and reading touch the disk."""
        label = _label(shown or raw)
        if "\x00" in raw:
            raise ToolError(f"{label} contains a NUL character, which no file name can. Check the path.")
        if not self._allowed:
            raise ToolError(
                f"{label} cannot be read: no folder is allowed for reading. Add one with {ALLOWED_DIRS_SETTING}."
            )
        try:
            path = Path(raw).expanduser()
        except RuntimeError:  # "~" with no home directory
            path = Path(raw)
        if path.drive.startswith(("\\\\", "//")):
            # Windows UNC path: resolving it would already contact that server (and offer it our login).
            raise ToolError(f"{label} is a network path. Copy the {kind} into an allowed folder and give that path.")
        candidates = [path] if path.is_absolute() else [d / path for d in self._allowed]
        try:
            # Non-strict first: an outside path is refused whether or not it exists (no existence oracle).
            inside = [r for r in (c.resolve() for c in candidates) if self._check_inside(r, label, kind)]
            if not inside:
                raise self._outside(label, kind)
            target = next((r for r in inside if r.exists()), None)
            if target is None:
                raise ToolError(
                    f"{label} was not found. Relative paths are looked up in the allowed folders "
                    f"({self._folders()}). Check the name, or give the absolute path of a file in one of "
                    "them."
                )
            target = target.resolve(strict=True)
            if not self._check_inside(target, label, kind):  # changed since the first look
                raise self._outside(label, kind)
            return SourceData(_read_regular_file(target, label, limit, kind), _clean_name(target.name), origin, None)
        except OSError as exc:
            raise ToolError(
                f"{label} could not be read ({exc.strerror or type(exc).__name__}). Check that the file "
                "exists and is readable."
            ) from None

    def _check_inside(self, resolved: Path, label: str, kind: str) -> bool:
        """Whether `resolved` is inside an allowed folder; ToolError if only through a hidden name."""
        roots = [root for root in self._allowed if resolved.is_relative_to(root)]
        if not roots or self._allow_hidden:
            return bool(roots)
        if any(not _hidden_part(resolved.relative_to(root)) for root in roots):
            return True
        hidden = _hidden_part(resolved.relative_to(roots[0]))
        raise ToolError(
            f"{label} is inside the hidden folder or file '{hidden}'. Hidden files (.ssh, .env, .git, ...) "
            f"often hold secrets, so they are not read. Move the {kind} to a visible folder, or start the "
            f"server with {ALLOW_HIDDEN_SETTING}."
        )

    def _outside(self, label: str, kind: str) -> ToolError:
        return ToolError(
            f"{label} is outside the allowed folders ({self._folders()}). Move the {kind} into one of them, "
            f"or add its folder with {ALLOWED_DIRS_SETTING}."
        )

    def _folders(self) -> str:
        return ", ".join(str(d) for d in self._allowed)


def _read_regular_file(path: Path, label: str, limit: int, kind: str) -> bytes:
    before = os.stat(path)
    if stat.S_ISDIR(before.st_mode):
        raise ToolError(f"{label} is a folder, not a file. Give the path of one {kind} file in it.")
    if not stat.S_ISREG(before.st_mode):
        raise ToolError(
            f"{label} is not a regular file (it is a device, pipe or socket). Give the path of a {kind} file."
        )
    fd = os.open(path, _OPEN_FLAGS)
    with os.fdopen(fd, "rb") as file:
        # Judge the file we opened, not the name: it could have been swapped since the stat above.
        opened = os.fstat(file.fileno())
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(opened.st_mode):
            raise ToolError(f"{label} changed while it was being opened. Try again.")
        if opened.st_size > limit:
            raise ToolError(_too_big(label, opened.st_size, limit, kind))
        data = file.read(limit + 1)
    if len(data) > limit:  # it grew after the fstat
        raise ToolError(_too_big(label, len(data), limit, kind))
    return data


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
        raise ToolError(_too_big(label, len(compact) * 3 // 4, limit, kind))
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


def _hidden_part(relative: Path) -> str | None:
    return next((part for part in relative.parts if part.startswith(".")), None)


def _label(source: str, limit: int = 200) -> str:
    shown = "".join(c if c.isprintable() else "?" for c in source)
    return f"'{shown[:limit]}…'" if len(shown) > limit else f"'{shown}'"


def _url_name(url: str) -> str:
    try:
        return unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])
    except ValueError:
        return ""


def _clean_name(name: str) -> str:
    """A name from outside, safe to show: no control characters, bounded length."""
    return "".join(c for c in name if c.isprintable())[:255] or "unnamed"


def _too_big(label: str, size: int, limit: int, kind: str) -> str:
    limits = f"{format_size(size)}, over the {format_size(limit)} limit per {kind}"
    return f"{label} is {limits}. Use a smaller or more compressed copy."


def _forms(kind: str) -> str:
    return (
        f"Give a file path inside the allowed folders, a file:// URL, an https:// URL or a data: URL "
        f"({_data_url_example(kind)})."
    )


def _data_url_example(kind: str) -> str:
    return "data:image/png;base64,..." if kind == "image" else "data:application/pdf;base64,..."
