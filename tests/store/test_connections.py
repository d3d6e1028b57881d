from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import make_url

from qbflow.errors import ConfigError
from qbflow.store import (
    STATUS_NEEDS_RECONNECT,
    STATUS_OK,
    ConnectionExists,
    ConnectionNotFound,
    ConnectionStore,
    SecretBox,
    TokenResult,
    open_store,
)
from qbflow.store.db import sqlite_file

from .conftest import ACCESS_TOKEN, CLIENT_SECRET, REFRESH_TOKEN, add_connection, tokens

SECRETS = (ACCESS_TOKEN, REFRESH_TOKEN, CLIENT_SECRET)


def test_add_then_get(connections: ConnectionStore) -> None:
    added = add_connection(connections)
    got = connections.get("acme")
    assert got == added
    assert got.realm_id == "9130350000000001"
    assert got.company_name == "Acme Ltd"
    assert got.environment == "sandbox"
    assert (got.client_secret, got.access_token, got.refresh_token) == (CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN)
    assert got.status == STATUS_OK and not got.needs_reconnect
    assert got.token_version == 1
    for when in (got.access_expires_at, got.refresh_expires_at, got.created_at, got.updated_at):
        assert when is not None and when.utcoffset() == timedelta(0)


def test_times_come_back_in_utc(connections: ConnectionStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    expires = datetime(2030, 1, 1, 12, 0, tzinfo=plus_two)
    add_connection(connections, tokens=TokenResult(access_token="a", refresh_token="r", access_expires_at=expires))
    got = connections.get("acme")
    assert got.access_expires_at == expires
    assert got.access_expires_at.tzinfo is not None and got.access_expires_at.utcoffset() == timedelta(0)
    assert got.access_token_expires_within(60, now=expires - timedelta(seconds=30))
    assert not got.access_token_expires_within(60, now=expires - timedelta(seconds=120))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TokenResult(access_token="a", access_expires_at=datetime(2030, 1, 1))


def test_list_and_find_by_realm(connections: ConnectionStore) -> None:
    add_connection(connections, "zeta", realm_id="1")
    add_connection(connections, "alpha", realm_id="2")
    add_connection(connections, "mid", realm_id="1")
    assert [record.name for record in connections.list()] == ["alpha", "mid", "zeta"]
    assert [record.name for record in connections.find_by_realm("1")] == ["mid", "zeta"]
    assert connections.find_by_realm("nope") == []


def test_names_are_unique(connections: ConnectionStore) -> None:
    add_connection(connections)
    with pytest.raises(ConnectionExists, match="acme") as caught:
        add_connection(connections, client_secret="other-secret-value")
    assert "other-secret-value" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_replace_is_a_reconnect(connections: ConnectionStore) -> None:
    first = add_connection(connections)
    connections.mark_needs_reconnect("acme", "refresh token expired")
    again = add_connection(connections, tokens=tokens("new-access", "new-refresh"), realm_id="42", replace=True)
    assert again.id == first.id and again.created_at == first.created_at
    assert again.token_version == first.token_version + 1
    assert (again.access_token, again.refresh_token, again.realm_id) == ("new-access", "new-refresh", "42")
    assert again.status == STATUS_OK and again.status_detail is None
    assert connections.get("acme") == again


def test_missing_connection(connections: ConnectionStore) -> None:
    for call in (
        lambda: connections.get("ghost"),
        lambda: connections.remove("ghost"),
        lambda: connections.mark_needs_reconnect("ghost", "x"),
        lambda: connections.save_tokens("ghost", tokens()),
        lambda: connections.rotate("ghost", 1, lambda _: tokens()),
    ):
        with pytest.raises(ConnectionNotFound, match="ghost"):
            call()


def test_remove(connections: ConnectionStore) -> None:
    add_connection(connections)
    connections.remove("acme")
    assert connections.list() == []


def test_save_tokens_bumps_the_version(connections: ConnectionStore) -> None:
    before = add_connection(connections)
    after = connections.save_tokens("acme", tokens("a2", None))
    assert after.token_version == before.token_version + 1
    assert after.access_token == "a2"
    assert after.refresh_token == REFRESH_TOKEN, "no new refresh token: keep the old one"
    assert after.refresh_expires_at == before.refresh_expires_at
    assert after.updated_at >= before.updated_at


def test_mark_needs_reconnect(connections: ConnectionStore) -> None:
    add_connection(connections)
    marked = connections.mark_needs_reconnect("acme", "invalid_grant")
    assert marked.status == STATUS_NEEDS_RECONNECT and marked.needs_reconnect
    assert connections.get("acme").status_detail == "invalid_grant"


def test_reprs_mask_secrets(connections: ConnectionStore) -> None:
    record = add_connection(connections)
    token_result = tokens()
    for text in (repr(record), str(record), repr(token_result), str(token_result), repr(connections)):
        for secret in SECRETS:
            assert secret not in text
    assert "access_token='***'" in repr(record)
    assert "client_secret='***'" in repr(record)
    assert "refresh_token='***'" in repr(token_result)
    assert "name='acme'" in repr(record)


def test_a_different_key_cannot_read_the_store(db_url: str, box: SecretBox) -> None:
    with open_store(url=db_url, box=box) as store:
        add_connection(store.connections)
    other = SecretBox([SecretBox.generate_key()])
    with open_store(url=db_url, box=other) as store:
        with pytest.raises(ConfigError, match="does not match") as caught:
            store.connections.get("acme")
    for secret in SECRETS:
        assert secret not in str(caught.value)


def test_reencrypt_all_after_key_rotation(db_url: str, key: str) -> None:
    new_key = SecretBox.generate_key()
    with open_store(url=db_url, box=SecretBox([key])) as store:
        add_connection(store.connections)
    with open_store(url=db_url, box=SecretBox([new_key, key])) as store:
        assert store.connections.reencrypt_all() == 1
    with open_store(url=db_url, box=SecretBox([new_key])) as store:
        assert store.connections.get("acme").access_token == ACCESS_TOKEN


def _database_bytes(url: str) -> bytes:
    path = sqlite_file(url)
    assert path is not None
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    return b"".join(file.read_bytes() for file in files if file.exists())


def test_no_secret_in_the_sqlite_file(tmp_path: Path, box: SecretBox) -> None:
    url = f"sqlite:///{tmp_path / 'plain.sqlite3'}"
    with open_store(url=url, box=box) as store:
        add_connection(store.connections)
        add_connection(store.connections, "second")
        store.connections.rotate("acme", 1, lambda _: tokens(ACCESS_TOKEN + "-2", REFRESH_TOKEN + "-2"))
        store.connections.save_tokens("second", tokens(ACCESS_TOKEN + "-3", REFRESH_TOKEN + "-3"))
        while_open = _database_bytes(url)  # the WAL holds the latest writes
        assert b"acme" in while_open, "sanity: the scan sees the data"
    after_close = _database_bytes(url)
    for data in (while_open, after_close):
        for secret in SECRETS:
            assert secret.encode() not in data


def test_sqlite_pragmas(tmp_path: Path) -> None:
    from qbflow.store import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'p.sqlite3'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()


def test_sqlite_file_of_urls(tmp_path: Path) -> None:
    assert sqlite_file(f"sqlite:///{tmp_path / 'x.db'}") == tmp_path / "x.db"
    assert sqlite_file("sqlite://") is None
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file(make_url("postgresql+psycopg://u@h/db")) is None


def test_make_engine_creates_missing_folders(tmp_path: Path) -> None:
    from qbflow.store import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'c.sqlite3'}")
    upgrade(engine)
    engine.dispose()
    assert (tmp_path / "a" / "b" / "c.sqlite3").is_file()


def test_no_secret_reaches_the_logs(db_url: str, box: SecretBox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # SQLAlchemy logs statements, and rows too, at DEBUG
    with open_store(url=db_url, box=box) as store:
        add_connection(store.connections)
        store.connections.rotate("acme", 1, lambda _: tokens(ACCESS_TOKEN + "-2", REFRESH_TOKEN + "-2"))
        store.connections.get("acme")
        with pytest.raises(ConnectionExists):
            add_connection(store.connections)
    assert "connections" in caplog.text, "sanity: SQL was logged"
    for secret in SECRETS:
        assert secret not in caplog.text
