"""The bulk runs a store knows, and what each is doing: one small record per run in the store's runs index.

The index is itself a manifest (run id `INDEX`, one item per run), so it needs nothing of a store beyond what bulk
runs already use, and it is per principal wherever the store is. A run's record says how it was asked for (by the
command line or the run_batch tool), its status, and what preview needs to say its rate and what is left:

- `estimated`: a dry run (nothing sent);
- `running`: being answered, or cut off by a stop of the process that ran it (`holder` tells which);
- `finished`: every image has a result, or the rest failed for a passing reason (`left_over`, a rerun tries them);
- `stopped`: something stopped the whole run (a bad key, say): `error` says what.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from tools.ports import Store

INDEX = "runs"
# The lease that lets one runner at a time answer a run. Not printable, so no conversation id is ever this name.
LOCK_PREFIX = "\x1fbatch:"
RunStatus = Literal["estimated", "running", "finished", "stopped"]


def lock_name(run_id: str) -> str:
    return LOCK_PREFIX + run_id


async def list_runs(store: Store) -> list[dict[str, Any]]:
    """Every run's record, newest first."""
    found = [json.loads(record) for record in (await store.get_batch_records(INDEX)).values()]
    return sorted(found, key=lambda run: -float(run.get("created") or 0))


async def get_run(store: Store, run_id: str) -> dict[str, Any] | None:
    record = (await store.get_batch_records(INDEX)).get(run_id)
    return None if record is None else dict(json.loads(record))


async def mark(store: Store, run_id: str, **changes: Any) -> dict[str, Any]:
    """The run's record with `changes` made (created on first use), as stored."""
    run = await get_run(store, run_id) or {"id": run_id, "created": time.time()}
    run.update(changes, updated=time.time())
    await store.put_batch_record(INDEX, run_id, json.dumps(run))
    return run


async def holder(store: Store, run_id: str) -> str | None:
    """The process answering the run now, if any."""
    return await store.turn_holder(lock_name(run_id))
