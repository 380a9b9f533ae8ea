"""Is a model name one the upstream will answer to? Checked where a model is chosen, before anything is billed.

A name the server has rules for (tools/model_rules.py, tools/pricing.py, tools/image_sizing.py) passes without a
call. Any other is looked up where the upstream lists its models (OpenAI, Ollama, vLLM, LM Studio all serve
/v1/models): a name not on that list is refused with the closest name. Where it lists none (a gateway without the
route, an upstream that cannot be reached yet), it passes with a note: it may be a new model, or a local one, that
the server cannot size or price.
"""

from __future__ import annotations

import contextlib
import difflib
import time
import weakref

import anyio

from tools import model_rules
from tools.ports import Upstream

LIST_TIMEOUT = 10.0  # seconds: the list is a check, not worth a long wait
LIST_TTL = 300.0  # seconds a listing is trusted (models come and go rarely)
_listed: weakref.WeakKeyDictionary[object, tuple[float, list[str] | None]] = weakref.WeakKeyDictionary()


async def served(upstream: Upstream) -> list[str] | None:
    """The models the upstream lists, or None when it lists none (or cannot be asked)."""
    now = time.monotonic()
    cached = _listed.get(upstream)
    if cached is not None and now - cached[0] < LIST_TTL:
        return cached[1]
    found: list[str] | None = None
    with anyio.move_on_after(LIST_TIMEOUT):
        try:
            found = await upstream.list_models() or None
        except Exception:  # no key, no route, no network: the upstream does not list, for this purpose
            found = None
    # An upstream that cannot be weakly referenced is simply asked every time.
    with contextlib.suppress(TypeError):
        _listed[upstream] = (now, found)
    return found


def closest(name: str, names: list[str]) -> str | None:
    found = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return found[0] if found else None


def listing(names: list[str], limit: int = 30) -> str:
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


async def check_model(upstream: Upstream, model: str) -> tuple[str | None, str | None]:
    """(refusal, note) for `model`. A name the server knows passes without asking the upstream. Any other is looked
    up in the upstream's list: refused with the closest name when the list lacks it (a typo, most often), passed
    with a note when there is no list."""
    if model_rules.is_known(model):
        return None, None
    names = await served(upstream)
    if names is not None and model in names:
        return None, None
    if names is not None:
        close = closest(model, names) or closest(model, model_rules.known_names())
        mean = f" Did you mean {close!r}?" if close else ""
        return f"The upstream does not serve model {model!r}.{mean} It serves: {listing(names)}.", None
    close = closest(model, model_rules.known_names())
    mean = f" (did you mean {close!r}?)" if close else ""
    return None, (
        f"{model!r} is not a model this server knows{mean}, and the upstream does not list its models, so it is "
        "used as named: images are sized for the largest known model and no cost can be estimated."
    )
