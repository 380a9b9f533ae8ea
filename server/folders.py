"""Where local files may be read from: the allowed folders, and one file read safely inside them.

The source reader (`server.sources`) decides what a source string means; this module owns the rules
for the local files among them: inside an allowed folder after following symlinks, no hidden
component below it unless allowed, regular files only, sizes capped.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

import platformdirs
from mcp.server.mcpserver.exceptions import ToolError

from server.sizes import format_size

ALLOWED_DIRS_SETTING = "IMAGECHAT_ALLOWED_DIRS / --allowed-dir"
ALLOW_HIDDEN_SETTING = "IMAGECHAT_ALLOW_HIDDEN=1 / --allow-hidden"

# Opened without following a last-component symlink, without blocking on a FIFO, not inherited.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
# A folder on the way to a file: a folder, not a symlink.
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
# Whether files can be opened relative to a folder's descriptor, one name at a time.
_WALKS = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY") and hasattr(os, "O_NOFOLLOW")


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


def allowed_folders(configured: Sequence[Path] | None, extra: Iterable[Path] = ()) -> list[Path]:
    """The folders to read from: the configured ones (the defaults when none are), then `extra`.

    `extra` is what the user named for this run (an input folder, files on a script's command line):
    naming them is consent to read from their folders."""
    base = list(configured) if configured else default_allowed_dirs(Path.cwd())
    return [*base, *extra]


class AllowedFolders:
    """The allowed folders, resolved, in lookup order, and the rules for reading files inside them."""

    def __init__(self, dirs: Sequence[Path], *, allow_hidden: bool = False) -> None:
        self.dirs = tuple(dict.fromkeys(Path(d).expanduser().resolve() for d in dirs))
        self._allow_hidden = allow_hidden

    def folder(self, folder: str, *, argument: str) -> Path:
        """`folder` as an existing folder inside the allowed ones; a relative one is looked up in them."""
        given = Path(folder.strip()).expanduser()
        candidates = [given] if given.is_absolute() else [root / given for root in self.dirs]
        for candidate in candidates:
            try:
                resolved = candidate.resolve()
            except OSError:  # changed while it was being resolved, or unreadable: not a folder to use
                continue
            if any(resolved.is_relative_to(root) for root in self.dirs) and resolved.is_dir():
                return resolved
        shown = ", ".join(str(root) for root in self.dirs) or "none"
        raise ToolError(
            f"{argument} {folder!r} is not a folder inside the allowed folders ({shown}). Give one of them or a "
            f"folder inside, or allow it with {ALLOWED_DIRS_SETTING}."
        )

    @staticmethod
    def path_in(folder: Path, name: str) -> str:
        """The path of `name` in `folder`, refused plainly when it would be inside and does not exist.

        Whether a file exists elsewhere (a symlink out) is for the reader to refuse without telling."""
        path = folder / name
        try:
            target = path.resolve()
            missing = target.is_relative_to(folder.resolve()) and not target.exists()
        except OSError as exc:  # a name on the way changed while it was being resolved
            problem = exc.strerror or type(exc).__name__
            raise ToolError(f"{name!r} could not be looked up in the input folder ({problem}). Try again.") from None
        if missing:
            raise ToolError(f"{name!r} is not in the input folder {str(folder)!r}")
        return str(path)

    def read(self, raw: str, label: str, limit: int, kind: str) -> tuple[bytes, str]:
        """The bytes and file name behind the path `raw` (blocking: call from a worker thread)."""
        if "\x00" in raw:
            raise ToolError(f"{label} contains a NUL character, which no file name can. Check the path.")
        if not self.dirs:
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
        candidates = [path] if path.is_absolute() else [d / path for d in self.dirs]
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
            root = max((d for d in self.dirs if target.is_relative_to(d)), key=lambda d: len(d.parts))
            return read_inside(root, target, label, limit, kind), target.name
        except OSError as exc:
            raise ToolError(
                f"{label} could not be read ({exc.strerror or type(exc).__name__}). Check that the file "
                "exists and is readable."
            ) from None

    def _check_inside(self, resolved: Path, label: str, kind: str) -> bool:
        """Whether `resolved` is inside an allowed folder; ToolError if only through a hidden name."""
        roots = [root for root in self.dirs if resolved.is_relative_to(root)]
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
        return ", ".join(str(d) for d in self.dirs)


def too_big(label: str, size: int, limit: int, kind: str) -> str:
    """The message for a source over the size limit."""
    limits = f"{format_size(size)}, over the {format_size(limit)} limit per {kind}"
    return f"{label} is {limits}. Use a smaller or more compressed copy."


def read_inside(root: Path, target: Path, label: str, limit: int, kind: str) -> bytes:
    """The bytes of `target`, a resolved path inside the resolved allowed folder `root`, read so that what is
    read is what was checked.

    Checking a resolved path and then opening it again by name is a race: a folder on the way can be swapped
    for a symlink to somewhere else in between. So where the platform can (Linux, macOS, the BSDs), the file
    is reached from `root`'s descriptor one name at a time, every folder and the file itself opened without
    following a symlink. `target` was resolved, so no name on the way is a symlink unless one was put there
    since; then the open fails and the read is refused. Symlinks a user made inside the folder still work:
    the resolved path goes around them. (Checking the opened file's location afterwards instead would need
    /proc or F_GETPATH, one per platform.) Windows has no `dir_fd`: there the file is opened by its path,
    without following a final symlink, and must be the file that was checked.
    """
    if not _WALKS:
        return _read_regular_file(os.fspath(target), None, label, limit, kind)
    names = target.relative_to(root).parts
    fd = os.open(root, _DIR_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))
    try:
        for name in names[:-1]:
            try:
                step = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a folder became a symlink (or a file)
                    raise _changed(label) from None
                raise
            os.close(fd)
            fd = step
        return _read_regular_file(names[-1] if names else ".", fd, label, limit, kind)
    finally:
        os.close(fd)


def _changed(label: str) -> ToolError:
    return ToolError(f"{label} changed while it was being opened. Try again.")


def _read_regular_file(path: str, dir_fd: int | None, label: str, limit: int, kind: str) -> bytes:
    before = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(before.st_mode):  # it was resolved, so it has become a symlink since
        raise _changed(label)
    if stat.S_ISDIR(before.st_mode):
        raise ToolError(f"{label} is a folder, not a file. Give the path of one {kind} file in it.")
    if not stat.S_ISREG(before.st_mode):
        raise ToolError(
            f"{label} is not a regular file (it is a device, pipe or socket). Give the path of a {kind} file."
        )
    try:
        fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _changed(label) from None
        raise
    with os.fdopen(fd, "rb") as file:
        # Judge the file we opened, not the name: it could have been swapped since the stat above.
        opened = os.fstat(file.fileno())
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(opened.st_mode):
            raise _changed(label)
        if opened.st_size > limit:
            raise ToolError(too_big(label, opened.st_size, limit, kind))
        # Sized to the file, not to the limit: a read of `limit` bytes allocates all of them first (4 ms for a
        # 50 MB limit), whatever the file holds.
        data = file.read(opened.st_size + 1)
        if len(data) > opened.st_size:  # it grew after the fstat: read on, up to the limit
            data += file.read(limit + 1 - len(data))
    if len(data) > limit:  # it grew after the fstat
        raise ToolError(too_big(label, len(data), limit, kind))
    return data


def _hidden_part(relative: Path) -> str | None:
    return next((part for part in relative.parts if part.startswith(".")), None)
