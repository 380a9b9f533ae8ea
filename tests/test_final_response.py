"""The stream's final response is read as plain JSON (no model built for it): the reply must be what the SDK's
own Response model says, for every shape of answer (several messages and parts, reasoning, refusals, usage
details, an incomplete or failed answer)."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import Response

from server.upstream_responses import reply_of
from tools.ports import UpstreamFailure


def response(status: str = "completed", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": "gpt-5-2025-08-07",
        "status": status,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "output": [
            {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "not the answer"}]},
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "A red ", "annotations": []},
                    {"type": "refusal", "refusal": "not this"},
                    {"type": "output_text", "text": "square.", "annotations": []},
                ],
            },
            {
                "id": "msg_2",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": " Second.", "annotations": []}],
            },
        ],
        "usage": {
            "input_tokens": 120,
            "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 12},
            "total_tokens": 150,
        },
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "body",
    [
        response(),
        response("incomplete", incomplete_details={"reason": "max_output_tokens"}),
        response(output=[], usage=None),
        response(model="", output=[]),
    ],
)
def test_the_reply_read_from_plain_json_is_the_one_the_sdk_model_gives(body: dict[str, Any]) -> None:
    model = Response.model_validate(body)
    plain = reply_of(body, model="asked-for", background=False, streamed_text="streamed")
    built = reply_of(model, model="asked-for", background=False, streamed_text="streamed")
    assert plain == built
    if body["output"]:
        assert plain is not None and plain.text == "A red square. Second."


def test_a_failed_response_says_the_model_s_reason_either_way() -> None:
    body = response("failed", error={"code": "server_error", "message": "overloaded"})
    for final in (body, Response.model_validate(body)):
        with pytest.raises(UpstreamFailure, match="overloaded"):
            reply_of(final, model="m", background=False)
