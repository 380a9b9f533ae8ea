"""`imagechat-mcp batch` as a script runs it: a real subprocess, killed with SIGKILL halfway and run again."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.fake_upstream import FakeUpstream, Reply
from tests.test_batch_direct import make_folder

ROOT = Path(__file__).resolve().parent.parent


def environment(tmp_path: Path, upstream: FakeUpstream) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": upstream.base_url,
        "IMAGECHAT_STATE_DIR": str(tmp_path / "state"),
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }


def batch(tmp_path: Path, upstream: FakeUpstream, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "server", "batch", *args]
    env = environment(tmp_path, upstream)
    return subprocess.run(command, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_folder_into_csv_with_the_estimate_first(tmp_path: Path, upstream: FakeUpstream) -> None:
    folder = tmp_path / "photos"
    make_folder(folder / "b", 2)
    make_folder(folder / "a", 3)
    (folder / "a" / "notes.txt").write_text("not an image")
    upstream.default_reply = Reply(text="A small, flat, coloured square.")
    out = tmp_path / "captions.csv"

    dry = batch(tmp_path, upstream, str(folder), "--prompt", "Caption it.", "--out", str(out), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "5 images" in dry.stdout and "estimated cost: 5 images" in dry.stdout and "$" in dry.stdout
    assert "not images" in dry.stderr  # the text file was skipped, and said so
    assert upstream.answered == []  # a dry run asks nothing

    args = [str(folder), "--prompt", "Caption it.", "--out", str(out), "--preset", "describe", "--concurrency", "1"]
    done = batch(tmp_path, upstream, *args)
    assert done.returncode == 0, done.stderr
    assert "done 5, failed 0" in done.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    # Folders are walked in a stable order: a/ before b/, names sorted (one at a time: the file keeps that order).
    assert [Path(row["path"]).relative_to(folder).as_posix() for row in rows] == [
        "a/img0000.png",
        "a/img0001.png",
        "a/img0002.png",
        "b/img0000.png",
        "b/img0001.png",
    ]
    assert all(row["answer"] == "A small, flat, coloured square." and row["status"] == "done" for row in rows)
    assert upstream.answered[0]["instructions"]  # the preset's instructions went with each image
    assert upstream.answered[0]["store"] is False  # stand-alone: nothing kept upstream

    again = batch(tmp_path, upstream, *args)
    assert again.returncode == 0 and "5 already answered" in again.stdout
    assert len(upstream.answered) == 5


def test_paths_on_stdin_and_a_bad_key_stops_the_run(tmp_path: Path, upstream: FakeUpstream) -> None:
    paths = make_folder(tmp_path / "in", 3)
    out = tmp_path / "out.jsonl"
    upstream.fail(401, times=50)
    failed = batch(tmp_path, upstream, "-", "--prompt", "Caption it.", "--out", str(out), stdin="\n".join(paths))
    assert failed.returncode == 3 and "401" in failed.stderr
    assert out.read_text() == ""  # nothing recorded: a rerun with a good key asks all three
    missing = batch(tmp_path, upstream, str(tmp_path / "nowhere"), "--prompt", "x")
    assert missing.returncode == 2 and "No such file or folder" in missing.stderr


def test_killed_with_sigkill_halfway_and_run_again(tmp_path: Path, upstream: FakeUpstream) -> None:
    folder = tmp_path / "photos"
    paths = make_folder(folder, 60)
    out = tmp_path / "results.jsonl"
    upstream.default_reply = Reply(text="caption", delay=0.1)
    args = [str(folder), "--prompt", "Caption it.", "--out", str(out), "--concurrency", "4"]
    command = [sys.executable, "-m", "server", "batch", *args]
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment(tmp_path, upstream), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 20):
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    while upstream.in_flight:  # let the requests the killed run had in flight finish at the fake
        time.sleep(0.02)
    written = [line for line in out.read_text().split("\n")[:-1]]  # complete lines only
    assert 20 <= len(written) < 60
    asked_before = len(upstream.answered)

    rerun = batch(tmp_path, upstream, *args)
    assert rerun.returncode == 0, rerun.stderr
    rows = jsonl(out)
    assert sorted(row["path"] for row in rows) == paths  # complete, and no image twice
    assert rows[: len(written)] == [json.loads(line) for line in written]  # what was there stays as it was
    assert len(upstream.answered) - asked_before == 60 - len(written)  # nothing with a result is asked again
