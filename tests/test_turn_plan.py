"""Planning a chat turn and building its request, tested directly: no server, no upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from server.app import limits_of
from server.settings import Settings
from server.stores.memory import MemoryStore
from tests import images
from tools.deps import Deps
from tools.models import Conversation, FileRecord, ImageRecord, Options, Turn, TurnStatus
from tools.plan import ChatCall, StartingPoint, TurnPlan, choose_parent, plan_turn
from tools.ports import ChatReply, ChatRequest, FilePart, ImagePart, Listener, SourceData, TextPart
from tools.request import build_request, compose


def turn(number: int, status: TurnStatus = "completed", parent: int | None = None, **fields: Any) -> Turn:
    return Turn(
        turn=number, parent=parent, prompt=f"question {number}", output=f"answer {number}", status=status, **fields
    )


def conversation(*turns: Turn, **fields: Any) -> Conversation:
    return Conversation(id="cats", options=Options(model="gpt-4.1-mini"), turns=list(turns), **fields)


def plan(conv: Conversation, max_images: int = 64, **asked: Any) -> TurnPlan:
    return plan_turn(conv, ChatCall(prompt=asked.pop("prompt", "What is this?"), **asked), max_images=max_images)


# -- which turn a new turn continues from ----------------------------------------------------------------------


def test_a_turn_continues_from_the_last_finished_turn() -> None:
    conv = conversation(turn(1), turn(2, "incomplete", 1), turn(3, "failed", 2), turn(4, "running", 2))
    assert choose_parent(conv, True, None) == 2


def test_the_first_turn_has_no_parent() -> None:
    assert choose_parent(conversation(), True, None) is None


@pytest.mark.parametrize("point", ["start", 1, "1"])
def test_a_stand_alone_turn_has_no_parent_whatever_the_starting_point(point: StartingPoint) -> None:
    conv = conversation(turn(1), turn(2, parent=1))
    assert choose_parent(conv, False, point) is None


def test_start_begins_afresh_even_with_turns_behind() -> None:
    assert choose_parent(conversation(turn(1), turn(2, parent=1)), True, "start") is None


@pytest.mark.parametrize("point", [1, "1", " 1 "])
def test_an_earlier_turn_number_rewinds_to_it(point: StartingPoint) -> None:
    assert choose_parent(conversation(turn(1), turn(2, parent=1)), True, point) == 1


def test_a_failed_turn_cannot_be_continued_and_the_message_lists_the_finished_ones() -> None:
    conv = conversation(turn(1), turn(2, "failed", 1), turn(3, parent=1))
    with pytest.raises(ToolError) as caught:
        choose_parent(conv, True, 2)
    assert str(caught.value) == (
        "starting_point 2 is not a finished turn of 'cats' (turns 1, 3). "
        "Use one of those turn numbers, or 'start' to begin afresh."
    )


def test_an_unknown_turn_says_there_are_no_finished_turns_yet() -> None:
    with pytest.raises(ToolError) as caught:
        choose_parent(conversation(turn(1, "running")), True, "7")
    assert str(caught.value) == (
        "starting_point 7 is not a finished turn of 'cats' (no finished turns yet). "
        "Use one of those turn numbers, or 'start' to begin afresh."
    )


def test_a_starting_point_that_is_neither_a_number_nor_start_is_refused_by_name() -> None:
    with pytest.raises(ToolError, match=r"starting_point 'latest' is not a finished turn of 'cats' \(turns 1\)"):
        choose_parent(conversation(turn(1)), True, "latest")


# -- attachments -----------------------------------------------------------------------------------------------


def test_by_default_a_turn_sends_and_uses_up_the_pending_attachments() -> None:
    planned = plan(conversation(pending_images=["img_a", "img_b"], pending_files=["file_a"]))
    assert (planned.images, planned.files, planned.takes_pending) == (["img_a", "img_b"], ["file_a"], (True, True))


def test_named_attachments_are_sent_instead_and_the_pending_ones_are_kept() -> None:
    conv = conversation(pending_images=["img_a"], pending_files=["file_a"])
    planned = plan(conv, images=["image://img_b", " img_c "], files=[])
    assert (planned.images, planned.files, planned.takes_pending) == (["img_b", "img_c"], [], (False, False))


def test_an_empty_image_id_is_refused() -> None:
    with pytest.raises(ToolError, match=r"^images contains an empty id\.$"):
        plan(conversation(), images=["img_a", "image://"])


def test_more_images_than_the_limit_are_refused_with_the_limit() -> None:
    with pytest.raises(ToolError, match=r"^3 images in one turn; the limit is 2\.$"):
        plan(conversation(pending_images=["a", "b", "c"]), max_images=2)


# -- options ---------------------------------------------------------------------------------------------------


def test_a_model_for_one_turn_drops_what_it_cannot_take_and_says_so() -> None:
    conv = conversation()
    conv.options = conv.options.model_copy(update={"temperature": 0.5, "instructions": "Be brief."})
    planned = plan(conv, model=" o3 ", images=[])
    assert planned.options.model == "o3" and planned.options.temperature is None
    assert planned.options.instructions == "Be brief."
    assert planned.notes == ["temperature dropped: o3 does not take it."]
    assert conv.options.model == "gpt-4.1-mini" and conv.options.temperature == 0.5  # for this turn only


@pytest.mark.parametrize("model", [None, "", "  ", "gpt-4.1-mini"])
def test_no_model_or_the_same_model_keeps_the_conversation_options(model: str | None) -> None:
    conv = conversation()
    conv.options = conv.options.model_copy(update={"temperature": 0.5})
    planned = plan(conv, model=model, images=[])
    assert planned.options == conv.options and planned.notes == []


# -- history ---------------------------------------------------------------------------------------------------


def test_a_stored_last_response_is_chained_not_replayed() -> None:
    conv = conversation(
        turn(1, stored=True, response_id="resp_1"), turn(2, parent=1, stored=True, response_id="resp_2")
    )
    planned = plan(conv)
    assert planned.parent == 2 and planned.previous_response_id == "resp_2"
    assert planned.replayed_history == []
    replayed = planned.replayed()
    assert replayed.previous_response_id is None
    assert [t.turn for t in replayed.replayed_history] == [1, 2]


def test_a_response_the_upstream_did_not_store_means_the_history_is_replayed() -> None:
    planned = plan(conversation(turn(1, response_id="resp_1"), turn(2, parent=1, response_id="resp_2")))
    assert planned.previous_response_id is None
    assert [t.prompt for t in planned.replayed_history] == ["question 1", "question 2"]


def test_a_rewind_replays_only_the_turns_leading_to_it() -> None:
    conv = conversation(turn(1), turn(2, parent=1), turn(3, parent=2), turn(4, parent=1))
    assert [t.turn for t in plan(conv, starting_point=4).replayed_history] == [1, 4]


def test_a_stand_alone_turn_sends_no_history() -> None:
    planned = plan(conversation(turn(1, stored=True, response_id="resp_1")), persist_context=False, images=[])
    assert (planned.parent, planned.previous_response_id, planned.history) == (None, None, [])


def test_the_draft_is_what_preview_shows_while_the_turn_runs() -> None:
    conv = conversation(turn(1), pending_images=["img_a"])
    conv.options = conv.options.model_copy(update={"instructions": "Be brief."})
    draft = plan(conv, prompt="And now?").draft(conv.next_number())
    assert (draft.turn, draft.parent, draft.prompt, draft.images, draft.status) == (
        2,
        1,
        "And now?",
        ["img_a"],
        "running",
    )
    assert (draft.model, draft.instructions, draft.output) == ("gpt-4.1-mini", "Be brief.", "")


# -- building the request --------------------------------------------------------------------------------------


def test_a_user_message_is_the_text_then_the_images_then_the_files() -> None:
    image = ImagePart("img_a", "image/png", b"png", "auto", 4, 4, 85)
    document = FilePart("file_a", "notes.txt", "text/plain", b"notes")
    message = compose("Compare them", [image], [document])
    assert message.role == "user"
    assert message.parts == [TextPart("Compare them"), image, document]


class NoSources:
    """Building a request reads nothing from outside: every way in fails the test."""

    @property
    def allowed_dirs(self) -> tuple[Path, ...]:
        return ()

    async def allowed_folder(self, folder: str, *, argument: str) -> Path:
        raise AssertionError("building a request reads nothing from outside")

    async def path_in(self, folder: Path, name: str) -> str:
        raise AssertionError("building a request reads nothing from outside")

    async def read(self, source: str, *, max_bytes: int | None = None, kind: str = "image") -> SourceData:
        raise AssertionError("building a request reads nothing from outside")


class NoUpstream:
    def render(self, request: ChatRequest) -> dict[str, Any]:
        raise AssertionError("not sent")

    async def send(self, request: ChatRequest, listener: Listener | None = None) -> ChatReply:
        raise AssertionError("not sent")

    async def retrieve(self, response_id: str) -> ChatReply | None:
        raise AssertionError("not sent")

    async def cancel(self, response_id: str) -> None:
        raise AssertionError("not sent")

    async def list_models(self) -> list[str]:
        return []

    async def close(self) -> None:
        return None


@pytest.fixture
def deps() -> Iterator[Deps]:
    yield Deps(
        store=MemoryStore(),
        reader=NoSources(),
        upstream=NoUpstream(),
        default_model="gpt-4.1-mini",
        presets={},
        limits=limits_of(Settings()),
        wait_seconds=Settings().wait_seconds,
    )


async def stored(deps: Deps) -> None:
    data = images.png(64, 48)
    await deps.store.put_image(
        ImageRecord(image_id="img_a", width=64, height=48, format="PNG", mime="image/png", bytes=len(data)), data
    )
    await deps.store.put_file(FileRecord(file_id="file_a", name="notes.txt", mime="text/plain", bytes=5), b"notes")


async def test_the_request_replays_each_turn_with_its_attachments_then_asks(deps: Deps) -> None:
    await stored(deps)
    conv = conversation(turn(1, images=["img_a"], response_id="resp_1"), pending_files=["file_a"])
    request = await build_request(deps, plan(conv, prompt="And the notes?"))
    roles = [m.role for m in request.messages]
    kinds = [[part.type for part in m.parts] for m in request.messages]
    assert request.previous_response_id is None
    assert roles == ["user", "assistant", "user"]
    assert kinds == [["text", "image"], ["text"], ["text", "file"]]
    assert request.messages[1].parts == [TextPart("answer 1")]
    assert request.messages[2].parts[0] == TextPart("And the notes?")


async def test_a_chained_request_sends_only_the_new_message(deps: Deps) -> None:
    await stored(deps)
    conv = conversation(turn(1, stored=True, response_id="resp_1"), pending_images=["img_a"], pending_files=["file_a"])
    request = await build_request(deps, plan(conv))
    assert request.previous_response_id == "resp_1"
    assert [[part.type for part in m.parts] for m in request.messages] == [["text", "image", "file"]]


async def test_a_missing_image_is_named_before_anything_is_sent(deps: Deps) -> None:
    with pytest.raises(ToolError, match=r"No image with id 'img_gone' is loaded\. Call load_image first"):
        await build_request(deps, plan(conversation(), images=["img_gone"]))


def test_the_plan_is_pure_the_conversation_is_not_changed() -> None:
    conv = conversation(turn(1), pending_images=["img_a"], pending_files=["file_a"])
    before = conv.model_dump()
    plan(conv, model="o3", starting_point=1)
    assert conv.model_dump() == before
