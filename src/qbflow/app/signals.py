"""SIGINT and SIGTERM as a stop event, for the processes `qbflow run`, `serve` and `up` run.

    stop = asyncio.Event()
    with stop_on_signals(stop, asyncio.current_task()):   # the first signal sets `stop`, a second cancels
        await engine.run_forever(stop=stop)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["stop_on_signals"]


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, task: asyncio.Task[Any] | None = None) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop`; with a `task`, a second one cancels it (runs in flight are then abandoned,
    and resumed by the next engine start). Main thread only (elsewhere nothing is installed); the previous
    handlers come back afterwards."""
    loop = asyncio.get_running_loop()
    installed: list[tuple[signal.Signals, Any]] = []

    def handle() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, handle)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, or no signals here
                continue
            installed.append((sig, previous))
    try:
        yield
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            if previous is not None:
                with contextlib.suppress(TypeError, ValueError, OSError):
                    signal.signal(sig, previous)
