"""Processes for the engine's end-to-end tests: a connected data directory, and `qbflow run` started, killed
with SIGKILL and started again, its output kept in a log file per start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.connect import qbflow_env


def connected_env(base: str, data: Path, name: str = "demo") -> dict[str, str]:
    """qbflow's settings for a data directory holding the connection `name` to the sandbox at `base`,
    made the way a user makes it (`qbflow connect NAME --sandbox URL`; the sandbox must --auto-approve)."""
    env = qbflow_env(data)
    Path(env["QBFLOW_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    result = qbflow(env, "connect", name, "--sandbox", base, "--timeout", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    return env


def qbflow(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """A qbflow command as a separate process, run to its end."""
    return subprocess.run([sys.executable, "-m", "qbflow.cli", *args], env=_environ(env), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _environ(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env, "BROWSER": "false", "DISPLAY": "", "COLUMNS": "200"}


class _Background:
    """A qbflow command in the background, its output in the log file `log`."""

    def __init__(self, env: dict[str, str], log: Path, args: list[str]) -> None:
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "qbflow.cli", *args], env=_environ(env),
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class EngineProcess(_Background):
    """`qbflow run` in the background; `kill()` is SIGKILL (no cleanup of any kind), `stop()` is Ctrl-C."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        super().__init__(env, log, ["run", *args])

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C (the runs in flight finish first); SIGKILL if it does not end within `timeout`."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGINT)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (as a service manager stops it); its exit code, waiting at most `timeout` seconds."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=timeout)


class WorkerProcess(_Background):
    """`qbflow worker` in the background, its output in a log file; `kill()` is SIGKILL, `stop()` SIGTERM."""

    def __init__(self, env: dict[str, str], log: Path, *, concurrency: int = 3, tick: int = 1,
                 stalled_after: str = "4") -> None:
        super().__init__(env, log, ["worker", "--concurrency", str(concurrency), "--tick", str(tick),
                                    "--stalled-after", stalled_after])

    def stop(self) -> int:
        """SIGTERM: the jobs in flight finish, then it exits."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def tcp_ports(self) -> set[int]:
        """The local ports of its TCP sockets (Linux: /proc), e.g. to find its sessions in pg_stat_activity."""
        return local_tcp_ports(self.process.pid)


def local_tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process `pid` holds, read from /proc (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
