"""Configuration from `QBFLOW_*` environment variables, with defaults that work on a laptop.

Every value can be set in the environment (`QBFLOW_DATABASE_URL`, `QBFLOW_SECRET_KEY`, ...) and
overridden by CLI flags. Nothing is created on disk here: the rooms that need a folder create it when
they first write to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url

DATABASE_FILE_NAME = "qbflow.sqlite3"
KEY_FILE_NAME = "secret.key"


def default_data_dir() -> Path:
    """The per-user data folder (`~/.local/share/qbflow` on Linux); not created here."""
    return Path(user_data_dir("qbflow", appauthor=False))


class Settings(BaseSettings):
    """qbflow's settings, read from `QBFLOW_*` environment variables.

    `database_url` and `key_file` default to files inside `data_dir`, so setting `QBFLOW_DATA_DIR` alone
    moves everything.
    """

    model_config = SettingsConfigDict(env_prefix="QBFLOW_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir, description="Folder for the database and key file.")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; default: an SQLite file `qbflow.sqlite3` in data_dir.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "Fernet key(s) encrypting secrets at rest, comma-separated: the first encrypts, all decrypt "
            "(key rotation). Default: the key file."
        ),
    )
    key_file: Path | None = Field(
        default=None,
        description="File holding the key when QBFLOW_SECRET_KEY is unset; created with mode 0600 on first use.",
    )

    api_token: SecretStr | None = Field(
        default=None,
        description=(
            "Token for qbflow's HTTP API and dashboard login. Default: one generated on the server's first start, "
            "printed once, and kept only as a hash in data_dir."
        ),
    )
    webhook_verifier: SecretStr | None = Field(
        default=None,
        description="Intuit's webhook verifier token (signs POST /webhooks/intuit); webhooks are refused without it.",
    )
    public_url: str = Field(
        default="",
        description="The server's address as a browser reaches it (OAuth redirect URI); default http://HOST:PORT.",
    )
    shared_limits: bool = Field(
        default=True,
        description=(
            "On PostgreSQL, pace each company's requests across every process and machine through the database "
            "(Intuit's limits are per company, not per worker). Ignored on SQLite, where one process paces alone."
        ),
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description=(
            "Redis URL (`redis://[:password@]host:port/db`): keep each company's shared limits in Redis instead of "
            "PostgreSQL (needs `qbflow[workers]`). Kept secret: it may carry a password."
        ),
    )

    max_runs: int = Field(
        default=200, ge=1,
        description="Runs in flight at once in one engine (`qbflow run`, `serve`, `up`), over all companies.",
    )
    runs_per_company: int = Field(
        default=20, ge=1,
        description=(
            "Runs in flight at once per company (the trigger's connection). Intuit admits 10 requests at a time per "
            "company; twice that keeps its limit busy while runs do their own work between requests."
        ),
    )

    @model_validator(mode="after")
    def _defaults_inside_data_dir(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / DATABASE_FILE_NAME}"
        if self.key_file is None:
            self.key_file = self.data_dir / KEY_FILE_NAME
        else:
            self.key_file = self.key_file.expanduser()
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A database URL may carry a password.
        for name, value in super().__repr_args__():
            if name == "database_url" and value:
                value = make_url(value).render_as_string(hide_password=True)
            yield name, value


def get_settings() -> Settings:
    """Read the settings from the environment now (not cached, so a changed environment is seen)."""
    return Settings()
