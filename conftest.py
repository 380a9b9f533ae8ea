"""Repository-wide pytest hook: on CI (CI=true) a skipped test fails the run.

Tests that need a browser, node or npm packages skip with a reason on a laptop without them; CI installs them
all (.ci/run), so a skip there means a missing install step, and a green run would hide it. This file sits at
the repository root so that pytest loads it however it is invoked.
"""

from __future__ import annotations

import os

import pytest


def skips_fail() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skipped_ids(reporter: object) -> list[str]:
    reports = getattr(reporter, "stats", {}).get("skipped", [])
    return sorted({str(getattr(report, "nodeid", "?")) for report in reports})


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if skips_fail() and skipped_ids(reporter) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = skipped_ids(terminalreporter)
    if skips_fail() and skipped:
        terminalreporter.section("skipped tests fail on CI", sep="=", red=True, bold=True)
        terminalreporter.line(f"CI is set, and {len(skipped)} test(s) were skipped; install what they need:")
        for nodeid in skipped:
            terminalreporter.line(f"  {nodeid}")
