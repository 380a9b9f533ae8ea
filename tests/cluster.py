"""Several real server processes on one Redis, behind the real HAProxy with deploy/haproxy.cfg, all on 127.0.0.1.

Used by tests/test_replicas.py and benchmarks/bench_replicas.py. Each replica is `python -m server --transport
streamable-http` on a port of its own; HAProxy runs in the foreground with the shipped configuration, its
addresses given through the environment variables that file reads. `stop` ends every process it started.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).parent.parent
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy.cfg"
SLOTS = 3  # the replicas deploy/haproxy.cfg names


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process.poll() is not None:
            raise AssertionError(f"process {process.args!r} exited with {process.returncode}")
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


class Cluster:
    def __init__(
        self, folder: Path, redis_url: str, upstream_url: str, *, replicas: int = 3, env: dict[str, str] | None = None
    ) -> None:
        assert 1 <= replicas <= SLOTS
        self.folder = folder
        self.count = replicas
        self.redis_url = redis_url
        self.ports = [free_port() for _ in range(replicas)]
        self.balancer_port = free_port()
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(folder),
            "OPENAI_API_KEY": "sk-test-key",
            "OPENAI_BASE_URL": upstream_url,
            "IMAGECHAT_STORE": "redis",
            "IMAGECHAT_REDIS_URL": redis_url,
            "IMAGECHAT_REPLICAS": str(replicas),
            "IMAGECHAT_STATE_KEY": secrets.token_hex(32),
            "IMAGECHAT_MAX_RETRIES": "0",
            **(env or {}),
        }
        self.replicas: list[subprocess.Popen[bytes]] = []
        self.balancer: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.balancer_port}/mcp"

    def replica_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}/mcp"

    def start_replica(self, index: int) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"replica{index + 1}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "--transport", "streamable-http", "--port", str(self.ports[index])],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        wait_for_port(self.ports[index], process)
        return process

    def start(self) -> Cluster:
        self.replicas = [self.start_replica(index) for index in range(self.count)]
        # A slot this cluster leaves empty points at a closed port: HAProxy's checks mark it down at once.
        closed = free_port()
        slots = [*self.ports, *[closed] * (SLOTS - self.count)]
        env = {
            "PATH": os.environ["PATH"],
            "IMAGECHAT_LB_BIND": f"127.0.0.1:{self.balancer_port}",
            **{f"IMAGECHAT_REPLICA{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(slots)},
        }
        log = open(self.folder / "haproxy.log", "ab")  # noqa: SIM115 - closed with the process
        self.balancer = subprocess.Popen(
            ["haproxy", "-db", "-f", str(HAPROXY_CONFIG)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for_port(self.balancer_port, self.balancer)
        return self

    def pid_of(self, owner: str) -> int:
        """The pid in an owner id (tools/running.py new_owner: `<pid>-<random>`)."""
        return int(owner.split("-", 1)[0])

    def index_of(self, pid: int) -> int:
        return next(index for index, process in enumerate(self.replicas) if process.pid == pid)

    def kill(self, index: int) -> None:
        self.replicas[index].send_signal(signal.SIGKILL)
        self.replicas[index].wait(10)

    def restart(self, index: int) -> None:
        if self.replicas[index].poll() is None:
            self.kill(index)
        self.replicas[index] = self.start_replica(index)

    def stop(self) -> None:
        for process in [*self.replicas, *([self.balancer] if self.balancer else [])]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.replicas, *([self.balancer] if self.balancer else [])]:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.folder.glob("*.log")))

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
