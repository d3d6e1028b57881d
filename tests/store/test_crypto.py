from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from qbflow.errors import ConfigError, QBFlowError
from qbflow.settings import Settings
from qbflow.store import crypto
from qbflow.store.crypto import SecretBox


def test_round_trip() -> None:
    box = SecretBox([SecretBox.generate_key()])
    for plaintext in ["", "s3cret", "ünïcødé ✓", "x" * 5000]:
        token = box.encrypt(plaintext)
        assert plaintext == "" or plaintext not in token
        assert box.decrypt(token) == plaintext


def test_each_encryption_differs() -> None:
    box = SecretBox([SecretBox.generate_key()])
    assert box.encrypt("same") != box.encrypt("same")


def test_key_rotation_first_key_encrypts_all_decrypt() -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    stored = SecretBox([old]).encrypt("token")
    both = SecretBox([new, old])
    assert both.decrypt(stored) == "token"
    rotated = both.rotate(stored)
    assert SecretBox([new]).decrypt(rotated) == "token"
    assert SecretBox([new]).decrypt(both.encrypt("fresh")) == "fresh"


def test_wrong_key_gives_a_clear_error_without_the_key(tmp_path: Path) -> None:
    right, wrong = SecretBox.generate_key(), SecretBox.generate_key()
    stored = SecretBox([right]).encrypt("the-plaintext")
    settings = Settings(secret_key=SecretStr(wrong), data_dir=tmp_path)
    box = SecretBox.from_settings(settings)
    with pytest.raises(ConfigError) as caught:
        box.decrypt(stored)
    message = str(caught.value)
    assert "does not match" in message
    assert "QBFLOW_SECRET_KEY" in message
    assert wrong not in message and right not in message and "the-plaintext" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert isinstance(caught.value, QBFlowError)


def test_wrong_key_from_key_file_names_the_file(tmp_path: Path) -> None:
    stored = SecretBox([SecretBox.generate_key()]).encrypt("x")
    settings = Settings(data_dir=tmp_path)
    box = SecretBox.from_settings(settings)
    with pytest.raises(ConfigError, match="does not match") as caught:
        box.decrypt(stored)
    assert str(tmp_path / "secret.key") in str(caught.value)
    assert (tmp_path / "secret.key").read_text().strip() not in str(caught.value)


def test_garbage_is_refused_like_a_wrong_key() -> None:
    box = SecretBox([SecretBox.generate_key()])
    for garbage in ["", "not a token", "ünï"]:
        with pytest.raises(ConfigError, match="does not match"):
            box.decrypt(garbage)


def test_malformed_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        SecretBox.from_settings(Settings(secret_key=SecretStr("hunter2-not-a-fernet-key")))
    assert "QBFLOW_SECRET_KEY" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_several_keys_in_the_environment(tmp_path: Path) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    stored = SecretBox([old]).encrypt("t")
    box = SecretBox.from_settings(Settings(secret_key=SecretStr(f" {new} , {old} "), data_dir=tmp_path))
    assert box.decrypt(stored) == "t"
    assert SecretBox([new]).decrypt(box.encrypt("u")) == "u"
    assert not (tmp_path / "secret.key").exists(), "no key file when the key comes from the environment"


def test_key_file_created_0600_then_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new" / "dir")
    first = SecretBox.from_settings(settings)
    key_file = tmp_path / "new" / "dir" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    second = SecretBox.from_settings(settings)
    assert second.decrypt(first.encrypt("same key")) == "same key"
    assert key_file.read_text().strip() not in repr(first)


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    SecretBox.from_settings(settings)
    key_file = tmp_path / "secret.key"
    key = key_file.read_text().strip()
    for mode in (0o640, 0o604, 0o660):
        os.chmod(key_file, mode)
        with pytest.raises(ConfigError, match="chmod 600") as caught:
            SecretBox.from_settings(settings)
        assert key not in str(caught.value)


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    barrier = threading.Barrier(8)
    results: list[list[str]] = []

    def load() -> None:
        barrier.wait()
        results.append(crypto.load_or_create_key_file(key_file))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(keys == results[0] for keys in results)
    assert key_file.read_text().split() == results[0]


def test_loser_of_the_race_waits_for_the_winners_key(tmp_path: Path) -> None:
    # The winner has created the file (O_EXCL) but not written the key yet.
    key_file = tmp_path / "secret.key"
    os.close(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    key = SecretBox.generate_key()

    def finish_writing() -> None:
        time.sleep(0.2)
        key_file.write_text(key + "\n")

    writer = threading.Thread(target=finish_writing)
    writer.start()
    try:
        assert crypto.load_or_create_key_file(key_file) == [key]
    finally:
        writer.join()


def test_empty_key_file_that_stays_empty_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "_KEY_FILE_WAIT_SECONDS", 0.05)
    key_file = tmp_path / "secret.key"
    os.close(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with pytest.raises(ConfigError, match="is empty"):
        crypto.load_or_create_key_file(key_file)


def test_repr_shows_nothing_secret() -> None:
    key = SecretBox.generate_key()
    box = SecretBox([key, SecretBox.generate_key()], source="QBFLOW_SECRET_KEY")
    assert repr(box) == "SecretBox(keys=2, source='QBFLOW_SECRET_KEY')"
    assert key not in repr(box)
