"""A real redis-server for the tests, on a unix socket in a temporary folder (no TCP port, nothing to clash with).

Debian's package installs the server but does not start it, so the tests start one themselves, once per session,
and stop it at the end. Without redis-server on the PATH the tests that need it skip, saying so (CI installs it:
.ci/run, and a skip fails a CI run).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.pidfile = folder / "redis.pid"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server",
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--daemonize", "yes",
                "--pidfile", str(self.pidfile),
                "--dir", str(self.folder),
                "--save", "",
                "--appendonly", "no",
                "--maxmemory-policy", "noeviction",
                "--logfile", str(self.folder / "redis.log"),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with redis.Redis(unix_socket_path=str(self.socket)) as client:
                    if client.ping():
                        return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start: {self.log()}")

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text() if path.exists() else "(no log)"

    def flush(self) -> None:
        with redis.Redis(unix_socket_path=str(self.socket)) as client:
            client.flushall()

    def stop(self) -> None:
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text().strip())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def have_redis() -> bool:
    return shutil.which("redis-server") is not None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not have_redis():
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty Redis: every test starts from nothing."""
    redis_server.flush()
    return redis_server.url
