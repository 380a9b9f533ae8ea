"""The wheel ships only packages that import nothing it leaves out (tests and benchmarks stay in the checkout)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def shipped() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages: list[str] = config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return packages


def imported_tops(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            tops.add(node.module.split(".")[0])
    return tops


def test_the_wheel_ships_no_package_that_imports_one_it_leaves_out() -> None:
    packages = shipped()
    local = {path.name for path in ROOT.iterdir() if (path / "__init__.py").exists()}
    assert {"server", "tools", "prompts"} <= set(packages)
    assert "tests" not in packages  # a top-level `tests` in site-packages collides with everyone else's
    left_out = local - set(packages)
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            wrong = imported_tops(path) & left_out
            assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}, which the wheel does not ship"


def test_the_console_script_lives_in_a_shipped_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = config["project"]["scripts"]["imagechat-mcp"]
    assert target.split(".")[0] in shipped()
