"""Settings: environment, flags, defaults, and the README table generated from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from server import settings as settings_module

README = Path(__file__).parent.parent / "README.md"


def test_flags_win_over_environment_which_wins_over_defaults(tmp_path: Path) -> None:
    env = {
        "IMAGECHAT_MODEL": "gpt-4o",
        "IMAGECHAT_MAX_PIXELS": "1000",
        "IMAGECHAT_ALLOW_HTTP": "true",
        "IMAGECHAT_ALLOWED_DIRS": f"{tmp_path / 'a'}:{tmp_path / 'b'}",
        "OPENAI_API_KEY": "sk-x",
        "OPENAI_BASE_URL": "http://localhost:11434/v1",
    }
    settings = settings_module.parse(["--model", "o3", "--allowed-dir", str(tmp_path / "c")], env)
    assert settings.model == "o3" and settings.max_pixels == 1000 and settings.allow_http is True
    assert settings.allowed_dirs == [tmp_path / "c"]
    assert settings.api_key == "sk-x" and settings.base_url == "http://localhost:11434/v1"
    assert settings_module.parse([], env).allowed_dirs == [tmp_path / "a", tmp_path / "b"]
    assert settings_module.parse([], {}).model == "gpt-4.1-mini"


def test_bad_values_are_refused_with_the_variable_named() -> None:
    with pytest.raises(settings_module.SettingsError, match="IMAGECHAT_MAX_PIXELS"):
        settings_module.parse([], {"IMAGECHAT_MAX_PIXELS": "lots"})
    with pytest.raises(settings_module.SettingsError, match="IMAGECHAT_STORE must be one of"):
        settings_module.parse([], {"IMAGECHAT_STORE": "postgres"})


def test_state_dir_defaults_to_the_platform_user_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert settings_module.parse([], {}).resolved_state_dir() == tmp_path / "xdg" / "imagechat-mcp"
    explicit = settings_module.parse([], {"IMAGECHAT_STATE_DIR": str(tmp_path / "s")})
    assert explicit.resolved_state_dir() == tmp_path / "s"


def test_readme_settings_table_is_generated_from_the_code() -> None:
    table = settings_module.markdown_table()
    assert table in README.read_text(encoding="utf-8"), (
        "README.md's settings table is stale: paste the output of `imagechat-mcp settings` into it."
    )
