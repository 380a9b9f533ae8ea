"""How big an image OpenAI's vision models look at, and what it costs in tokens.

OpenAI scales every image down to a working size before the model sees it. Sending
anything bigger only costs upload bytes and time; sending anything smaller loses detail
the model would have used. `target` returns that working size for a model and `detail`
level, with the input tokens OpenAI bills for it.

The rules come from OpenAI's "Images and vision" guide
(https://developers.openai.com/api/docs/guides/images-vision, "Model sizing behavior" and
"Calculating costs"). Two schemes exist:

* Tile models (gpt-4o, gpt-4o-mini, gpt-4.1, gpt-4.5, gpt-5, gpt-5.1, o1, o3,
  computer-use-preview): `low` is a 512 x 512 box for a fixed base cost; `high` and `auto`
  fit the image in 2048 x 2048, scale the shortest side down to 768, and cost
  base + per_tile x (number of 512 px tiles).
* Patch models (gpt-4.1-mini/nano, o4-mini, gpt-5-mini/nano, gpt-5.2 and later): the image
  is fitted in a pixel box and, where the model has one, a budget of 32 x 32 px patches;
  tokens = patches x a per-model multiplier, rounded up. gpt-5.4 and later also accept
  `original` (a larger box and budget), and on gpt-5.5 and gpt-5.6 `auto` means `original`.

Unknown models (a new OpenAI release, a local server behind an OpenAI-compatible API) get,
for `low`, `high` and `original`, the largest size any documented model uses at that level, so
an image is never sent smaller than the model may look at when asked: `low` and `high` fit in
2048 x 2048 (gpt-5.4's `low` and gpt-5.2's every level use that box); `original` keeps the
image up to 30,000 patches (about 30 megapixels, gpt-5.6's `original`). `auto`, the default,
means `high` for them: at most 2048 px a side. A local vision model shrinks a larger image
itself, so sending a 12 MP photo whole only costs upload time; `original` sends more when asked.
Tokens for unknown models are estimated as patches x 1.2, the multiplier of OpenAI's
current models. Set the model name to a known one for exact sizing and estimates.

All sizing preserves aspect ratio and never enlarges an image.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, get_args

from tools.models import Detail as Detail  # re-exported: imaging and the benchmarks take it from here

DETAILS: tuple[Detail, ...] = get_args(Detail)

_PATCH = 32  # px per patch side (patch models)
_TILE = 512  # px per tile side (tile models)


class DetailNotSupported(ValueError):
    """The model does not accept this `detail` value (OpenAI refuses the request)."""


@dataclass(frozen=True)
class Fit:
    """One detail level of a patch model: a pixel box and an optional patch budget."""

    max_side: int
    patch_budget: int | None


@dataclass(frozen=True)
class TileRule:
    base: int
    per_tile: int


@dataclass(frozen=True)
class PatchRule:
    multiplier_pct: int  # tokens per patch x 100 (integer maths: 1.2 -> 120, no float rounding)
    low: Fit
    high: Fit
    original: Fit | None  # None: the model refuses detail="original"
    auto_is_original: bool = False


_BOX_2048 = Fit(2048, None)
_HIGH_2500 = Fit(2048, 2500)
_ORIGINAL_10K = Fit(6000, 10_000)
_LOW_512 = Fit(512, None)
_WIDE_6144 = Fit(2048, 6144)  # never binds inside 2048 x 2048 (at most 64 x 64 = 4096 patches)
_OLD_1536 = Fit(2048, 1536)
# gpt-5.6 documents `original` as "no patch budget, 65,535 px per side", but its API refuses
# (HTTP 400 "requires N patches after processing, exceeding the limit of 30000") instead of
# resizing. Fitting to 30,000 patches is the largest image it accepts.
_ORIGINAL_30K = Fit(65_535, 30_000)


def _patch(pct: int, low: Fit, high: Fit, original: Fit | None = None, auto_original: bool = False) -> PatchRule:
    return PatchRule(pct, low, high, original, auto_original)


Rule = TileRule | PatchRule

# See the module docstring: per detail level (auto aside), the largest size any documented model uses.
UNKNOWN = _patch(120, _BOX_2048, _BOX_2048, _ORIGINAL_30K)  # auto = high: 2048 px a side at most

# Model name (or name prefix followed by "-", e.g. "gpt-4o-2024-08-06") -> rule.
# The longest matching entry wins, so "gpt-4o-mini" beats "gpt-4o".
_MODELS: dict[str, Rule] = {
    "gpt-5.6": _patch(120, _LOW_512, _HIGH_2500, _ORIGINAL_30K, auto_original=True),
    "gpt-5.5": _patch(120, _LOW_512, _HIGH_2500, _ORIGINAL_10K, auto_original=True),
    # gpt-5.4, -mini, -nano: `low` really is larger than `high` (documented).
    "gpt-5.4": _patch(120, _WIDE_6144, _HIGH_2500, _ORIGINAL_10K),
    "gpt-5.3-codex": _patch(120, _WIDE_6144, _WIDE_6144),  # grouped with gpt-5.2 by OpenAI
    "gpt-5.2": _patch(120, _WIDE_6144, _WIDE_6144),
    "gpt-4.1-mini": _patch(162, _WIDE_6144, _WIDE_6144),
    # Deprecated patch models: multipliers from the current guide, the 1,536-patch budget
    # from the last guide that listed them. No separate `low` rule was published: sized as `high`.
    "gpt-5-mini": _patch(120, _OLD_1536, _OLD_1536),
    "gpt-5-nano": _patch(150, _OLD_1536, _OLD_1536),
    "gpt-4.1-nano": _patch(246, _OLD_1536, _OLD_1536),
    "o4-mini": _patch(172, _OLD_1536, _OLD_1536),
    "gpt-5.1": TileRule(70, 140),
    "gpt-5": TileRule(70, 140),
    "gpt-4.1": TileRule(85, 170),
    "gpt-4.5": TileRule(85, 170),
    "gpt-4o": TileRule(85, 170),
    "gpt-4o-mini": TileRule(2833, 5667),
    "o1": TileRule(75, 150),
    "o3": TileRule(75, 150),
    "computer-use-preview": TileRule(65, 129),
    # Codex-mini variants were listed as 1,536-patch models without a published multiplier;
    # the unknown rule keeps them from matching the "gpt-5"/"gpt-5.1" tile entries.
    "gpt-5-codex-mini": UNKNOWN,
    "gpt-5.1-codex-mini": UNKNOWN,
}


@functools.lru_cache(maxsize=256)  # a few names in use, asked several times a call
def rule_for(model: str) -> Rule:
    """The sizing rule for a model name; `UNKNOWN` when no entry matches."""
    name = model.strip().lower().rsplit("/", 1)[-1]  # "openai/gpt-4o" (routers) -> "gpt-4o"
    best: str | None = None
    for key in _MODELS:
        if (name == key or name.startswith(key + "-")) and (best is None or len(key) > len(best)):
            best = key
    return _MODELS[best] if best is not None else UNKNOWN


def model_family(model: str) -> Literal["tile", "patch", "unknown"]:
    rule = rule_for(model)
    if rule is UNKNOWN:
        return "unknown"
    return "tile" if isinstance(rule, TileRule) else "patch"


def supported_details(model: str) -> tuple[Detail, ...]:
    """The `detail` values the model accepts, in a stable order."""
    rule = rule_for(model)
    if isinstance(rule, PatchRule) and rule.original is not None:
        return DETAILS
    return ("auto", "low", "high")


def _resolve(rule: Rule, detail: Detail, model: str) -> Detail:
    """Map `auto` to the level OpenAI documents for the model; refuse unsupported levels."""
    if detail == "original" and not (isinstance(rule, PatchRule) and rule.original is not None):
        accepted = ", ".join(supported_details(model))
        raise DetailNotSupported(f"Model {model!r} does not accept detail='original'; use one of: {accepted}.")
    if detail == "auto":
        # OpenAI documents `auto` per model as a fixed level (never `low`): `original` on
        # gpt-5.5/5.6, `high` everywhere else, so sizing for it never sends less than the model uses.
        return "original" if isinstance(rule, PatchRule) and rule.auto_is_original else "high"
    return detail


def _fit_box(width: int, height: int, side: int) -> tuple[int, int]:
    if width <= side and height <= side:
        return width, height
    if width >= height:  # the long side lands exactly on `side`; the other is rounded
        return side, max(1, (2 * height * side + width) // (2 * width))
    return max(1, (2 * width * side + height) // (2 * height)), side


def _patches(width: int, height: int) -> int:
    return math.ceil(width / _PATCH) * math.ceil(height / _PATCH)


def _fit_budget(width: int, height: int, budget: int) -> tuple[int, int]:
    """OpenAI's documented shrink: scale to the budget, then snap so whole patches fit."""
    if _patches(width, height) <= budget:
        return width, height
    scale = math.sqrt(_PATCH * _PATCH * budget / (width * height))
    cols, rows = width * scale / _PATCH, height * scale / _PATCH
    if cols >= 1 and rows >= 1:
        scale *= min(math.floor(cols) / cols, math.floor(rows) / rows)
    # The epsilon absorbs float error on sides that are exact multiples of 32 px;
    # it can never add a patch (a side of k*32 px is still k patches).
    new_w = min(width, max(1, math.floor(width * scale + 1e-6)))
    new_h = min(height, max(1, math.floor(height * scale + 1e-6)))
    while _patches(new_w, new_h) > budget:  # only for degenerate aspect ratios
        new_w, new_h = max(1, new_w * 99 // 100), max(1, new_h * 99 // 100)
    return new_w, new_h


@dataclass(frozen=True)
class Target:
    """What the model works at for one image: the size OpenAI resizes it to, and the tokens it bills."""

    width: int
    height: int
    tokens: int
    detail: Detail  # as asked for (`auto` stays `auto`: it is what the request says)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def target(width: int, height: int, *, detail: Detail, model: str) -> Target:
    """The size OpenAI resizes a `width` x `height` image to before the model sees it, and its tokens.

    Raises DetailNotSupported when the model refuses `detail`."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    rule = rule_for(model)
    level = _resolve(rule, detail, model)
    w, h = _fit(rule, level, width, height)
    if isinstance(rule, TileRule):
        tiles = math.ceil(w / _TILE) * math.ceil(h / _TILE)
        tokens = rule.base if level == "low" else rule.base + rule.per_tile * tiles
    else:
        tokens = (_patches(w, h) * rule.multiplier_pct + 99) // 100
    return Target(w, h, tokens, detail)


def variant_key(image_id: str, width: int, height: int) -> str:
    """Where the store caches an image prepared at `width` x `height`: one per size, whatever model or detail
    asked for it (two models that work at the same size share it)."""
    return f"{image_id}/{width}x{height}"


def _fit(rule: Rule, level: Detail, width: int, height: int) -> tuple[int, int]:
    if isinstance(rule, TileRule):
        if level == "low":
            return _fit_box(width, height, _TILE)
        width, height = _fit_box(width, height, 2048)
        if min(width, height) > 768:  # shortest side down to 768, the other rounded down
            if width <= height:
                return 768, height * 768 // width
            return width * 768 // height, 768
        return width, height
    fit = {"low": rule.low, "high": rule.high, "original": rule.original}[level]
    assert fit is not None  # _resolve refused `original` where the rule has none
    width, height = _fit_box(width, height, fit.max_side)
    if fit.patch_budget is not None:
        width, height = _fit_budget(width, height, fit.patch_budget)
    return width, height
