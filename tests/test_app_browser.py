"""The conversation app in a real browser: headless Chromium (Debian's package) driven by Playwright, a host page
built on the official @modelcontextprotocol/ext-apps AppBridge, and the real server over streamable HTTP.

Skipped, with the reason, where Chromium, node or the test host's npm packages are missing; CI installs them all
(.ci/run) and fails on any skip (conftest.py at the repository root). The screenshot for the README is rewritten
with UPDATE_SCREENSHOT=1.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from PIL import Image, ImageStat

from tests.fake_upstream import FakeUpstream, Reply
from tests.helpers import call, user_content

ROOT = Path(__file__).parent.parent
HOST_DIR = Path(__file__).parent / "app_host"
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = ROOT / "docs" / "app.png"
XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2;alert(2)">'
FIRST_ANSWER = (
    f"## Cards\n**Red** and blue cards.\n\n{XSS}\n\n- one red\n- one blue\n\n```\nsize <b>64</b>\n```\n> a `quote`"
)
APP_TOOLS = {"app_images", "app_chat", "app_rerun", "app_set_options", "app_remove_attachment"}
STREAMED = " ".join(f"word{i}" for i in range(14))


def missing() -> str | None:
    if not CHROMIUM.exists():
        return "Chromium is not at /usr/bin/chromium (Debian: apt-get install chromium)"
    if shutil.which("node") is None:
        return "node is not installed (it bundles the test host)"
    if not (HOST_DIR / "node_modules" / "@modelcontextprotocol" / "ext-apps").is_dir():
        return "the test host's npm packages are missing: npm ci --prefix tests/app_host"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed: pip install -e '.[test]'"
    return None


pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The host page's script: AppBridge and the MCP client from the pinned npm packages, bundled now."""
    out = tmp_path_factory.mktemp("host") / "host.js"
    subprocess.run(["node", "build.mjs", str(out)], cwd=HOST_DIR, check=True, timeout=60)
    return out


