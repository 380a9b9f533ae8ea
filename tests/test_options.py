"""set_options: defaults, presets, ranges and per-model refusals."""

from __future__ import annotations

from server.settings import Settings
from tests.conftest import connect
from tests.fake_upstream import FakeUpstream
from tests.helpers import call, fails


async def test_defaults_are_the_seeds(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        result = await call(client, "set_options", {})
    options = result["options"]
    assert options["truncation"] == "auto" and options["max_output_tokens"] == 4096
    assert options["model"] == settings.model and options["detail"] == "auto"
    assert options["instructions"] is None


async def test_only_the_given_arguments_change(settings: Settings, upstream: FakeUpstream, mode: str) -> None:
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"instructions": "Answer in French.", "max_output_tokens": 500})
        result = await call(client, "set_options", {"temperature": 0.2, "truncation": "disabled"})
        await call(client, "chat", {"prompt": "Bonjour", "images": []})
    assert result["options"]["instructions"] == "Answer in French."
    assert result["options"]["max_output_tokens"] == 500 and result["options"]["temperature"] == 0.2
    body = upstream.responses_bodies()[-1]
    assert (body["instructions"], body["max_output_tokens"], body["temperature"], body["truncation"]) == (
        "Answer in French.",
        500,
        0.2,
        "disabled",
    )


async def test_reset_and_clearing_instructions(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"preset": "describe", "max_output_tokens": 100})
        cleared = await call(client, "set_options", {"instructions": ""})
        reset = await call(client, "set_options", {"reset": True})
    assert cleared["options"]["instructions"] is None and cleared["options"]["preset"] is None
    assert cleared["options"]["max_output_tokens"] == 100
    assert reset["options"]["max_output_tokens"] == 4096


async def test_unknown_preset_names_the_known_ones(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        message = await fails(client, "set_options", {"preset": "poetry"})
    assert "Unknown preset 'poetry'" in message
    for name in ("image-to-prompt", "describe", "extract-text", "compare"):
        assert name in message


async def test_values_out_of_range_are_refused(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        assert "max_output_tokens" in await fails(client, "set_options", {"max_output_tokens": 5})
        assert "temperature" in await fails(client, "set_options", {"temperature": 3})
        assert "truncation" in await fails(client, "set_options", {"truncation": "sometimes"})
        unchanged = await call(client, "set_options", {})
    assert unchanged["options"]["max_output_tokens"] == 4096 and unchanged["options"]["temperature"] is None


async def test_reasoning_models_refuse_sampling_and_name_what_they_take(
    settings: Settings, upstream: FakeUpstream, mode: str
) -> None:
    upstream.models.append("llava:13b")  # a local model the upstream serves and the server has no rules for
    async with connect(settings, mode) as client:
        message = await fails(client, "set_options", {"model": "o3", "temperature": 0.5})
        effort = await fails(client, "set_options", {"model": "o3", "reasoning_effort": "minimal"})
        classic = await fails(client, "set_options", {"model": "gpt-4o", "reasoning_effort": "high"})
        ok = await call(client, "set_options", {"model": "gpt-5", "reasoning_effort": "minimal"})
        unknown = await call(
            client, "set_options", {"model": "llava:13b", "temperature": 0.1, "reasoning_effort": "high"}
        )
        after = await call(client, "set_options", {})
    assert "o3" in message and "temperature" in message and "Nothing was changed" in message
    assert "low, medium, high" in effort
    assert "does not take reasoning_effort" in classic
    assert ok["options"]["reasoning_effort"] == "minimal"
    assert unknown["options"]["temperature"] == 0.1  # a model we do not know decides for itself
    assert after["options"]["model"] == "llava:13b"


async def test_switching_model_drops_what_the_new_one_cannot_take(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        await call(client, "set_options", {"model": "gpt-4o", "temperature": 0.3})
        switched = await call(client, "set_options", {"model": "o4-mini"})
    assert switched["options"]["temperature"] is None
    assert switched["notes"] == ["temperature dropped: o4-mini does not take it."]


async def test_detail_original_only_where_the_model_takes_it(settings: Settings, mode: str) -> None:
    async with connect(settings, mode) as client:
        refused = await fails(client, "set_options", {"model": "gpt-4o", "detail": "original"})
        ok = await call(client, "set_options", {"model": "gpt-5.4", "detail": "original"})
        switched = await call(client, "set_options", {"model": "gpt-4o"})
    assert "gpt-4o takes detail auto, low, high, not 'original'" in refused
    assert ok["options"]["detail"] == "original"
    assert switched["options"]["detail"] == "auto" and "detail 'original' replaced" in switched["notes"][0]
