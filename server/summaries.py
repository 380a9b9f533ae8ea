"""A tool result's text: a short summary for people and for clients that read only text.

The structured content carries everything; the text used to be a second, pretty-printed copy of it, so every result
was read twice. Now the text says what a caller acts on (the answer, the ids, the status, the next step) in a few
lines. A tool without a summary here gets its structured content as one line of compact JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

Summary = Callable[[Mapping[str, Any]], str]


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def waits(count: int) -> str:
    return "waits" if count == 1 else "wait"


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loaded(result: Mapping[str, Any]) -> str:
    images = result.get("images") or []
    shown = "; ".join(
        f"{image['image_id']} ({image['width']}x{image['height']} {image['format']}"
        + (f", {image['frames']} frames" if image.get("frames", 1) > 1 else "")
        + ")"
        for image in images
    )
    waiting = result.get("pending_images", 0)
    return (
        f"Loaded {plural(len(images), 'image')} into {result['conversation_id']!r}: {shown}. "
        f"{plural(waiting, 'image')} now {waits(waiting)} for the next chat turn: chat(prompt=...) sends "
        f"{'it' if waiting == 1 else 'them'}."
    )


def attached(result: Mapping[str, Any]) -> str:
    files = result.get("files") or [result["file"]]
    shown = "; ".join(f"{f['name']} ({f['file_id']}, {f['mime']}, {f['bytes']} bytes)" for f in files)
    waiting = result.get("pending_files", 0)
    return (
        f"Attached {plural(len(files), 'document')} to {result['conversation_id']!r}: {shown}. "
        f"{plural(waiting, 'file')} now {waits(waiting)} for the next chat turn."
    )


def options_set(result: Mapping[str, Any]) -> str:
    options = dict(result.get("options") or {})
    instructions = options.pop("instructions", None)
    said = ", ".join(f"{key}={value}" for key, value in options.items() if value is not None)
    lines = [f"Options of {result['conversation_id']!r}: {said}."]
    if instructions:
        lines.append(f"Instructions: {instructions}")
    lines += [f"Note: {note}" for note in result.get("notes") or []]
    return "\n".join(lines)


def chatted(result: Mapping[str, Any]) -> str:
    where = f"{result['conversation_id']!r}"
    status = result.get("status")
    if status == "dry_run":
        return dry_run(result)
    head = f"Turn {result.get('turn')} of {where} ({result.get('model')}, {status}"
    if result.get("parent") is not None:
        head += f", after turn {result['parent']}"
    usage = result.get("usage") or {}
    if usage:
        head += f"; {usage.get('input_tokens', 0)} tokens in, {usage.get('output_tokens', 0)} out"
    head += ")"
    lines = [head + ":"]
    if status == "running":
        lines = [head + f": still answering. Fetch it with chat(turn={result.get('turn')}, conversation_id={where})."]
        if result.get("text"):
            lines.append(f"So far: {result['text']}")
    elif status == "failed":
        lines.append(f"Failed: {result.get('error')}")
    else:
        lines.append(result.get("text") or "")
        if status == "incomplete":
            lines.append(f"(incomplete: {result.get('incomplete_reason')})")
    lines += sent_lines(result)
    lines += [f"Note: {note}" for note in result.get("notes") or []]
    return "\n".join(lines)


def sent_lines(result: Mapping[str, Any]) -> list[str]:
    sent = result.get("sent") or []
    return [
        f"Image {item['image_id']} sent at {item['width']}x{item['height']}, detail {item['detail']}, "
        f"about {item['tokens']} tokens."
        for item in sent
    ]


def dry_run(result: Mapping[str, Any]) -> str:
    tokens = result.get("estimated_input_tokens") or {}
    cost = result.get("estimated_cost_usd")
    priced = f"; about ${cost['input']:.4f} in, at most ${cost['output_max']:.4f} out" if cost else "; no price known"
    lines = [
        f"Dry run for {result['conversation_id']!r} ({result.get('model')}): about {tokens.get('total', 0)} input "
        f"tokens{priced}. Nothing was sent.",
        *[
            f"Image {image['image_id']} would go at {image['width']}x{image['height']}, detail {image['detail']}, "
            f"about {image['tokens']} tokens."
            for image in tokens.get("images") or []
        ],
        *[f"Note: {note}" for note in result.get("notes") or []],
        f"Request: {compact(result.get('request'))}",
    ]
    return "\n".join(lines)


def workflow_ran(result: Mapping[str, Any]) -> str:
    if result.get("estimate"):
        return workflow_dry_run(result)
    lines = [f"Workflow {result.get('workflow')!r} ({result.get('format')} format) ran."]
    for node, text in (result.get("previews") or {}).items():
        lines.append(f"PreviewAny {node}: {text}")
    for node, chat in (result.get("chats") or {}).items():
        lines.append(
            f"OpenAIChatNode {node}: turn {chat.get('turn')} of {chat.get('conversation_id')!r}, {chat.get('status')}."
        )
    for skipped in result.get("skipped") or []:
        lines.append(f"Skipped node {skipped['node_id']} ({skipped['type']}): {skipped['reason']}")
    return "\n".join(lines)


def workflow_dry_run(result: Mapping[str, Any]) -> str:
    estimate = result.get("estimate") or {}
    lines = [f"Dry run of workflow {result.get('workflow')!r}: nothing was sent."]
    for node, chat in (estimate.get("chats") or {}).items():
        cost = chat.get("cost_usd")
        priced = f", about ${cost['input']:.4f} in, at most ${cost['output_max']:.4f} out" if cost else ", no price"
        lines.append(
            f"OpenAIChatNode {node} ({chat.get('model')}): about {chat.get('input_tokens')} input tokens{priced}."
        )
    total = estimate.get("total_usd")
    if total is not None:
        lines.append(f"Whole workflow: at most ${total:.4f}.")
    lines += [f"Note: {note}" for note in estimate.get("notes") or []]
    return "\n".join(lines)


def batch_started(result: Mapping[str, Any]) -> str:
    run = result["run_id"]
    cost = result.get("estimated_cost")
    priced = f"; at most ${cost:.4f} for the rest" if cost is not None else "; no price known for the model"
    return (
        f"Run {run} {result['status']} via {result['via']}: {plural(result['images'], 'image')}, "
        f"{result['already_answered']} already answered{priced}. "
        f"preview(target='batch:{run}') shows progress and results; batch://{run} has them all."
    )


SUMMARIES: dict[str, Summary] = {
    "load_image": loaded,
    "attach_file": attached,
    "set_options": options_set,
    "chat": chatted,
    "run_workflow": workflow_ran,
    "run_batch": batch_started,
    "app_chat": chatted,
    "app_rerun": chatted,
    "app_set_options": options_set,
}


def summary(tool: str, structured: Mapping[str, Any]) -> str:
    """The text of `tool`'s result with this structured content."""
    write = SUMMARIES.get(tool)
    if write is None:
        return compact(structured)
    try:
        return write(structured)
    except (KeyError, TypeError, ValueError):  # a shape this summary does not know: everything, compactly
        return compact(structured)
