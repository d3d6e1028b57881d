"""`qbflow connect` as a user runs it, for every test that needs a stored connection made the real way: the app's
credentials, a `qbflow sandbox` approving at once (`sandbox_url`, a module-scoped fixture), the environment a
`qbflow` subprocess runs with (`qbflow_env`; `env`, a module-scoped fixture, with the connection "demo" made), and
the connection it stored."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qbflow.store import ConnectionRecord, SecretBox, open_store
from tests.support.sandbox import running_sandbox

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "ConnectRun", "env", "qbflow_env", "sandbox_url", "stored"]

CLIENT_ID = "ABqbflowConnectTest0001"
CLIENT_SECRET = "connect-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """A sandbox that approves at once (the first company)."""
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit") as (base, _process):
        yield base


def qbflow_env(tmp_path: Path) -> dict[str, str]:
    """Everything qbflow keeps goes under tmp_path; the app's credentials come from the environment."""
    return {
        "QBFLOW_DATA_DIR": str(tmp_path / "data"),
        "QBFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'qbflow.sqlite3'}",
        "QBFLOW_SECRET_KEY": SecretBox.generate_key(),
        "QBFLOW_CLIENT_ID": CLIENT_ID,
        "QBFLOW_CLIENT_SECRET": CLIENT_SECRET,
    }


class ConnectRun:
    """`qbflow connect NAME --sandbox URL --no-browser` running in a subprocess."""

    def __init__(self, name: str, base: str, env: dict[str, str], *extra: str) -> None:
        (Path(env["QBFLOW_DATA_DIR"])).mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "qbflow.cli", "connect", name, "--sandbox", base, "--no-browser",
                   "--timeout", "60", *extra]
        self.base = base
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **env, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []

    def authorize_url(self) -> str:
        """The URL the command prints (read line by line, as a script would)."""
        deadline = time.monotonic() + 30
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if line.startswith(f"{self.base}/connect/oauth2?"):
                return line.strip()
        self.process.kill()
        raise AssertionError(f"no authorization URL printed:\n{''.join(self.lines)}{self.process.stderr.read()}")

    def finish(self) -> tuple[int, str, str]:
        # Read through the text wrappers (communicate() would skip what readline() already buffered);
        # the output is small, so waiting first cannot fill a pipe.
        self.process.wait(timeout=60)
        out, err = self.process.stdout.read(), self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return self.process.returncode, "".join(self.lines) + out, err


def stored(env: dict[str, str], name: str) -> ConnectionRecord:
    old = dict(os.environ)
    os.environ.update(env)
    try:
        with open_store() as store:
            return store.connections.get(name)
    finally:
        os.environ.clear()
        os.environ.update(old)


@pytest.fixture(scope="module")
def env(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """qbflow's settings for a data directory (one per test module) holding the connection "demo" to `sandbox_url`,
    made by `qbflow connect`."""
    env = qbflow_env(tmp_path_factory.mktemp("qbflow"))
    Path(env["QBFLOW_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "qbflow.cli", "connect", "demo", "--sandbox", sandbox_url, "--timeout", "60"],
        env={**os.environ, **env, "BROWSER": "false", "DISPLAY": "", "COLUMNS": "200"},
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    return env

