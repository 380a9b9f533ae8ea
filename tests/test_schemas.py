"""The tool surface is an API: a schema change fails here until the snapshot is regenerated on purpose.

Regenerate with: UPDATE_SNAPSHOTS=1 pytest tests/test_schemas.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from server.settings import Settings
from tests.conftest import connect

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"


async def test_tool_schemas_match_the_snapshot(settings: Settings) -> None:
    async with connect(settings) as client:
        tools = (await client.list_tools()).tools
    current = {
        tool.name: {
            "title": tool.title,
            "input_schema": tool.input_schema,
            "output_schema": tool.output_schema,
            "annotations": tool.annotations.model_dump(mode="json", exclude_none=True) if tool.annotations else None,
        }
        for tool in sorted(tools, key=lambda t: t.name)
    }
    text = json.dumps(current, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert json.loads(SNAPSHOT.read_text(encoding="utf-8")) == current, (
        "A tool schema changed. If on purpose, regenerate: UPDATE_SNAPSHOTS=1 pytest tests/test_schemas.py"
    )
