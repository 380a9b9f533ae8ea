"""What a store keeps: the retention policy, and the pure choice of what to remove (`choose`).

Each store takes stock of what it holds (an `Inventory`), asks `choose` what goes, and removes that. The rules:
- a conversation goes when it has not changed for `conversation_days`, or, beyond `conversation_mb`, the least
  recently changed go first (its size counts its own record, its turns and the images and files only it uses);
- an image or a file goes only when no kept conversation refers to it (pending or in a turn) and it has not been
  loaded for `GRACE_SECONDS` (a load in progress has stored the image but not yet attached it);
- a prepared variant goes with its image, when older than `variant_days`, and oldest first beyond `variant_mb`
  (variants are a cache: the next turn that needs one prepares it again);
- a blob goes when no remaining record names it and it is older than `GRACE_SECONDS` (the same reason).
Both conversation rules are off by default; the variant rules are on, with generous limits (server/settings.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from tools.ports import Store

DAY = 86400.0
MB = 1024 * 1024
GRACE_SECONDS = 3600.0


@dataclass(frozen=True)
class Retention:
    """0 turns a rule off."""

    conversation_days: float = 0.0
    conversation_mb: float = 0.0
    variant_days: float = 30.0
    variant_mb: float = 1024.0


@dataclass(frozen=True)
class Entry:
    """A conversation (`uses`: the images and files it refers to) or a record naming a blob."""

    id: str
    bytes: int
    at: float  # last change (conversations), last load (images, files), creation (variants), mtime (blobs)
    blob: str = ""
    uses: frozenset[str] = frozenset()


@dataclass
class Inventory:
    conversations: list[Entry]
    images: list[Entry]
    files: list[Entry]
    variants: list[Entry]  # id: "<image id>/<size>"
    blobs: list[Entry]  # id: the blob key


@dataclass
class Pruned:
    """What a prune removed (or, in a dry run, would remove), by kind, and the bytes that frees."""

    conversations: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0

    def summary(self, dry_run: bool) -> str:
        counts = ", ".join(
            f"{len(items)} {kind}"
            for kind, items in (
                ("conversations", self.conversations),
                ("images", self.images),
                ("files", self.files),
                ("prepared variants", self.variants),
                ("blob files", self.blobs),
            )
        )
        verb = "Would remove" if dry_run else "Removed"
        return f"{verb} {counts}: {self.freed_bytes / MB:.1f} MB."

    def add(self, other: Pruned) -> None:
        """Counts what another store's prune removed too (one summary for several stores)."""
        for kind in ("conversations", "images", "files", "variants", "blobs"):
            getattr(self, kind).extend(getattr(other, kind))
        self.freed_bytes += other.freed_bytes


class PrunableStore(Store, Protocol):
    """A store the server opens: the tools' Store, plus pruning for `imagechat-mcp prune`."""

    async def prune(self, policy: Retention, *, dry_run: bool = False, now: float | None = None) -> Pruned:
        """Remove what `policy` does not keep (nothing in a dry run) and say what that is."""
        ...


def held(stock: Inventory) -> int:
    """The bytes a store holds for its user: its conversations' records and turns, its images and files. Not the
    prepared variants: they are the server's cache, made again when needed and bounded by keep_variants_*.
    What IMAGECHAT_USER_STORED_MB limits (server.fair_use, measured as server.stores.usage does)."""
    return sum(entry.bytes for entry in (*stock.conversations, *stock.images, *stock.files))


def choose(stock: Inventory, policy: Retention, now: float) -> Pruned:
    pruned = Pruned()
    kept = conversations_kept(stock, policy, now, pruned)
    used = {item for conversation in kept for item in conversation.uses}
    old = now - GRACE_SECONDS
    for kind, entries in (("images", stock.images), ("files", stock.files)):
        gone = [e for e in entries if e.id not in used and e.at < old]
        getattr(pruned, kind).extend(e.id for e in gone)
    removed_images = set(pruned.images)
    variants = [v for v in stock.variants if v.id.split("/")[0] not in removed_images]
    pruned.variants = [v.id for v in stock.variants if v.id.split("/")[0] in removed_images]
    pruned.variants += [v.id for v in variants_beyond(variants, policy, now)]
    gone_records = set(pruned.images) | set(pruned.files) | set(pruned.variants)
    named = {e.blob for e in (*stock.images, *stock.files, *stock.variants) if e.id not in gone_records}
    blobs = [b for b in stock.blobs if b.id not in named and b.at < old]
    pruned.blobs = [b.id for b in blobs]
    pruned.freed_bytes += sum(b.bytes for b in blobs)
    return pruned


def conversations_kept(stock: Inventory, policy: Retention, now: float, pruned: Pruned) -> list[Entry]:
    """The conversations the policy keeps; the others are added to `pruned` (with their own bytes)."""
    newest_first = sorted(stock.conversations, key=lambda c: c.at, reverse=True)
    kept = newest_first
    if policy.conversation_days > 0:
        kept = [c for c in newest_first if c.at >= now - policy.conversation_days * DAY]
    if policy.conversation_mb > 0:
        kept = within_size(kept, stock, policy.conversation_mb * MB)
    kept_ids = {c.id for c in kept}
    for conversation in newest_first:
        if conversation.id not in kept_ids:
            pruned.conversations.append(conversation.id)
            pruned.freed_bytes += conversation.bytes
    return kept


def within_size(newest_first: list[Entry], stock: Inventory, limit: float) -> list[Entry]:
    """The most recently changed conversations whose records, images and files fit in `limit` bytes together.

    An image or file counts once, with the first (newest) conversation that uses it."""
    sizes = {e.id: e.bytes for e in (*stock.images, *stock.files)}
    counted: Counter[str] = Counter()
    total = 0
    kept: list[Entry] = []
    for conversation in newest_first:
        cost = conversation.bytes + sum(sizes.get(item, 0) for item in conversation.uses if item not in counted)
        if total + cost > limit:
            break  # this one and every older one go
        total += cost
        counted.update(conversation.uses)
        kept.append(conversation)
    return kept


def variants_beyond(variants: list[Entry], policy: Retention, now: float) -> list[Entry]:
    """The variants too old, then the oldest of the rest beyond the size limit."""
    newest_first = sorted(variants, key=lambda v: v.at, reverse=True)
    too_old = [] if policy.variant_days <= 0 else [v for v in newest_first if v.at < now - policy.variant_days * DAY]
    old_ids = {v.id for v in too_old}
    rest = [v for v in newest_first if v.id not in old_ids]
    if policy.variant_mb <= 0:
        return too_old
    total, over = 0, []
    for variant in rest:
        total += variant.bytes
        if total > policy.variant_mb * MB:
            over.append(variant)
    return too_old + over
