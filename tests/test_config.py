from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_settings
from orchestrator.errors import ConfigError


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.orchestrate]\nmax_attempts = 5\ntimeout = 9\nparallel = 2\n"
    )
    env = {"ORCHESTRATE_TIMEOUT": "7", "ORCHESTRATE_PARALLEL": "3"}
    settings = load_settings(tmp_path, {"parallel": 4, "max_cost": None}, environ=env)
    assert (settings.max_attempts, settings.timeout, settings.parallel) == (5, 7.0, 4)
    assert settings.max_cost is None


def test_orchestrate_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.orchestrate]\nmax_attempts = 5\n")
    (tmp_path / "orchestrate.toml").write_text('verify = ["true"]\n')
    settings = load_settings(tmp_path, environ={})
    assert settings.verify == ["true"]
    assert settings.max_attempts == 3


def test_bad_setting_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "orchestrate.toml").write_text("max_attempts = 0\n")
    with pytest.raises(ConfigError, match=r"max_attempts.*orchestrate\.toml"):
        load_settings(tmp_path, environ={})


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    (tmp_path / "orchestrate.toml").write_text("max_atempts = 2\n")
    with pytest.raises(ConfigError, match="max_atempts"):
        load_settings(tmp_path, environ={})


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    (tmp_path / "orchestrate.toml").write_text("verify = [\n")
    with pytest.raises(ConfigError, match="orchestrate.toml: not valid TOML"):
        load_settings(tmp_path, environ={})


def test_the_default_agent_is_anthropic_unless_a_script_is_given(tmp_path: Path) -> None:
    assert load_settings(tmp_path, environ={}).agent == "anthropic"
    scripted = load_settings(tmp_path, {"script": tmp_path / "s.json"}, environ={})
    assert scripted.agent == "scripted"
    chosen = load_settings(tmp_path, {"script": tmp_path / "s.json", "agent": "command"}, environ={})
    assert chosen.agent == "command"
