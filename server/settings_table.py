"""The one table of settings: for each, its name, what it does, its default, how its text is parsed, its
environment variable (IMAGECHAT_<NAME> unless named) and its flag (--<name>). `server/settings.py` builds
`Settings`, the flags and the README's table from it, so a setting is declared here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    name: str
    help: str
    default: Any
    parse: Callable[[str], Any] = str
    choices: tuple[str, ...] | None = None
    many: bool = False
    env: str | None = None  # defaults to IMAGECHAT_<NAME>
    flag: str | None = None  # defaults to --<name-with-dashes>

    @property
    def env_name(self) -> str:
        return self.env or f"IMAGECHAT_{self.name.upper()}"

    @property
    def flag_name(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_dirs(text: str) -> list[str]:
    return [part for part in text.split(os.pathsep) if part.strip()]


def parse_words(text: str) -> list[str]:
    return text.replace(",", " ").split()


SPECS: tuple[Spec, ...] = (
    Spec(
        "transport",
        "How clients connect: stdio (Claude Desktop, IDEs) or streamable-http.",
        "stdio",
        choices=("stdio", "streamable-http"),
    ),
    Spec("host", "Address to bind for streamable-http.", "127.0.0.1"),
    Spec("port", "Port for streamable-http.", 8000, int),
    Spec("model", "Default model for new conversations.", "gpt-4.1-mini"),
    Spec(
        "api",
        "Upstream API: responses, chat (Chat Completions), or auto (Responses, falling back to "
        "Chat Completions when the server lacks it).",
        "auto",
        choices=("auto", "responses", "chat"),
    ),
    Spec(
        "base_url",
        "OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 for Ollama. Read by the openai SDK.",
        None,
        env="OPENAI_BASE_URL",
    ),
    Spec(
        "store",
        "Where conversations and images live: sqlite (survives restarts), memory, or redis (shared by several "
        "replicas; see IMAGECHAT_REDIS_URL).",
        "sqlite",
        choices=("sqlite", "memory", "redis"),
    ),
    Spec(
        "redis_url",
        "The Redis of store=redis: redis://host:port/db, rediss://... (TLS) or unix:///path/to/redis.sock.",
        "redis://127.0.0.1:6379/0",
    ),
    Spec(
        "lease_seconds",
        "How long a lock or a running turn stays held by a process that stopped renewing it (it renews every "
        "third of this while alive): after this, a dead replica's turn is settled by another.",
        15.0,
        float,
    ),
    Spec(
        "replicas",
        "How many server processes serve this store behind one load balancer. More than 1 serves stateless "
        "streamable HTTP (no session to pin a client to one replica); set IMAGECHAT_STATE_KEY on all of them.",
        1,
        int,
    ),
    Spec(
        "state_key",
        "A secret shared by all replicas that seals the state of multi-round-trip requests, so any replica can "
        "continue what another began (at least 32 characters; environment only is safest).",
        None,
    ),
    Spec(
        "auth_issuer",
        "OAuth issuer whose access tokens (JWTs, RS256/ES256/...) streamable-http accepts; needs "
        "IMAGECHAT_AUTH_AUDIENCE. Each token's `sub` is a user with their own conversations.",
        None,
    ),
    Spec(
        "auth_audience",
        "This server's public URL as tokens name it (their `aud`), e.g. https://images.example.com/mcp; also the "
        "resource in its protected resource metadata.",
        None,
    ),
    Spec("auth_jwks_url", "The issuer's key set. Default: the jwks_uri of the issuer's metadata.", None),
    Spec(
        "auth_scopes",
        "Scopes every token must carry (space- or comma-separated); a token without them gets 403.",
        None,
        parse_words,
    ),
    Spec(
        "auth_tokens_file",
        "Static tokens for self-hosting: a file of lines `principal sha256:<hex digest of the token>` (no token "
        "in clear); re-read when it changes, so removing a line revokes a token.",
        None,
    ),
    Spec(
        "user_turns_per_minute",
        "With authentication: the most chat turns one user (token subject or static principal) may start in a "
        "minute (with the Redis store, in all replicas together); more are refused with when to retry. 0: no limit.",
        0,
        int,
    ),
    Spec(
        "user_stored_mb",
        "With authentication: the most one user's conversations, images and files may take (in any store); "
        "beyond it nothing new is stored (reading still works). 0: no limit.",
        0.0,
        float,
    ),
    Spec(
        "state_dir",
        "Folder for the SQLite database. Default: the platform's user state folder "
        "(~/.local/state/imagechat-mcp, ~/Library/Application Support/imagechat-mcp, "
        "%LOCALAPPDATA%\\imagechat-mcp).",
        None,
    ),
    Spec(
        "direct_writes",
        "store=sqlite: write originals of 1 MB and more to disk around the page cache (O_DIRECT; Linux, on file "
        "systems that take it, else through the cache). Less CPU per image and no cache filled with photos that "
        "are rarely read again; --no-direct-writes writes them through the cache.",
        True,
        parse_bool,
    ),
    Spec(
        "allowed_dirs",
        "Folders local files may be read from (repeat the flag; os.pathsep-separated in the "
        "variable). Default: Desktop, Downloads, Pictures and the working folder (unless it is / or home).",
        None,
        parse_dirs,
        many=True,
        flag="--allowed-dir",
    ),
    Spec(
        "allow_hidden",
        "Allow hidden files and folders (.ssh, .env, ...) inside the allowed folders.",
        False,
        parse_bool,
    ),
    Spec(
        "allow_http",
        "Allow plain http:// image URLs (https:// is always allowed to public hosts).",
        False,
        parse_bool,
    ),
    Spec(
        "input_dir",
        "Folder where workflow LoadImage/OpenAIInputFiles names are looked up, like ComfyUI's "
        "input folder; readable like an allowed folder. Default: the first allowed folder.",
        None,
    ),
    Spec("max_image_bytes", "Largest image file accepted, in bytes.", 50 * 1024 * 1024, int),
    Spec("max_file_bytes", "Largest document accepted by attach_file, in bytes.", 32 * 1024 * 1024, int),
    Spec(
        "max_request_bytes",
        "Largest HTTP request body streamable-http accepts, in bytes. Default: enough for the largest image or "
        "document sent as a data: URL (base64 takes 4/3 of the bytes).",
        None,
        int,
    ),
    Spec(
        "max_pixels",
        "Largest image accepted, in pixels (width x height), checked before decoding.",
        100_000_000,
        int,
    ),
    Spec(
        "image_seconds",
        "Longest one image operation (load, prepare, preview) may decode before it is stopped and refused, in "
        "seconds. Waiting for the pixel budget does not count.",
        30.0,
        float,
    ),
    Spec(
        "pixel_budget",
        "Decoded pixels all image work in flight may hold at once (memory: up to about 9 bytes a pixel while "
        "preparing). Work waits until its image fits; an image larger than the budget runs alone.",
        120_000_000,
        int,
    ),
    Spec("max_frames", 'Most frames taken from one animation with frames="all" (sampled evenly).', 16, int),
    Spec("max_prompt_chars", "Longest prompt or instructions accepted, in characters.", 100_000, int),
    Spec(
        "wait_seconds",
        "How long chat waits for an answer before returning status 'running' (the answer keeps coming; "
        "preview or chat(turn=N) fetches it). Just under the 60 s after which Claude Desktop gives up.",
        50.0,
        float,
    ),
    Spec(
        "background",
        "Responses API background mode, which survives restarts and dropped connections: auto (for OpenAI's "
        "slow reasoning models: *-pro, deep-research, effort high), always, or never.",
        "auto",
        choices=("auto", "always", "never"),
    ),
    Spec(
        "batch_poll_seconds",
        "How often a bulk run on OpenAI's Batch API (`batch --via batch-api`, run_batch) asks whether its batches "
        "are done, in seconds.",
        30.0,
        float,
    ),
    Spec(
        "keep_conversations_days",
        "Conversations unchanged for this many days are removed by `imagechat-mcp prune`, with the images and "
        "files no kept conversation refers to. 0 keeps them forever.",
        0.0,
        float,
    ),
    Spec(
        "keep_conversations_mb",
        "The most that conversations, with the images and files they refer to, may take: `imagechat-mcp prune` "
        "removes the least recently changed beyond it. 0: no limit.",
        0.0,
        float,
    ),
    Spec(
        "keep_variants_days",
        "Images prepared for a model (a cache, made again when needed) older than this are removed by "
        "`imagechat-mcp prune`. 0 keeps them.",
        30.0,
        float,
    ),
    Spec(
        "keep_variants_mb",
        "The most the prepared images may take: `imagechat-mcp prune` removes the oldest beyond it. 0: no limit.",
        1024.0,
        float,
    ),
    Spec(
        "context",
        "How a conversation continues upstream: chain (only the new turn, with previous_response_id: the upstream "
        "keeps earlier responses), replay (the recorded turns are sent again each turn), or auto (chain on "
        "OpenAI's API and on upstreams that hand a stored response back by id; replay elsewhere, such as "
        "gateways that accept previous_response_id and drop it).",
        "auto",
        choices=("auto", "chain", "replay"),
    ),
    Spec("timeout", "Upstream request timeout, in seconds.", 600.0, float),
    Spec(
        "turn_timeout",
        "Longest a chat turn may take in all, in seconds, however slowly the answer trickles in; then it fails "
        "and its attachments wait for the next turn. chat(turn=N, cancel=true) stops one sooner.",
        1800.0,
        float,
    ),
    Spec("max_retries", "Upstream retries on 408/409/429/5xx and connection errors.", 2, int),
    Spec(
        "log_level",
        "Logging level (logs go to stderr).",
        "WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
)


# Each setting's default as the table gives it: `Settings` takes every default from here.
DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in SPECS}