@pytest.fixture
def served(tmp_path: Path, pictures: Path, upstream: FakeUpstream, bundle: Path) -> Iterator[str]:
    port = free_port()
    args = ["--port", str(port), "--bundle", str(bundle), "--upstream", upstream.base_url]
    args += ["--state-dir", str(tmp_path / "state"), "--allowed", str(pictures)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IMAGECHAT_"))}
    process = subprocess.Popen([sys.executable, "-m", "tests.app_host.serve", *args], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        assert process.poll() is None, "the test server exited"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def prepare(base: str, pictures: Path) -> dict[str, Any]:
    """Two finished turns, the second after the first, and one image waiting for the next turn."""
    async with Client(f"{base}/mcp", mode="legacy") as client:
        await call(client, "load_image", {"source": [str(pictures / "red.png"), str(pictures / "blue.jpg")]})
        first = await call(client, "chat", {"prompt": "What are these?"})
        await call(client, "chat", {"prompt": "Which is warmer?"})
        await call(client, "load_image", {"source": str(pictures / "anim.gif")})
    return first


async def turns(base: str) -> list[dict[str, Any]]:
    async with Client(f"{base}/mcp", mode="legacy") as client:
        result = await call(client, "show_conversation", {})
    return list(result["turns"])


def not_blank(path: Path) -> None:
    with Image.open(path) as shot:
        rgb = shot.convert("RGB")
        spread = ImageStat.Stat(rgb).stddev
        colours = rgb.getcolors(maxcolors=1 << 16)
    assert min(spread) > 10, f"the screenshot looks blank (channel spread {spread})"
    assert colours is None or len(colours) > 50


@pytest.mark.timeout(180)
@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_a_person_sees_and_steers_the_conversation_in_a_browser(
    served: str, pictures: Path, upstream: FakeUpstream, tmp_path: Path, era: str
) -> None:
    from playwright.sync_api import Dialog, expect, sync_playwright

    upstream.add_reply(Reply(text=FIRST_ANSWER))
    upstream.add_reply(Reply(text="The red one."))
    upstream.add_reply(Reply(text=STREAMED, chunks=14, chunk_delay=0.3))
    first = anyio.run(prepare, served, pictures)

    console: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 860, "height": 1000})
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("request", lambda request: requests.append(request.url))

        def on_dialog(dialog: Dialog) -> None:  # an alert() would mean the model's script ran
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(f"{served}/?era={era}")
        page.wait_for_function("window.host && (window.host.ready || window.host.errors.length > 0)")
        host = page.evaluate("window.host")
        assert host["errors"] == [] and host["ready"]
        assert host["era"] == ("2026-07-28" if era == "modern" else "2025-11-25")
        assert host["mimeType"] == "text/html;profile=mcp-app" and "What are these?" in host["toolText"]
        assert "show_conversation" in host["modelTools"] and not any(t.startswith("app_") for t in host["modelTools"])
        assert set(host["appTools"]) == APP_TOOLS
        app = page.frame_locator("iframe#app")

        # The images of turn 1 as thumbnails, delivered as data through the host.
        thumbs = app.locator("article[data-turn='1'] img.thumb")
        expect(thumbs).to_have_count(2)
        for index in range(2):
            expect(thumbs.nth(index)).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
        # The answer, its markdown rendered, the model's HTML shown as text and never run.
        answer = app.locator("article[data-turn='1'] .answer")
        expect(answer.locator("strong")).to_have_text("Red")
        expect(answer.locator("li")).to_have_text(["one red", "one blue"])
        expect(answer.locator("h2")).to_have_text("Cards")
        expect(answer.locator("pre code")).to_have_text("size <b>64</b>")
        expect(answer.locator("blockquote code")).to_have_text("quote")
        expect(answer).to_contain_text(XSS)
        expect(app.locator(".answer script, .answer img")).to_have_count(0)
        frame = next(f for f in page.frames if f.parent_frame is not None)
        assert frame.evaluate("typeof window.pwned") == "undefined"
        expect(app.locator("article[data-turn='2'] .parent")).to_have_text("after turn 1")
        expect(app.locator("article[data-turn='1'] .usage")).to_contain_text("$")

        # Click a thumbnail for a larger one.
        thumbs.first.click()
        expect(app.locator("#overlay.open img")).to_have_attribute("src", re.compile(r"^data:image/"))
        app.locator("#overlay").click()
        expect(app.locator("#overlay.open")).to_have_count(0)

        # Options: change the detail from the app.
        app.locator("#options-toggle").click()
        app.locator("#opt-detail").select_option("low")
        app.locator("#options-apply").click()
        expect(app.locator("#summary")).to_contain_text("detail low")

        # Take the waiting image off the next turn.
        expect(app.locator("#pending [data-pending]")).to_have_count(1)
        app.locator("#pending button.remove").click()
        expect(app.locator("#pending")).to_be_hidden()

        # Rewind to turn 1 and ask: the new turn runs, its progress moves, and it continues from turn 1.
        app.locator("article[data-turn='1'] button.rewind").click()
        expect(app.locator("#rewind-chip")).to_contain_text("Continuing from turn 1")
        app.locator("#prompt").fill("Once more, from the first answer")
        app.locator("#send").click()
        progress = app.locator("article[data-turn='3'] .progress")
        expect(progress).to_contain_text("tokens so far", timeout=10_000)
        before = progress.inner_text()
        frame.wait_for_function(
            "before => { const p = document.querySelector(\"article[data-turn='3'] .progress\");"
            " return !p || p.textContent !== before; }",
            arg=before,
            timeout=10_000,
        )
        expect(app.locator("article[data-turn='3'] .badge.status-completed")).to_be_visible(timeout=20_000)
        expect(app.locator("article[data-turn='3'] .parent")).to_have_text("continued from turn 1")
        expect(app.locator("article[data-turn='3'] .answer")).to_contain_text("word13")
        expect(app.locator("article[data-turn='3'].branch")).to_have_count(1)

        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        not_blank(shot)
        if os.environ.get("UPDATE_SCREENSHOT") == "1" and era == "legacy":
            SCREENSHOT.parent.mkdir(exist_ok=True)
            with Image.open(shot) as image:  # a 64-colour palette keeps the README's picture small
                image.convert("RGB").quantize(64).save(SCREENSHOT, optimize=True)
        assert frame.evaluate("typeof window.pwned") == "undefined"
        browser.close()

    recorded = anyio.run(turns, served)
    assert [(t["turn"], t["parent"]) for t in recorded] == [(1, None), (2, 1), (3, 1)]
    assert recorded[2]["prompt"] == "Once more, from the first answer" and recorded[2]["images"] == []
    assert upstream.responses_bodies()[2]["previous_response_id"] == first["response_id"]
    assert [p["type"] for p in user_content(upstream.responses_bodies()[2])] == ["input_text"]
    # Nothing left the host's origin, nothing was refused by the CSP, no script of the model's ran.
    assert all(url.startswith(served) for url in requests), requests
    refused = [line for line in console if "Content Security Policy" in line or line.startswith("error")]
    assert refused == [] and dialogs == []
