"""Masking secrets in data shown to people (`qbflow runs show`, the HTTP API, the dashboard).

    redacted({"headers": {"Authorization": "Bearer abc"}, "amount": 5})
    # {"headers": {"Authorization": "***"}, "amount": 5}
"""

from __future__ import annotations

__all__ = ["MASK", "SECRET_WORDS", "is_secret_key", "redacted"]

MASK = "***"
SECRET_WORDS = ("authorization", "token", "secret", "password", "api_key", "apikey", "cookie")


def is_secret_key(key: object) -> bool:
    """Whether a mapping key names a secret (Authorization, access_token, client-secret, Cookie...)."""
    return isinstance(key, str) and any(word in key.lower().replace("-", "_") for word in SECRET_WORDS)


def redacted(value: object) -> object:
    """JSON data with the (non-empty) values of secret-looking keys replaced by "***", at any depth."""
    if isinstance(value, dict):
        return {key: MASK if is_secret_key(key) and item else redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted(item) for item in value]
    return value
