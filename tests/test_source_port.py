"""The source rules behind the SourceReader port: folders a caller names, names in the input folder, labels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from server.folders import allowed_folders, default_allowed_dirs
from server.sources import SafeSourceReader
from tools.source_label import source_label


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    folder = tmp_path / "allowed"
    (folder / "inputs").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(b"secret")
    return folder


async def test_a_folder_a_caller_names_is_found_in_the_allowed_folders(allowed: Path) -> None:
    reader = SafeSourceReader([allowed])
    assert await reader.allowed_folder("inputs", argument="input_dir") == (allowed / "inputs").resolve()
    assert (
        await reader.allowed_folder(f" {allowed / 'inputs'} ", argument="input_dir") == (allowed / "inputs").resolve()
    )


@pytest.mark.parametrize("name", ["../outside", "missing", "link-out"])
async def test_a_folder_outside_or_missing_is_refused_by_its_argument_name(allowed: Path, name: str) -> None:
    (allowed / "link-out").symlink_to(allowed.parent / "outside")
    with pytest.raises(ToolError) as caught:
        await SafeSourceReader([allowed]).allowed_folder(name, argument="input_dir")
    assert str(caught.value) == (
        f"input_dir {name!r} is not a folder inside the allowed folders ({allowed.resolve()}). Give one of them or "
        "a folder inside, or allow it with IMAGECHAT_ALLOWED_DIRS / --allowed-dir."
    )


async def test_a_name_missing_from_the_input_folder_is_said_plainly(allowed: Path) -> None:
    reader = SafeSourceReader([allowed])
    folder = allowed / "inputs"
    (folder / "cat.png").write_bytes(b"cat")
    path = await reader.path_in(folder, "cat.png")
    assert (await reader.read(path)).data == b"cat"
    with pytest.raises(ToolError, match=r"^'dog.png' is not in the input folder '.*inputs'$"):
        await reader.path_in(folder, "dog.png")


async def test_a_name_leading_out_of_the_input_folder_is_refused_without_saying_whether_it_exists(
    allowed: Path,
) -> None:
    reader = SafeSourceReader([allowed])
    folder = allowed / "inputs"
    messages = []
    for name in ("../../outside/secret.png", "../../outside/nothing.png"):
        path = await reader.path_in(folder, name)  # not "missing": that would tell what exists out there
        with pytest.raises(ToolError) as caught:
            await reader.read(path)
        messages.append(str(caught.value).replace("secret.png", "X").replace("nothing.png", "X"))
    assert "is outside the allowed folders" in messages[0] and messages[0] == messages[1]


def test_named_folders_widen_the_configured_or_default_ones(tmp_path: Path) -> None:
    configured, named = tmp_path / "configured", tmp_path / "named"
    assert allowed_folders([configured], [named]) == [configured, named]
    assert allowed_folders(None, [named]) == [*default_allowed_dirs(Path.cwd()), named]
    assert allowed_folders([], []) == default_allowed_dirs(Path.cwd())


@pytest.mark.parametrize(
    ("source", "label"),
    [
        ("photos/cat.png", "'photos/cat.png'"),
        ("https://user:pw@cdn.example/a/cat.png?sig=SECRET#frag", "'https://cdn.example/a/cat.png?…'"),
        ("data:image/png;base64," + "A" * 5000, "'data:image/png;base64,... (5022 characters)'"),
        ("bad\x00name\n.png", "'bad?name?.png'"),
        ("a" * 300, "'" + "a" * 200 + "…'"),
    ],
)
def test_a_source_is_shown_without_secrets_payloads_or_control_characters(source: str, label: str) -> None:
    assert source_label(source) == label


async def test_a_failed_download_names_the_url_without_its_token() -> None:
    reader = SafeSourceReader([], resolver=lambda host, port: _no_answer())
    with pytest.raises(ToolError) as caught:
        await reader.read("https://me:hunter2@nowhere.example/cat.png?token=SECRET")
    assert str(caught.value).startswith("'https://nowhere.example/cat.png?…' names a host (nowhere.example)")
    assert "SECRET" not in str(caught.value) and "hunter2" not in str(caught.value)


async def _no_answer() -> list[str]:
    return []


def test_sniffing_an_image_resource_does_not_load_pillow() -> None:
    code = "import sys, server.app, tools.image_mime; print('PIL' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "False"


def test_a_started_server_loads_the_http_stack_for_urls_only_at_the_first_url() -> None:
    # server.fetch brings httpcore2, h11 and truststore: some 20 ms of every cold start, for a start that may
    # never see a URL.
    code = (
        "import sys\n"
        "from server.app import build_server, make_deps\n"
        "from server.settings import Settings\n"
        "settings = Settings(store='memory')\n"
        "build_server(settings)\n"
        "reader = make_deps(settings).reader\n"
        "print('server.fetch' in sys.modules, 'httpcore2' in sys.modules)\n"
        "reader.fetcher()\n"
        "print('server.fetch' in sys.modules, 'httpcore2' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split("\n")[:2] == ["False False", "True True"]
