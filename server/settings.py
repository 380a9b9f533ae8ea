"""Every setting in one table: an environment variable, a CLI flag and a default for each.

The table itself is `server/settings_table.py`; the README's settings table is generated from it
(`imagechat-mcp settings`), and a test keeps the two in step, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.settings_table import DEFAULTS as DEFAULTS
from server.settings_table import SPECS as SPECS
from server.settings_table import Spec as Spec
from server.settings_table import parse_bool


@dataclass(frozen=True)
class Settings:
    """The effective settings: one field per row of `SPECS`, under its name, with the table's default (a test
    checks that the fields and the rows agree). `given` tells a value set by a flag or an environment variable
    from a default."""

    transport: str = DEFAULTS["transport"]
    host: str = DEFAULTS["host"]
    port: int = DEFAULTS["port"]
    model: str = DEFAULTS["model"]
    api: str = DEFAULTS["api"]
    base_url: str | None = DEFAULTS["base_url"]
    store: str = DEFAULTS["store"]
    redis_url: str = field(default=DEFAULTS["redis_url"], repr=False)  # may hold a password
    lease_seconds: float = DEFAULTS["lease_seconds"]
    replicas: int = DEFAULTS["replicas"]
    state_key: str | None = field(default=DEFAULTS["state_key"], repr=False)
    auth_issuer: str | None = DEFAULTS["auth_issuer"]
    auth_audience: str | None = DEFAULTS["auth_audience"]
    auth_jwks_url: str | None = DEFAULTS["auth_jwks_url"]
    auth_scopes: list[str] | None = DEFAULTS["auth_scopes"]
    auth_tokens_file: Path | None = DEFAULTS["auth_tokens_file"]
    user_turns_per_minute: int = DEFAULTS["user_turns_per_minute"]
    user_stored_mb: float = DEFAULTS["user_stored_mb"]
    state_dir: Path | None = DEFAULTS["state_dir"]
    direct_writes: bool = DEFAULTS["direct_writes"]
    allowed_dirs: list[Path] | None = DEFAULTS["allowed_dirs"]
    allow_hidden: bool = DEFAULTS["allow_hidden"]
    allow_http: bool = DEFAULTS["allow_http"]
    input_dir: Path | None = DEFAULTS["input_dir"]
    max_image_bytes: int = DEFAULTS["max_image_bytes"]
    max_file_bytes: int = DEFAULTS["max_file_bytes"]
    max_request_bytes: int | None = DEFAULTS["max_request_bytes"]
    max_pixels: int = DEFAULTS["max_pixels"]
    image_seconds: float = DEFAULTS["image_seconds"]
    pixel_budget: int = DEFAULTS["pixel_budget"]
    max_frames: int = DEFAULTS["max_frames"]
    max_prompt_chars: int = DEFAULTS["max_prompt_chars"]
    wait_seconds: float = DEFAULTS["wait_seconds"]
    background: str = DEFAULTS["background"]
    batch_poll_seconds: float = DEFAULTS["batch_poll_seconds"]
    keep_conversations_days: float = DEFAULTS["keep_conversations_days"]
    keep_conversations_mb: float = DEFAULTS["keep_conversations_mb"]
    keep_variants_days: float = DEFAULTS["keep_variants_days"]
    keep_variants_mb: float = DEFAULTS["keep_variants_mb"]
    context: str = DEFAULTS["context"]
    timeout: float = DEFAULTS["timeout"]
    turn_timeout: float = DEFAULTS["turn_timeout"]
    max_retries: int = DEFAULTS["max_retries"]
    log_level: str = DEFAULTS["log_level"]
    api_key: str | None = field(default=None, repr=False)
    # The settings a flag or an environment variable set (filled in by `resolve`); the others are defaults.
    given: frozenset[str] = frozenset()

    def resolved_state_dir(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir
        from platformdirs import user_state_dir

        return Path(user_state_dir("imagechat-mcp", appauthor=False))


class SettingsError(ValueError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for spec in SPECS:
        kwargs: dict[str, Any] = {
            "dest": spec.name,
            "default": None,
            # argparse formats help with %: the Windows path in state_dir's help would break --help.
            "help": f"{spec.help} [{spec.env_name}]".replace("%", "%%"),
        }
        if spec.parse is parse_bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif spec.many:
            kwargs["action"] = "append"
        else:
            kwargs["type"] = spec.parse
            if spec.choices:
                kwargs["choices"] = spec.choices
        parser.add_argument(spec.flag_name, **kwargs)


def resolve(args: argparse.Namespace | None, environ: Mapping[str, str]) -> Settings:
    """Flags win over environment variables, which win over defaults."""
    values: dict[str, Any] = {}
    for spec in SPECS:
        flag_value = getattr(args, spec.name, None) if args is not None else None
        if flag_value is not None:
            value = flag_value
        elif environ.get(spec.env_name, "").strip():
            raw = environ[spec.env_name]
            try:
                value = spec.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{spec.env_name}={raw!r} is not valid: {exc}") from exc
            if spec.choices and value not in spec.choices:
                raise SettingsError(f"{spec.env_name} must be one of {', '.join(spec.choices)}, not {raw!r}")
        else:
            continue
        if spec.name in {"state_dir", "input_dir", "auth_tokens_file"}:
            value = Path(value).expanduser()
        elif spec.name == "allowed_dirs":
            value = [Path(item).expanduser() for item in value]
        values[spec.name] = value
    values["api_key"] = environ.get("OPENAI_API_KEY") or None
    return Settings(**values, given=frozenset(values) - {"api_key"})


def parse(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="imagechat-mcp")
    add_arguments(parser)
    return resolve(parser.parse_args(argv), os.environ if environ is None else environ)


def markdown_table() -> str:
    rows = ["| setting | environment variable | flag | default | what it does |", "|---|---|---|---|---|"]
    for spec in SPECS:
        default = "" if spec.default is None else f"`{spec.default}`"
        choices = f" One of: {', '.join(spec.choices)}." if spec.choices else ""
        rows.append(f"| {spec.name} | `{spec.env_name}` | `{spec.flag_name}` | {default} | {spec.help}{choices} |")
    rows.append(
        "| api key | `OPENAI_API_KEY` | (environment only) | | The key sent upstream. Any non-empty "
        "value works for local servers; never accepted as a flag or tool argument. |"
    )
    return "\n".join(rows)
