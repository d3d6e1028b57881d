"""`qbflow sandbox` as a user starts it: a subprocess on a free port of 127.0.0.1, stopped at the end.

    with running_sandbox("--auto-approve", "--no-rate-limit") as (base, process):
        httpx.get(f"{base}/.well-known/openid_sandbox_configuration")
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["free_port", "running_sandbox"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_sandbox(*args: str, log: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `qbflow sandbox` and wait until it answers; stop it at the end. Its output goes to the file `log` (a
    temporary file without it), never to a pipe: a pipe nobody reads fills up once the sandbox logs a lot (errors
    of clients killed mid-request, injected faults), and the sandbox then blocks on its next log line and stops
    answering every request."""
    port = free_port()
    command = [sys.executable, "-m", "qbflow.cli", "sandbox", "--port", str(port), *args]
    with contextlib.ExitStack() as cleanup:
        if log is None:
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="qbflow-sandbox-")))
            log = folder / "sandbox.log"
        log_file = cleanup.enter_context(log.open("w"))
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "COLUMNS": "200"})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"sandbox exited early:\n{log.read_text(errors='replace')}")
                try:
                    httpx.get(f"{base}/.well-known/openid_sandbox_configuration", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise AssertionError("sandbox did not start within 30 s") from None
                    time.sleep(0.1)
            yield base, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

