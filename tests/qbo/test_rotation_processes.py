"""Two processes sharing one SQLite database find the access token expired at the same moment: the refresh
token is used exactly once (token_version grows by one) and both carry on with the rotated tokens."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path
from typing import Any

import httpx

from qbflow.qbo.connect import Environment, connect
from qbflow.qbo.connections import client_for
from qbflow.store import AsyncConnectionStore, SecretBox, open_store
from tests.support.sandbox import running_sandbox

CLIENT_ID = "ABqbflowRotationTest0001"
CLIENT_SECRET = "rotation-secret-0123456789abcdef"
CALLS_PER_PROCESS = 5


def follow(url: str) -> None:
    """The browser: the auto-approving consent page redirects to qbflow's callback."""
    httpx.get(url, follow_redirects=True, timeout=30).raise_for_status()


def worker(database_url: str, key: str, name: str, barrier: Any, results: Any) -> None:
    """One process: its own store, event loop and client; waits for the other, then makes its calls."""

    async def main() -> tuple[int, int, list[str]]:
        with open_store(url=database_url, box=SecretBox([key])) as store:
            async with AsyncConnectionStore(store.connections) as astore:
                async with await client_for(name, astore) as qbo:
                    await asyncio.to_thread(barrier.wait, 60)
                    infos = await asyncio.gather(*(qbo.company_info() for _ in range(CALLS_PER_PROCESS)))
                    tokens = qbo._tokens  # noqa: SLF001
                    return tokens.refreshes, tokens.token_version, [info["CompanyName"] for info in infos]

    try:
        results.put(("ok", *asyncio.run(main())))
    except BaseException as exc:  # report, so the parent can say what went wrong
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_two_processes_rotate_once(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    key = SecretBox.generate_key()
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit") as (base, _process):
        with open_store(url=database_url, box=SecretBox([key])) as store:

            async def make_connection():
                async with AsyncConnectionStore(store.connections) as astore:
                    return await connect("shared", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                         environment=Environment.local(base), store=astore, open_url=follow,
                                         timeout=30)

            before = asyncio.run(make_connection())
        httpx.post(f"{base}/_sandbox/clock", json={"advance": 3601}).raise_for_status()  # both see 401s now

        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(2), context.Queue()
        processes = [context.Process(target=worker, args=(database_url, key, "shared", barrier, results))
                     for _ in range(2)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0

    assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
    for _, rotations, version, names in outcomes:
        assert rotations == 1  # each process replaced its token once: one refreshed, the other adopted
        assert version == before.token_version + 1
        assert names == ["Sandbox Company_US_1"] * CALLS_PER_PROCESS
    with open_store(url=database_url, box=SecretBox([key])) as store:
        after = store.connections.get("shared")
    assert after.token_version == before.token_version + 1  # exactly one refresh reached the token endpoint
    assert after.refresh_token != before.refresh_token and after.status == "ok"
