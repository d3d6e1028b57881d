"""asyncio primitives that can be shared by long-lived objects used from more than one event loop.

An asyncio.Lock or Semaphore belongs to the first loop that waits on it; a process-wide object (a
realm's pacer, a token provider) may outlive that loop (each `asyncio.run`, each test, has its own).
`PerLoop` makes one primitive per running loop, so sharing stays correct within a loop and harmless
across loops.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """`get()` returns the object `factory` made for the running event loop."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        value = self._by_loop.get(loop)
        if value is None:
            value = self._by_loop[loop] = self._factory()
        return value
