"""Replica settings: the shared key seals state every replica can open, and a replica will not start without it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.server.request_state import InvalidRequestState

from server.app import state_security
from server.settings import Settings

ROOT = Path(__file__).parent.parent


def test_state_sealed_by_one_replica_is_opened_by_another_with_the_same_key_only() -> None:
    key = secrets.token_hex(32)
    one, two = state_security(Settings(state_key=key)), state_security(Settings(state_key=key))
    stranger = state_security(Settings(state_key=secrets.token_hex(32)))
    assert one is not None and two is not None and stranger is not None
    token = one.codec.seal(b"elicitation in progress")
    assert two.codec.unseal(token) == b"elicitation in progress"
    with pytest.raises(InvalidRequestState):
        stranger.codec.unseal(token)
    assert state_security(Settings()) is None  # one process keeps the SDK's own per-process key


def test_a_replica_without_the_shared_key_refuses_to_start(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "IMAGECHAT_REPLICAS": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "server", "--transport", "streamable-http", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "IMAGECHAT_STATE_KEY" in done.stderr
    shown = repr(Settings(state_key="secret-value-" * 3, redis_url="redis://:pw@host/0"))
    assert "secret" not in shown and ":pw@" not in shown  # neither lands in a log
