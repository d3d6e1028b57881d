"""Code run in child processes (spawned: it must be importable, not defined inside a test)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from qbflow.store import ConnectionStore, SecretBox, TokenResult, make_engine


def rotate_in_process(
    url: str, key: str, name: str, expected_version: int, barrier: Any, calls_file: str, results: Any
) -> None:
    """Open a store of its own, wait for the others, then rotate; report the outcome on `results`."""
    engine = make_engine(url)
    store = ConnectionStore(engine, SecretBox([key]))

    def refresh(refresh_token: str) -> TokenResult:
        with open(calls_file, "a") as calls:
            calls.write(f"{os.getpid()} {refresh_token}\n")
        time.sleep(0.5)  # a slow token endpoint widens the window for a second refresh
        return TokenResult(
            access_token=f"access-from-{os.getpid()}",
            refresh_token=f"refresh-from-{os.getpid()}",
            access_expires_at=datetime.now(UTC) + timedelta(hours=1),
        )

    try:
        barrier.wait(timeout=60)
        record = store.rotate(name, expected_version, refresh)
        results.put((record.access_token, record.refresh_token, record.token_version))
    except BaseException as exc:
        results.put(("error", repr(exc), -1))
        raise
    finally:
        engine.dispose()
