"""`qbflow serve` and `qbflow up` as subprocesses, for the server's and the engine's tests.

    with serving(serve_env(tmp_path), "--no-engine") as (process, lines):
        url = url_in(lines)
        ...
        out, err = stop(process)                      # SIGTERM: it must stop cleanly
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["READY", "lines_until", "serve_env", "serves", "serving", "stop", "url_in"]

READY = "Ctrl-C stops it"  # what `qbflow serve` prints once it answers


def serves(url: str) -> bool:
    """Whether something accepts connections at `url` (http://HOST:PORT) now."""
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("QBFLOW_")}
    return {**env, "QBFLOW_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **extra}


@contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """`qbflow serve --port 0 ARGS` until it says it is ready: (process, the lines it printed so far)."""
    process = subprocess.Popen([sys.executable, "-m", "qbflow.cli", "serve", "--port", "0", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        lines = lines_until(process, lambda line: READY in line)
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def lines_until(process: subprocess.Popen, done: Callable[[str], bool], timeout: float = 60) -> list[str]:
    """What `process` prints, read line by line up to the first line `done` accepts (within `timeout` s, or
    until its output ends); fails with everything it printed, its errors included, when that line never comes."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if done(line):
            break
    assert lines and done(lines[-1]), "".join(lines) + process.stderr.read()
    return lines


def url_in(lines: list[str]) -> str:
    match = re.match(r"qbflow server at (http://127\.0\.0\.1:\d+) ", lines[0])
    assert match, lines
    return match.group(1)


def stop(process: subprocess.Popen, sig: signal.Signals = signal.SIGTERM) -> tuple[str, str]:
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, out + err
    assert "Traceback" not in err, err
    return out, err

