"""The README's first two commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0].strip() for block in readme.split("```sh\n")[1:3]]
    serve, test = blocks
    assert "imagechat-mcp" in serve and "pip install" in serve
    assert test in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
