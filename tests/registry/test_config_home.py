"""The registry home is absolute, whatever folder the server was started from."""

from __future__ import annotations

from pathlib import Path

import pytest

from storecast.registry.config import RegistryConfig


def test_a_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Files are served by path (artifacts, TUF targets): a relative home would resolve
    # against the web framework's package folder instead of where the operator ran init.
    monkeypatch.chdir(tmp_path)
    config = RegistryConfig(home=Path("cloud-home"))
    assert config.home == tmp_path / "cloud-home"
    assert config.artifacts_dir.is_absolute()
