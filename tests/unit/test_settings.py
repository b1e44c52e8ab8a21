"""Settings precedence (defaults < dlcrun.toml < DLCRUN_* < flags) and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlcrun.errors import ConfigError
from dlcrun.settings import load_settings, render_template


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text('dest = "/from/file"\nshuffle = 3\nmax_running = 4\n[resources]\ngpus = 1\n')
    monkeypatch.delenv("DLCRUN_SHUFFLE", raising=False)
    s = load_settings(toml)
    assert (s.dest, s.shuffle, s.max_running, s.resources.gpus, s.scheduler) == ("/from/file", 3, 4, 1, "local")
    monkeypatch.setenv("DLCRUN_SHUFFLE", "5")
    assert load_settings(toml).shuffle == 5
    assert load_settings(toml, shuffle=7, dest=None).shuffle == 7  # None flags do not override
    assert load_settings(toml, shuffle=7, dest=None).dest == "/from/file"


def test_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text("destination = '/x'\n")
    with pytest.raises(ConfigError, match=r"dlcrun.toml: unknown setting 'destination' \(known: .*dest,"):
        load_settings(toml)


def test_bad_value_names_the_field(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text("max_running = 0\n")
    with pytest.raises(ConfigError, match="max_running"):
        load_settings(toml)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="settings file not found"):
        load_settings(tmp_path / "nope.toml")


def test_init_template_loads_back_to_the_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "dlcrun.toml"
    toml.write_text(render_template())
    assert load_settings(toml) == load_settings(None)
