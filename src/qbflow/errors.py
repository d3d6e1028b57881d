"""The one error hierarchy of qbflow.

Every error qbflow raises on purpose derives from `QBFlowError`, so a caller can catch them all with one
`except`. Subclasses live in their rooms (`qbflow.store.errors`, `qbflow.qbo`, ...) and root here; only the
errors that belong to no single room are defined in this module.

    QBFlowError
    └── ConfigError        settings, keys or files that are missing, malformed or unsafe
"""

from __future__ import annotations


class QBFlowError(Exception):
    """Root of every error qbflow raises on purpose."""


class ConfigError(QBFlowError):
    """The configuration (environment, settings, key file) is missing, malformed or unsafe.

    The message says what is wrong and how to fix it; it never contains a secret.
    """
