"""A bulk run as preview and the resources show it: progress, and the results so far, a page at a time.

preview(target="batch:<id>") gives the counts (done, failed, pending), the rate, the cost so far and about what is
left, and the first PAGE results in the run's order; "batch:<id>:<n>" the page from result n. The batch://<id>
resource has every result as JSON lines (batch://<id>/csv as CSV). Everything is read from the run's manifest and
the runs index (tools/batch_runs.py), so it reads the same from any replica and after a restart.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from tools import batch_runs
from tools.batch_spec import CSV_COLUMNS, OWN_ITEMS, RUN_ITEM, Result, encode
from tools.deps import Deps

PAGE = 50
ANSWER_CHARS = 300  # of each answer in the text (the structured results and the resource have it whole)


async def results(deps: Deps, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's index record and its results in the run's order; ToolError when there is no such run."""
    from tools.batch_tool import not_found

    run = await batch_runs.get_run(deps.store, run_id)
    if run is None:
        raise not_found(run_id, await batch_runs.list_runs(deps.store))
    records = await deps.store.get_batch_records(run_id)
    spec = json.loads(records.get(RUN_ITEM) or "{}").get("spec") or {}
    order = [path for path in spec.get("paths") or [] if path in records]
    listed = set(order)
    order += sorted(item for item in records if item not in listed and item != RUN_ITEM)
    found = [json.loads(records[item]) for item in order if not item.startswith(OWN_ITEMS)]
    return run, [{key: row.get(key) for key in CSV_COLUMNS} for row in found]


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """The rows as the command's CSV results file has them (a header, then one row per image)."""
    lines = [",".join(CSV_COLUMNS) + "\n"]
    lines += [encode(Result(**row), as_csv=True).decode() for row in rows]
    return "".join(lines)


async def progress(deps: Deps, run: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    images = int(run.get("images") or 0)
    done = sum(1 for row in rows if row.get("status") == "done")
    failed = len(rows) - done
    pending = max(0, images - len(rows))
    status = str(run.get("status") or "estimated")
    if status == "running" and await batch_runs.holder(deps.store, str(run["id"])) is None:
        status = "interrupted"
    rate = None
    if run.get("started") and run.get("left_at_start") is not None:
        answered_since = len(rows) - (images - int(run["left_at_start"]))
        ended = run.get("ended") if status not in ("running", "interrupted") else None
        elapsed = float(ended or time.time()) - float(run["started"])
        rate = round(answered_since / elapsed, 2) if elapsed > 0 and answered_since > 0 else 0.0
    costs = [float(row["cost"]) for row in rows if row.get("cost") is not None]
    cost = round(sum(costs), 6)
    if costs:
        cost_left: float | None = round(cost / len(costs) * pending, 6)
    elif run.get("estimated_cost") is not None and run.get("estimated_images"):
        cost_left = round(float(run["estimated_cost"]) * pending / int(run["estimated_images"]), 6)
    else:
        cost_left = None
    counts = {"done": done, "failed": failed, "pending": pending, "rate": rate, "cost": cost, "cost_left": cost_left}
    return {"run_id": run["id"], "status": status, "images": images, **counts, "error": run.get("error")}


async def preview(deps: Deps, target: str, fmt: str) -> tuple[str, dict[str, Any]]:
    """The text and the structured view of target "batch:<id>" or "batch:<id>:<n>"."""
    run_id, _, start_text = target.removeprefix("batch:").strip().partition(":")
    if start_text and not start_text.isdigit():
        raise ToolError(f"Use target 'batch:<id>' or 'batch:<id>:<n>' (results from the n-th), not {target!r}.")
    start = max(1, int(start_text or 1))
    run, rows = await results(deps, run_id)
    view = await progress(deps, run, rows)
    page = rows[start - 1 : start - 1 + PAGE]
    more = start - 1 + PAGE < len(rows)
    view.update(results=page, next=f"batch:{run_id}:{start + PAGE}" if more else None)
    if fmt == "json":
        return json.dumps(view, indent=2, ensure_ascii=False), view
    return text_of(view, start), view


def text_of(view: dict[str, Any], start: int) -> str:
    rate = "" if view["rate"] is None else f"; {view['rate']}/s"
    left = "" if view["cost_left"] is None else f", about ${view['cost_left']:.4f} left"
    lines = [
        f"Run {view['run_id']}: {view['status']}, {view['images']} images: {view['done']} done, {view['failed']} "
        f"failed, {view['pending']} pending{rate}; cost ${view['cost']:.4f} so far{left}."
    ]
    if view["status"] == "interrupted":
        lines.append(f"Nobody is running it now: run_batch(resume='{view['run_id']}') continues it.")
    if view.get("error"):
        lines.append(f"Stopped: {view['error']}")
    page = view["results"]
    if page:
        shown = f"Results {start}-{start + len(page) - 1} of {view['done'] + view['failed']}"
        after = f"; next page: preview(target='{view['next']}')" if view["next"] else ""
        lines.append(f"{shown} (all as JSON lines: batch://{view['run_id']}{after}):")
    for row in page:
        answer = row["answer"] if isinstance(row["answer"], str) else json.dumps(row["answer"], ensure_ascii=False)
        said = row["error"] if row["status"] != "done" else (answer or "")
        cut = said if len(said) <= ANSWER_CHARS else said[:ANSWER_CHARS] + "…"
        lines.append(f"- {row['path']}: {row['status']}: {cut}")
    return "\n".join(lines)
