"""The app's pure parts: the view of a conversation, its text, re-running a turn, removing a pending attachment."""

from __future__ import annotations

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from tools.conversation_view import Running, build_view, cost_of, referenced, rerun_of, view_text
from tools.models import Conversation, FileRecord, ImageRecord, Options, Turn, Usage
from tools.pending import remove_pending


def conversation() -> Conversation:
    usage = Usage(input_tokens=1000, output_tokens=500, total_tokens=1500)
    return Conversation(
        id="c",
        options=Options(model="gpt-4.1-mini", instructions="Be brief.", detail="high"),
        turns=[
            Turn(
                turn=1, parent=None, prompt="Describe", images=["img_a"], output="A cat.", model="gpt-4.1", usage=usage
            ),
            Turn(turn=2, parent=1, prompt="Colour?", output="Grey.", model="gpt-4.1", usage=usage),
            Turn(turn=3, parent=1, prompt="Breed?", files=["file_f"], output="Tabby.", model="local-llava"),
            Turn(turn=4, parent=3, prompt="Age?", status="running", model="gpt-4.1"),
        ],
        pending_images=["img_b"],
        pending_files=["file_g"],
    )


def records() -> tuple[dict[str, ImageRecord], dict[str, FileRecord]]:
    images = {
        "img_a": ImageRecord(
            image_id="img_a", width=640, height=480, format="JPEG", mime="image/jpeg", bytes=9, name="cat.jpg"
        ),
    }
    files = {"file_f": FileRecord(file_id="file_f", name="notes.txt", mime="text/plain", bytes=12)}
    return images, files


def test_the_view_marks_branches_running_turns_and_costs() -> None:
    images, files = records()
    view = build_view(conversation(), images, files, {4: Running(deltas=7, elapsed=3.2, text="About two")})
    assert [(t.turn, t.parent, t.branched) for t in view.turns] == [
        (1, None, False),
        (2, 1, False),
        (3, 1, True),
        (4, 3, False),
    ]
    running = view.turns[3]
    assert running.progress == "receiving answer: 7 tokens so far (3 s)" and running.output == "About two"
    assert view.running is True and view.turns[0].progress is None
    # gpt-4.1 lists at $2 in / $8 out per million tokens; an unknown model has no price.
    assert view.turns[0].cost_usd == pytest.approx(0.006) and view.turns[2].cost_usd is None
    assert view.total_cost_usd == pytest.approx(0.012)
    assert set(view.images) == {"img_a"} and set(view.files) == {"file_f"}


def test_a_running_turn_of_another_process_says_so() -> None:
    view = build_view(conversation(), {}, {}, {})
    assert view.turns[3].progress is not None and "started elsewhere" in view.turns[3].progress


def test_the_text_says_what_the_app_shows() -> None:
    images, files = records()
    text = view_text(build_view(conversation(), images, files, {4: Running(deltas=0, elapsed=1.0, text="")}))
    assert "Model gpt-4.1-mini, detail high" in text and "Instructions: Be brief." in text
    assert "Waiting for the next turn: img_b; file_g" in text
    assert "## Turn 3 (local-llava, completed, continued from turn 1)" in text
    assert "Sent with: cat.jpg (640x480 JPEG)" in text and "Sent with: notes.txt (12 bytes)" in text
    assert "Status: waiting for the model (1 s)" in text and "(no answer yet)" in text
    assert "1000 in / 500 out tokens, $0.006000" in text


def test_cost_needs_usage_and_a_known_model() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert cost_of("gpt-4o-2024-08-06", usage) == pytest.approx(2.5)
    assert cost_of("gpt-4o", None) is None and cost_of("mystery", usage) is None


def test_referenced_names_each_attachment_once() -> None:
    convo = conversation()
    convo.turns[1].images = ["img_a"]
    assert referenced(convo) == (["img_a", "img_b"], ["file_f", "file_g"])


def test_a_rerun_asks_again_from_the_same_point() -> None:
    convo = conversation()
    first, third = rerun_of(convo, 1), rerun_of(convo, 3)
    assert (first.prompt, first.images, first.starting_point) == ("Describe", ["img_a"], "start")
    assert (third.prompt, third.files, third.starting_point) == ("Breed?", ["file_f"], 1)
    with pytest.raises(ToolError, match="still running"):
        rerun_of(convo, 4)
    with pytest.raises(ToolError, match=r"no turn 9 \(turns: 1, 2, 3, 4\)"):
        rerun_of(convo, 9)


def test_removing_a_pending_attachment_leaves_the_rest() -> None:
    convo = conversation()
    convo.pending_images = ["img_b", "img_c"]
    assert remove_pending(convo, "image://img_b") == "image"
    assert remove_pending(convo, " file_g ") == "file"
    assert convo.pending_images == ["img_c"] and convo.pending_files == []
    assert convo.turns[0].images == ["img_a"]
    with pytest.raises(ToolError, match=r"'img_a' is not waiting .*pending: img_c"):
        remove_pending(convo, "img_a")
