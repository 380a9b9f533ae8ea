"""Which options each model family takes, so a bad combination is refused before it costs a call.

OpenAI's reasoning models (o-series, gpt-5) reject temperature and top_p, and each generation accepts
its own reasoning-effort levels; the classic chat models reject reasoning settings. A model the table
does not know is passed through untouched: an OpenAI-compatible server decides for itself.

Options are also checked against the API that carries them: Chat Completions' `image_url.detail` takes only
auto, low and high (no "original"), and some models (o1-pro, o3-pro, the gpt-5 pro models, deep research)
are served only through the Responses API.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from tools.image_sizing import supported_details
from tools.models import Options


@dataclass(frozen=True)
class ModelRules:
    family: str
    efforts: tuple[str, ...] | None  # None: no reasoning_effort at all
    sampling: bool  # temperature / top_p
    vision: bool = True
    apis: tuple[str, ...] = ("responses", "chat")  # which OpenAI APIs serve the model


RESPONSES_ONLY = ("responses",)
# What Chat Completions' image_url.detail takes (OpenAI's spec); the Responses API also takes "original".
CHAT_DETAILS = ("auto", "low", "high")


_O_SERIES = ("low", "medium", "high")
# Ordered: the first pattern that matches the model name (dated snapshots included) wins.
RULES: tuple[tuple[str, ModelRules], ...] = (
    (r"o1-mini|o3-mini", ModelRules("o-series", _O_SERIES, sampling=False, vision=False)),
    (r"o\d-pro|o\d(-mini)?-deep-research", ModelRules("o-series", _O_SERIES, sampling=False, apis=RESPONSES_ONLY)),
    (r"o\d(-mini)?", ModelRules("o-series", _O_SERIES, sampling=False)),
    (r"gpt-5(\.\d+)?-chat(-latest)?", ModelRules("gpt-5-chat", None, sampling=True)),
    (r"gpt-5(\.\d+)?-pro", ModelRules("gpt-5-pro", ("high",), sampling=False, apis=RESPONSES_ONLY)),
    (r"gpt-5(-mini|-nano)?", ModelRules("gpt-5", ("minimal", "low", "medium", "high"), sampling=False)),
    (
        r"gpt-5\.1(-mini|-nano|-codex.*)?",
        ModelRules("gpt-5.1", ("none", "low", "medium", "high"), sampling=False),
    ),
    (
        r"gpt-5\.\d+(-mini|-nano)?",
        ModelRules("gpt-5.2+", ("none", "low", "medium", "high", "xhigh"), sampling=False),
    ),
    (r"gpt-4o(-mini)?|chatgpt-4o(-latest)?", ModelRules("gpt-4o", None, sampling=True)),
    (r"gpt-4\.1(-mini|-nano)?", ModelRules("gpt-4.1", None, sampling=True)),
    (r"gpt-4\.5(-preview)?|gpt-4-turbo|gpt-4", ModelRules("gpt-4", None, sampling=True)),
)
_SNAPSHOT = r"(-\d{4}-\d{2}-\d{2}|-preview|-latest)?"


@functools.lru_cache(maxsize=256)  # a few names in use, asked several times a call: the patterns run once each
def rules_for(model: str) -> ModelRules | None:
    name = model.strip().lower().removeprefix("openai/")
    for pattern, rules in RULES:
        if re.fullmatch(f"(?:{pattern}){_SNAPSHOT}", name):
            return rules
    return None


def known_names() -> list[str]:
    """The model names the server has prices for (each also has sizing rules and, mostly, option rules)."""
    from tools.pricing import PRICES

    return sorted(set(PRICES) | {"o1-mini", "o3-mini", "gpt-4.5-preview", "gpt-5-chat-latest", "chatgpt-4o-latest"})


def is_known(model: str) -> bool:
    """Whether the server has option rules or a price for the model, by its whole name (dated snapshots included):
    image sizing matches name prefixes, so a typo such as gpt-4.1-mnii would pass it."""
    from tools.pricing import price_of

    return rules_for(model) is not None or price_of(model) is not None


# A 4000x3000 photo: what a detail level means on a model is said with it.
REFERENCE_PHOTO = (4000, 3000)


def detail_note(model: str, detail: str) -> str | None:
    """What `detail` means on `model`, in pixels and tokens (the same word means different sizes per model)."""
    from tools.image_sizing import DetailNotSupported, model_family, target

    if detail not in ("auto", "low", "high", "original"):
        return None
    try:
        sized = target(*REFERENCE_PHOTO, detail=detail, model=model)  # type: ignore[arg-type]
    except DetailNotSupported:
        return None
    family = model_family(model)
    known = "" if family != "unknown" else " (an unknown model: sized for the largest any known model uses)"
    said = (
        f"On {model}{known}, detail {detail!r} sends a {REFERENCE_PHOTO[0]}x{REFERENCE_PHOTO[1]} photo at "
        f"{sized.width}x{sized.height} px, about {sized.tokens} tokens."
    )
    if detail == "low" and max(sized.width, sized.height) > 512:
        said += " This model has no 512 px low detail (the tile models, e.g. gpt-4o, gpt-4.1, gpt-5, o3, do)."
    return said


def vision_note(model: str) -> str | None:
    rules = rules_for(model)
    if rules is None or rules.vision:
        return None
    return f"{model} takes no images: chat refuses a turn with images while it is the model."


def catalogue() -> dict[str, dict[str, object]]:
    """Each known model as the models resource shows it: prices, images, details, options, APIs."""
    from tools.image_sizing import supported_details
    from tools.pricing import price_of

    found: dict[str, dict[str, object]] = {}
    for name in known_names():
        rules, prices = rules_for(name), price_of(name)
        vision = rules.vision if rules else True
        found[name] = {
            "usd_per_million_tokens": {"input": prices[0], "output": prices[1]} if prices else None,
            "images": vision,
            "details": list(supported_details(name)) if vision else [],
            "reasoning_efforts": list(rules.efforts) if rules and rules.efforts else [],
            "temperature_top_p": rules.sampling if rules else True,
            "apis": list(rules.apis) if rules else ["responses", "chat"],
        }
    return found


def api_refusal(model: str, api: str) -> str | None:
    """Why `model` cannot be asked through `api` ("responses" or "chat"), or None when it can."""
    rules = rules_for(model)
    if api != "chat" or rules is None or "chat" in rules.apis:
        return None
    return (
        f"{model} is served only through OpenAI's Responses API, and this server speaks Chat Completions "
        "(IMAGECHAT_API=chat, or an upstream without the Responses API). Set IMAGECHAT_API=responses (or auto) "
        "with an upstream that serves it, or choose another model with set_options(model=...)."
    )


def detail_for_api(detail: str, api: str) -> str:
    """The detail `api` will take for an image prepared at `detail`: Chat Completions has no "original"."""
    return detail if api != "chat" or detail in CHAT_DETAILS else "high"


def api_note(detail: str, api: str) -> str | None:
    """What the caller is told when the detail sent differs from the one asked for."""
    sent = detail_for_api(detail, api)
    if sent == detail:
        return None
    return (
        f"detail {detail!r} is not part of Chat Completions (it takes {', '.join(CHAT_DETAILS)}): the images were "
        f"prepared for {detail!r} and sent with detail {sent!r}, so the upstream may scale them down. The "
        "Responses API (IMAGECHAT_API=responses or auto) sends 'original'."
    )


def refusals(model: str, options: Options, api: str | None = None) -> list[str]:
    """What in `options` the model (and, when given, the API in use) will not take, each as a sentence naming
    what it does take."""
    problems: list[str] = []
    details = supported_details(model)
    if options.detail not in details:
        problems.append(f"{model} takes detail {', '.join(details)}, not {options.detail!r}.")
    refusal = api_refusal(model, api) if api else None
    if refusal:
        problems.append(refusal)
    rules = rules_for(model)
    if rules is None:
        return problems
    if options.reasoning_effort is not None:
        if rules.efforts is None:
            problems.append(f"{model} does not take reasoning_effort (it is not a reasoning model).")
        elif options.reasoning_effort not in rules.efforts:
            problems.append(
                f"{model} takes reasoning_effort {', '.join(rules.efforts)}, not {options.reasoning_effort!r}."
            )
    if not rules.sampling:
        for name in ("temperature", "top_p"):
            if getattr(options, name) is not None:
                problems.append(f"{model} is a reasoning model and does not take {name}; use reasoning_effort instead.")
    return problems


def drop_unsupported(model: str, options: Options) -> tuple[Options, list[str]]:
    """Options with what `model` cannot take removed, and a note for each removal."""
    changes: dict[str, object] = {}
    notes: list[str] = []
    if options.detail not in supported_details(model):
        changes["detail"] = "auto"
        notes.append(f"detail {options.detail!r} replaced by 'auto': {model} does not take it.")
    rules = rules_for(model)
    if rules is None:
        return options.model_copy(update=changes), notes
    effort = options.reasoning_effort
    if effort is not None and (rules.efforts is None or effort not in rules.efforts):
        changes["reasoning_effort"] = None
        notes.append(f"reasoning_effort {effort!r} dropped: {model} does not take it.")
    if not rules.sampling:
        for name in ("temperature", "top_p"):
            if getattr(options, name) is not None:
                changes[name] = None
                notes.append(f"{name} dropped: {model} does not take it.")
    return options.model_copy(update=changes), notes
