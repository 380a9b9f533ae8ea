"""`imagechat-mcp ask` and `imagechat-mcp workflow` as a shell script runs them: a subprocess, stdout, stderr
and the exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from tests import images
from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import user_content

ROOT = Path(__file__).parent.parent
FIXTURE = Path("tests") / "fixtures" / "comfyui" / "api_openai_chat.json"  # relative: the CLI resolves it


class Done(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


Run = Callable[..., Done]


@pytest.fixture
def run(tmp_path: Path, pictures: Path, upstream: FakeUpstream) -> Run:
    upstream.models.append("o1-pro")
    env = {
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": upstream.base_url,
        "IMAGECHAT_STATE_DIR": str(tmp_path / "state"),
        "IMAGECHAT_ALLOWED_DIRS": str(pictures),
        "IMAGECHAT_MAX_RETRIES": "0",
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "COLUMNS": "200",  # argparse wraps --help to the terminal width
    }

    def run(*args: str, stdin: bytes = b"") -> Done:
        done = subprocess.run(
            [sys.executable, "-m", "server", *args], cwd=ROOT, env=env, input=stdin, capture_output=True, timeout=60
        )
        return Done(done.returncode, done.stdout.decode(), done.stderr.decode())

    return run


def test_ask_prints_the_answer_and_a_conversation_continues_across_invocations(
    run: Run, pictures: Path, upstream: FakeUpstream
) -> None:
    upstream.add_reply(Reply(text="A red test card."))
    upstream.add_reply(Reply(text="Red, mostly."))
    first = run(
        "ask", str(pictures / "red.png"), "--prompt", "Describe it", "--preset", "describe", "--model", "gpt-4o",
        "--detail", "low", "--conversation", "cards", "--json",
    )  # fmt: skip
    second = run("ask", "--prompt", "And the colour?", "--conversation", "cards")

    assert first.returncode == 0 and first.stderr == ""
    result = json.loads(first.stdout)
    assert result["text"] == "A red test card." and result["conversation_id"] == "cards" and result["turn"] == 1
    assert (second.returncode, second.stdout, second.stderr) == (0, "Red, mostly.\n", "")
    bodies = upstream.responses_bodies()
    assert bodies[0]["model"] == "gpt-4o" and bodies[0]["instructions"]
    image = user_content(bodies[0])[1]
    assert image["type"] == "input_image" and image["detail"] == "low"
    assert bodies[1]["previous_response_id"] == result["response_id"]  # the SQLite store carried it over


def test_ask_without_a_conversation_is_a_fresh_turn_each_time(run: Run, pictures: Path, upstream: FakeUpstream) -> None:
    one = json.loads(run("ask", str(pictures / "red.png"), "--prompt", "One", "--json").stdout)
    two = json.loads(run("ask", str(pictures / "red.png"), "--prompt", "Two", "--json").stdout)
    assert one["conversation_id"] != two["conversation_id"] and two["turn"] == 1
    assert all("previous_response_id" not in body for body in upstream.responses_bodies())


def test_ask_reads_an_image_from_stdin(run: Run, upstream: FakeUpstream) -> None:
    upstream.add_reply(Reply(text="A blue card."))
    done = run("ask", "-", "--prompt", "What is this?", stdin=images.png(20, 10, (0, 0, 255)))
    assert (done.returncode, done.stdout, done.stderr) == (0, "A blue card.\n", "")
    parts = user_content(upstream.responses_bodies()[0])
    assert [p["type"] for p in parts] == ["input_text", "input_image"]


def test_help_names_the_subcommands_and_exit_codes(run: Run) -> None:
    done = run("--help")
    assert done.returncode == 0 and "imagechat-mcp workflow FILE.json" in done.stdout
    assert "3 the model's server failed" in done.stdout


def test_bad_input_exits_2_and_sends_nothing(run: Run, pictures: Path, upstream: FakeUpstream) -> None:
    missing = run("ask", str(pictures / "nope.png"), "--prompt", "Hi")
    not_image = run("ask", "-", "--prompt", "Hi", stdin=b"hello")
    both = run("ask", "--prompt", "Hi", "--preset", "describe", "--instructions", "Be brief.")

    assert missing.returncode == 2 and missing.stdout == "" and "nope.png" in missing.stderr
    assert not_image.returncode == 2 and "stdin" in not_image.stderr
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert upstream.requests == []


def test_upstream_failure_exits_3(run: Run, pictures: Path, upstream: FakeUpstream) -> None:
    upstream.fail(401, times=5)
    done = run("ask", str(pictures / "red.png"), "--prompt", "Hi")
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.startswith("imagechat-mcp: error: ") and "sk-test-key" not in done.stderr


def test_workflow_runs_the_template_with_one_command(run: Run, pictures: Path, upstream: FakeUpstream) -> None:
    inputs = pictures / "input"
    inputs.mkdir()
    (inputs / "example.png").write_bytes(images.png(64, 48))
    upstream.add_reply(Reply(text="a red test card, studio light"))
    upstream.add_reply(Reply(text="again"))
    done = run("workflow", str(FIXTURE), "--input-dir", str(inputs))
    as_json = run("workflow", str(FIXTURE), "--input-dir", str(inputs), "--json")

    assert (done.returncode, done.stdout, done.stderr) == (0, "a red test card, studio light\n", "")
    result = json.loads(as_json.stdout)
    assert result["previews"] == {"2": "again"} and result["chats"]["3"]["conversation_id"].endswith(":node3")
    body = upstream.responses_bodies()[0]
    assert body["model"] == "o1-pro" and body["max_output_tokens"] == 4096 and body["truncation"] == "auto"
    assert user_content(body)[0]["text"] == "Describe this image"


def test_workflow_refusals_exit_2_naming_the_node(
    run: Run, tmp_path: Path, pictures: Path, upstream: FakeUpstream
) -> None:
    workflow = json.loads((ROOT / FIXTURE).read_text(encoding="utf-8"))
    workflow["nodes"].append({"id": 40, "type": "SaveImage", "mode": 0, "inputs": [], "outputs": []})
    (tmp_path / "flow.json").write_text(json.dumps(workflow), encoding="utf-8")
    unsupported = run("workflow", str(tmp_path / "flow.json"), "--input-dir", str(pictures))
    missing = run("workflow", str(FIXTURE), "--input-dir", str(pictures))  # no example.png there

    assert unsupported.returncode == 2 and unsupported.stdout == ""
    assert "node 40 (SaveImage)" in unsupported.stderr
    assert missing.returncode == 2 and "node 5 (LoadImage): 'example.png' is not in the input folder" in missing.stderr
    assert upstream.requests == []
