from __future__ import annotations

from pathlib import Path

import pytest

from qbflow.settings import Settings, get_settings


def test_defaults_live_in_the_data_dir(tmp_path: Path) -> None:
    settings = get_settings()
    data = tmp_path / "data"
    assert settings.data_dir == data
    assert settings.database_url == f"sqlite:///{data / 'qbflow.sqlite3'}"
    assert settings.key_file == data / "secret.key"
    assert settings.secret_key is None
    assert not data.exists(), "reading the settings must not create anything"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("QBFLOW_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("QBFLOW_SECRET_KEY", "not-shown")
    monkeypatch.setenv("QBFLOW_KEY_FILE", str(tmp_path / "k"))
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.key_file == tmp_path / "k"
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "not-shown"
    assert "not-shown" not in repr(settings)
    assert "not-shown" not in str(settings)


def test_default_data_dir_is_the_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QBFLOW_DATA_DIR")
    assert Settings().data_dir.name == "qbflow"


def test_repr_hides_the_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBFLOW_DATABASE_URL", "postgresql+psycopg://user:pa55word@host/db")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://user:pa55word@host/db"
    assert "pa55word" not in repr(settings) and "pa55word" not in str(settings)
    assert "user:***@host" in repr(settings)
