"""`qbflow serve` as a person runs it: a process on 127.0.0.1 that prints where it is (and the new API token,
once), answers the API with that token, and stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.serve import READY, serve_env, serves, serving, stop, url_in


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_prints_where_and_the_new_token_once_then_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    env = serve_env(tmp_path)
    with serving(env) as (process, lines):
        url = url_in(lines)
        assert lines[1] == f"Dashboard: {url}/  (log in with the API token)\n"
        token = re.match(r"API token: (\S+)\n", lines[2]).group(1)
        assert "Shown only this once" in lines[3] and "QBFLOW_API_TOKEN" in lines[3]
        assert "engine running" in lines[-1]
        assert httpx.get(f"{url}/healthz").json() == {"ok": True, "engine": True}
        assert httpx.get(f"{url}/api/workflows", headers={"Authorization": f"Bearer {token}"}).json() == []
        assert httpx.get(f"{url}/api/workflows", headers={"Authorization": "Bearer nope"}).status_code == 401
        out, _err = stop(process, sig)
    assert out.rstrip().endswith("stopped.")
    assert not serves(url)
    assert token not in (tmp_path / "data" / "api-token.sha256").read_text()

    with serving(env) as (process, lines):  # the next start: the same token works, and is not shown again
        url = url_in(lines)
        assert token not in "".join(lines)
        assert lines[2].startswith("API token: the one shown when it was made")
        assert httpx.get(f"{url}/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        stop(process)


def test_serve_with_qbflow_api_token_and_no_engine(tmp_path: Path) -> None:
    env = serve_env(tmp_path, QBFLOW_API_TOKEN="my-own-token-0123456789")
    with serving(env, "--no-engine") as (process, lines):
        url = url_in(lines)
        assert lines[2] == "API token: the one in QBFLOW_API_TOKEN\n"
        assert "my-own-token" not in "".join(lines)
        assert "no engine here (--no-engine)" in lines[-1]
        assert httpx.get(f"{url}/healthz").json() == {"ok": True, "engine": False}
        answer = httpx.get(f"{url}/api/connections", headers={"Authorization": "Bearer my-own-token-0123456789"})
        assert answer.status_code == 200 and answer.json() == []
        stop(process)
    assert not (tmp_path / "data" / "api-token.sha256").exists()


def test_serve_beyond_localhost_warns_about_https(tmp_path: Path) -> None:
    # 127.0.0.2 is still this machine (no one else can connect), but it is not the default local address.
    env = serve_env(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "qbflow.cli", "serve", "--host", "127.0.0.2", "--port", "0",
                                "--no-engine", "--public-url", "https://qbflow.example.com"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        lines = []
        while not lines or READY not in lines[-1]:
            line = process.stdout.readline()
            assert line, "".join(lines) + process.stderr.read()
            lines.append(line)
        text = "".join(lines)
        assert lines[0].startswith("qbflow server at http://127.0.0.2:")
        assert lines[1] == "Dashboard: https://qbflow.example.com/  (log in with the API token)\n"
        assert "Warning: listening on 127.0.0.2" in text and "HTTPS" in text
        stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serve_on_a_taken_port_says_so(tmp_path: Path) -> None:
    env = serve_env(tmp_path)
    with serving(env, "--no-engine") as (process, lines):
        port = url_in(lines).rsplit(":", 1)[1]
        taken = subprocess.run([sys.executable, "-m", "qbflow.cli", "serve", "--port", port], env=env,
                               capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        stop(process)
    assert taken.returncode == 1
    assert taken.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port} (Address already in use)"), taken.stderr
    assert "Traceback" not in taken.stderr
