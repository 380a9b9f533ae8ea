"""Started by hand on a terminal, the server says on stderr what it waits for, how to connect a client and how
to stop it; Ctrl-C stops it at once without a traceback, and stdout (the protocol) stays empty. A real
`imagechat-mcp` process on a pseudo-terminal, as a new user would run it."""

from __future__ import annotations

import fcntl
import os
import pty
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "imagechat-mcp"


def take_terminal() -> None:
    """In the child, after setsid: make the pseudo-terminal on stdin its controlling terminal, so that the
    Ctrl-C typed on it becomes a SIGINT, as in a shell."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@contextmanager
def on_terminal(tmp_path: Path, *, key: str = "") -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGECHAT_", "OPENAI_"))}
    env |= {"OPENAI_API_KEY": key, "IMAGECHAT_STORE": "sqlite", "IMAGECHAT_STATE_DIR": str(tmp_path / "state")}
    process = subprocess.Popen(
        [str(SCRIPT)],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=take_terminal,
        env=env,
        cwd=tmp_path,
    )
    os.close(terminal)
    try:
        yield process, controller
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
        os.close(controller)


def wait_for_banner(process: subprocess.Popen[bytes]) -> bytes:
    """stderr up to the banner's last line (then the server is about to read the terminal)."""
    assert process.stderr is not None
    seen = b""
    deadline = time.monotonic() + 30
    while b"Stop it with Ctrl-C" not in seen:
        assert time.monotonic() < deadline, f"no banner: {seen!r}"
        chunk = os.read(process.stderr.fileno(), 4096)
        assert chunk, f"stderr closed before the banner: {seen!r}"
        seen += chunk
    return seen


def finish(process: subprocess.Popen[bytes], seconds: float) -> tuple[bytes, bytes, float]:
    started = time.monotonic()
    out, err = process.communicate(timeout=seconds)
    return out, err, time.monotonic() - started


@pytest.mark.timeout(90)
def test_ctrl_c_on_a_terminal_stops_the_server_at_once_after_it_said_what_it_waits_for(tmp_path: Path) -> None:
    with on_terminal(tmp_path) as (process, controller):
        banner = wait_for_banner(process).decode()
        time.sleep(1.5)  # let it reach the point where it waits for the client
        os.write(controller, b"\x03")  # Ctrl-C, as typed
        out, err, took = finish(process, 10)
    assert out == b""  # stdout is the protocol: not a byte of it
    assert process.returncode == 0
    assert took < 5, f"Ctrl-C took {took:.1f} s"
    text = banner + err.decode()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert text.endswith("imagechat-mcp: stopped.\n")
    assert banner.startswith(
        "imagechat-mcp is running and waiting for an MCP client on stdin/stdout; there is nothing to type here.\n"
    )
    command = str(SCRIPT.resolve())
    assert f'"command": "{command}"' in banner  # the Claude Desktop snippet, with this install's path
    assert f"{command} --transport streamable-http" in banner
    assert "OPENAI_API_KEY is not set: every step works except the model call." in banner
    assert "Stop it with Ctrl-C (or Ctrl-D)." in banner


@pytest.mark.timeout(90)
def test_ctrl_c_while_still_starting_up_stops_it_without_a_traceback(tmp_path: Path) -> None:
    with on_terminal(tmp_path, key="sk-test") as (process, controller):
        banner = wait_for_banner(process).decode()
        os.write(controller, b"\x03")  # at once: the server may still be importing
        out, err, took = finish(process, 10)
    assert out == b""
    assert took < 5
    assert "Traceback" not in err.decode(), err.decode()
    assert "is not set" not in banner  # a key is set, so nothing to say about it


@pytest.mark.timeout(90)
def test_ctrl_d_on_a_terminal_ends_it_too(tmp_path: Path) -> None:
    with on_terminal(tmp_path) as (process, controller):
        wait_for_banner(process)
        time.sleep(1.5)
        os.write(controller, b"\x04")  # Ctrl-D on an empty line: end of input
        out, err, took = finish(process, 10)
    assert (out, process.returncode) == (b"", 0)
    assert took < 5 and "Traceback" not in err.decode()


@pytest.mark.timeout(90)
def test_a_client_on_the_terminal_is_still_served(tmp_path: Path) -> None:
    with on_terminal(tmp_path) as (process, controller):
        wait_for_banner(process)
        os.write(controller, b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n')
        assert process.stdout is not None
        answer = process.stdout.readline()
        os.write(controller, b"\x03")
        finish(process, 10)
    assert answer == b'{"jsonrpc":"2.0","id":1,"result":{}}\n'
