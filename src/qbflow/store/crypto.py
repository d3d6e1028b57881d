"""Encryption of secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with key rotation.

Where the key comes from, first match wins:

1. `QBFLOW_SECRET_KEY`: one or more Fernet keys, comma-separated. The first encrypts; all of them decrypt,
   so a key is rotated by putting the new key first and keeping the old one after it until every stored
   secret has been re-encrypted (`ConnectionStore.reencrypt_all`).
2. The key file (`QBFLOW_KEY_FILE`, default `<data dir>/secret.key`), same format, one key per line or
   comma-separated. It must not be accessible by group or others.
3. Neither exists: a new key is generated and the key file is created with mode 0600, atomically, so two
   processes starting at once agree on one key.

No message, repr or log line made here contains a key or a plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from qbflow.errors import ConfigError
from qbflow.settings import KEY_FILE_NAME, Settings

ENV_VAR = "QBFLOW_SECRET_KEY"

# A process that loses the race to create the key file waits this long for the winner to finish writing it.
_KEY_FILE_WAIT_SECONDS = 5.0


class SecretBox:
    """Encrypts and decrypts short strings (tokens, client secrets) with one or more Fernet keys.

    >>> box = SecretBox([SecretBox.generate_key()])
    >>> box.decrypt(box.encrypt("s3cret"))
    's3cret'
    """

    def __init__(self, keys: Sequence[str | bytes], *, source: str = "the given key") -> None:
        """Build a box from Fernet keys (the first encrypts, all decrypt).

        `source` says where the keys came from; it appears in error messages, so it must not be a key.
        """
        if not keys:
            raise ConfigError(f"No encryption key in {source}.")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                # Never chain: the original exception could carry the malformed key.
                raise ConfigError(
                    f"Key number {position} in {source} is not a Fernet key (32 url-safe base64-encoded bytes). "
                    "Generate one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                ) from None
        self._fernet = MultiFernet(fernets)
        self._derivation_key = hashlib.sha256(b"qbflow derived keys\0" + _key_bytes(keys[0])).digest()
        self._key_count = len(fernets)
        self._source = source

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key, as text."""
        return Fernet.generate_key().decode("ascii")

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The box for these settings: `QBFLOW_SECRET_KEY`, else the key file, else a new key file (0600)."""
        if settings.secret_key is not None and settings.secret_key.get_secret_value().strip():
            keys = _split_keys(settings.secret_key.get_secret_value())
            return cls(keys, source=ENV_VAR)
        key_file = settings.key_file or settings.data_dir / KEY_FILE_NAME
        return cls(load_or_create_key_file(key_file), source=f"the key file {key_file}")

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for `purpose` (e.g. signing session cookies), derived from the first key: stable
        while the key is, different per purpose, and telling nothing about the key itself."""
        return hmac.new(self._derivation_key, purpose.encode("utf-8"), hashlib.sha256).digest()

    @property
    def source(self) -> str:
        """Where the keys came from (`QBFLOW_SECRET_KEY` or the key file's path), for messages."""
        return self._source

    def encrypt(self, plaintext: str) -> str:
        """Encrypt `plaintext` with the first key; the result is url-safe ASCII text."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt a value made by `encrypt` with any of the keys.

        Raises `ConfigError` when no key fits, which means the key is not the one the database was written
        with.
        """
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError):
            raise self._wrong_key_error() from None

    def rotate(self, token: str) -> str:
        """Re-encrypt a stored value with the first key (for key rotation); same errors as `decrypt`."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise self._wrong_key_error() from None

    def _wrong_key_error(self) -> ConfigError:
        return ConfigError(
            f"Cannot decrypt a stored secret: the encryption key from {self._source} does not match the key "
            f"this database was written with. Set {ENV_VAR} (or restore the key file) to the original key; "
            "to rotate keys, put the new key first and keep the old one after it, comma-separated."
        )

    def __repr__(self) -> str:
        return f"SecretBox(keys={self._key_count}, source={self._source!r})"


def _key_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode("ascii")


def _split_keys(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def load_or_create_key_file(path: Path) -> list[str]:
    """Read the keys in `path`, creating it with one new key (mode 0600) if it does not exist.

    Creation uses `O_CREAT | O_EXCL`, so when two processes race exactly one creates the file and the
    other reads the winner's key.
    """
    path = Path(path)
    try:
        return _read_key_file_when_written(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = SecretBox.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    except FileExistsError:
        return _read_key_file_when_written(path)
    try:
        os.write(fd, (key + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return [key]


def _read_key_file(path: Path) -> list[str]:
    _check_key_file_mode(path)
    text = path.read_text(encoding="ascii", errors="replace")
    keys = _split_keys(text)
    if not keys:
        raise _EmptyKeyFile(
            f"The key file {path} is empty. If nothing was ever encrypted with it, delete it and a new key "
            f"will be made; otherwise restore the original key (or set {ENV_VAR})."
        )
    return keys


def _read_key_file_when_written(path: Path) -> list[str]:
    # An empty file may be one another process created an instant ago and is about to write the key into.
    deadline = time.monotonic() + _KEY_FILE_WAIT_SECONDS
    while True:
        try:
            return _read_key_file(path)
        except _EmptyKeyFile:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _check_key_file_mode(path: Path) -> None:
    mode = path.stat().st_mode  # FileNotFoundError goes to the caller, which then creates the file.
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"The key file {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"refusing to use it. Run: chmod 600 {path}"
        )


class _EmptyKeyFile(ConfigError):
    pass
