"""Every argument, limit and default is declared once: these fail when a second copy drifts from the first."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from server import cli
from server import settings as settings_module
from server.app import limits_of
from server.settings import DEFAULTS, SPECS, Settings
from server.sources import SafeSourceReader as SafeReader
from tests.conftest import connect
from tools import options
from tools.deps import Limits
from tools.models import Options


def test_every_setting_is_a_settings_field_with_the_tables_default() -> None:
    fields = {item.name: item.default for item in dataclasses.fields(Settings)}
    assert set(fields) - {"api_key", "given"} == {spec.name for spec in SPECS}
    nothing_set = settings_module.parse([], {})
    for spec in SPECS:
        assert fields[spec.name] == spec.default, spec.name
        assert getattr(nothing_set, spec.name) == spec.default, spec.name
    assert nothing_set.given == frozenset()


def test_the_steps_limits_are_the_settings_of_the_same_name() -> None:
    configurable = [item.name for item in dataclasses.fields(Limits) if item.default is dataclasses.MISSING]
    assert configurable and set(configurable) <= set(DEFAULTS)  # Limits has no defaults of its own for them
    defaults = limits_of(settings_module.parse([], {}))
    changed = limits_of(settings_module.parse([], {"IMAGECHAT_MAX_FRAMES": "3", "IMAGECHAT_MAX_PIXELS": "1000"}))
    assert all(getattr(defaults, name) == DEFAULTS[name] for name in configurable)
    assert (changed.max_frames, changed.max_pixels) == (3, 1000)


def test_the_source_readers_own_defaults_agree_with_the_table() -> None:
    # make_deps always passes these; the reader's defaults matter to code that builds one directly.
    parameters = inspect.signature(SafeReader).parameters
    assert parameters["allow_hidden"].default == DEFAULTS["allow_hidden"]
    assert parameters["allow_http"].default == DEFAULTS["allow_http"]
    assert parameters["max_bytes"].default == max(DEFAULTS["max_image_bytes"], DEFAULTS["max_file_bytes"])


def test_settings_tell_a_value_given_from_a_default(tmp_path: Path) -> None:
    # The same value as the default, set on purpose, is still "given": a script must not override it.
    given = settings_module.parse(["--port", "8000"], {"IMAGECHAT_WAIT_SECONDS": "50", "OPENAI_API_KEY": "sk-x"})
    assert given.given == frozenset({"port", "wait_seconds"})
    assert given.port == DEFAULTS["port"] and given.wait_seconds == DEFAULTS["wait_seconds"]


@pytest.mark.parametrize(
    ("environ", "expected"), [({}, cli.SCRIPT_WAIT_SECONDS), ({"IMAGECHAT_WAIT_SECONDS": "50"}, 50)]
)
def test_a_script_waits_longer_unless_the_wait_was_set(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: float
) -> None:
    monkeypatch.delenv("IMAGECHAT_WAIT_SECONDS", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    args = cli.ask_parser().parse_args(["--prompt", "Describe"])
    assert cli.script_settings(args).wait_seconds == expected


async def test_set_options_schema_is_generated_from_the_option_declarations(settings: Settings) -> None:
    async with connect(settings) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    properties: dict[str, Any] = tools["set_options"].input_schema["properties"]
    assert list(properties) == ["conversation_id", *(name for name, _, _ in options.arguments())]
    bounded = {name: options.bounds(declared) for name, declared, _ in options.arguments()}
    for name, limits in bounded.items():
        if limits is not None:
            # tools/list writes an optional argument as its own type (server.listing): the bounds sit on it.
            assert (properties[name]["minimum"], properties[name]["maximum"]) == limits
    assert {name for name, limits in bounded.items() if limits} == {"max_output_tokens", "temperature", "top_p"}
    assert properties["max_output_tokens"]["description"].endswith(
        f"Default {Options.model_fields['max_output_tokens'].default}."
    )
    for name in ("load_image", "attach_file", "preview", "run_workflow", "chat"):
        conversation = tools[name].input_schema["properties"].get("conversation_id")
        assert name == "run_workflow" or conversation == properties["conversation_id"], name


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_output_tokens": 15}, "max_output_tokens must be between 16 and 128000, not 15."),
        ({"max_output_tokens": 128_001}, "max_output_tokens must be between 16 and 128000, not 128001."),
        ({"temperature": 2.5}, "temperature must be between 0 and 2, not 2.5."),
        ({"top_p": -0.1}, "top_p must be between 0 and 1, not -0.1."),
    ],
)
def test_the_steps_range_checks_read_the_declared_bounds(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolError) as refused:
        options.check_ranges(options.OptionChanges(**changes))
    assert str(refused.value) == message
    options.check_ranges(options.OptionChanges(max_output_tokens=16, temperature=2, top_p=0))  # the bounds are in
