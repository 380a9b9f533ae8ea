"""On CI (CI=true) a skipped test fails the run and is named; elsewhere a skip stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run_pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    # Without the installed plugins (asyncio, hypothesis, timeout): only the hook under test, and a fast start.
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_probe.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_skip_fails_on_ci_and_names_the_test(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n\n\ndef test_runs():\n    pass\n\n\n"
        "@pytest.mark.skip(reason='no browser here')\ndef test_needs_a_browser():\n    pass\n",
        encoding="utf-8",
    )
    on_ci = run_pytest(tmp_path, "true")
    laptop = run_pytest(tmp_path, None)
    assert on_ci.returncode == 1, on_ci.stdout
    assert "test_probe.py::test_needs_a_browser" in on_ci.stdout and "skipped tests fail on CI" in on_ci.stdout
    assert laptop.returncode == 0, laptop.stdout
    assert "1 passed, 1 skipped" in laptop.stdout


def test_a_clean_run_on_ci_passes(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "test_probe.py").write_text("def test_runs():\n    pass\n", encoding="utf-8")
    result = run_pytest(tmp_path, "true")
    assert result.returncode == 0, result.stdout
