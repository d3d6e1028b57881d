"""How close qbflow's QBO client gets to Intuit's limits without crossing them, and how it compares with
python-quickbooks on reads.

Starts `qbflow sandbox` on 127.0.0.1 (throttles on: 500 requests/min, 10 in flight, 40 batch requests/min
per company), connects through the sandbox's OAuth flow, then prints:

1. creates: N customer creates through `QBOClient.create`, all started at once and paced by the client;
   requests per minute reached (Intuit's limit: 500) and how many 429s the sandbox gave (goal: none);
2. the same N creates through `QBOClient.batch` (chunks of 30): records per minute and batch requests per
   minute (limit 40), 429s;
3. reads: M `GET /customer/{id}` through QBOClient (concurrent, paced) beside python-quickbooks doing the
   same reads one after another, with `--latency` seconds added to every answer by the sandbox (a network
   between client and Intuit); throttles off for this part, since python-quickbooks would stop at the
   first 429. Wall time of each and the ratio.

Not a test: it asserts nothing about timings. A full run takes about 4 + 4 minutes for the default 2,000
creates (the limit is the point); use --creates 600 for a quicker look.

    .venv/bin/python benchmarks/client.py [--creates 2000] [--reads 1000] [--latency 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

import httpx

from qbflow.qbo.client import QBOClient
from qbflow.qbo.pacing import Limits, RealmPacer
from qbflow.qbo.tokens import StaticTokens

CLIENT_ID = "ABbenchmarkClient"
CLIENT_SECRET = "benchmark-secret-not-a-real-one"
REDIRECT_URI = "http://127.0.0.1:9/callback"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sandbox(port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "qbflow.cli", "sandbox", "--port", str(port), "--auto-approve",
               "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_sandbox/companies", timeout=1).raise_for_status()
            return process
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the sandbox did not start") from None
            time.sleep(0.1)


def connect(base: str) -> tuple[str, dict]:
    """The authorization-code flow against the sandbox (auto-approve): realm id and the token answer."""
    authorize = httpx.get(f"{base}/connect/oauth2", params={
        "client_id": CLIENT_ID, "response_type": "code", "scope": "com.intuit.quickbooks.accounting",
        "redirect_uri": REDIRECT_URI, "state": "benchmark"})
    query = parse_qs(urlparse(authorize.headers["location"]).query)
    tokens = httpx.post(f"{base}/oauth2/v1/tokens/bearer", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT_URI})
    tokens.raise_for_status()
    return query["realmId"][0], tokens.json()


def refused(base: str) -> int:
    return httpx.get(f"{base}/_sandbox/limits").json()["refused"]


async def creates(base: str, realm: str, token: str, count: int) -> tuple[float, int, float]:
    """(seconds, requests, sustained requests/min): the first 500 may go at once (an empty window allows
    them), so the sustained rate is measured from the 500th answer to the last."""
    finished: list[float] = []

    async def one(client: QBOClient, n: int) -> None:
        await client.create("Customer", {"DisplayName": f"Paced Customer {n}"})
        finished.append(time.perf_counter())

    async with QBOClient(realm, base_url=base, tokens=StaticTokens(token), pacer=RealmPacer(realm)) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, n) for n in range(count)))
    finished.sort()
    sustained = (count - 500) / (finished[-1] - finished[499]) * 60 if count > 500 else 0.0
    return finished[-1] - started, count, sustained


async def batch_creates(base: str, realm: str, token: str, count: int) -> tuple[float, int, float]:
    """(seconds, batch requests, sustained batch requests/min after the first 40, which an empty window
    allows at once). Chunks of 30 are sent one by one to time each."""
    items = [{"operation": "create", "Customer": {"DisplayName": f"Batched Customer {n}"}} for n in range(count)]
    finished: list[float] = []
    failed = []
    async with QBOClient(realm, base_url=base, tokens=StaticTokens(token), pacer=RealmPacer(realm)) as client:
        started = time.perf_counter()
        for start in range(0, count, 30):
            results = await client.batch(items[start:start + 30])
            failed += [r for r in results if r.error is not None]
            finished.append(time.perf_counter())
    if failed:
        print(f"  {len(failed)} batch items failed, first: {failed[0].error}")
    sustained = (len(finished) - 40) / (finished[-1] - finished[39]) * 60 if len(finished) > 40 else 0.0
    return finished[-1] - started, len(finished), sustained


async def qbflow_reads(base: str, realm: str, token: str, ids: list[str]) -> float:
    # Only the in-flight cap applies here: the sandbox's throttles are off for the comparison, and a pacer
    # holding 500/min would measure Intuit's limit rather than the client.
    pacer = RealmPacer(realm, Limits(per_window=1_000_000, concurrent=10))
    async with QBOClient(realm, base_url=base, tokens=StaticTokens(token), pacer=pacer) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client.get("Customer", record_id) for record_id in ids))
        return time.perf_counter() - started


def python_quickbooks_reads(base: str, realm: str, tokens: dict, ids: list[str]) -> float | None:
    try:
        from intuitlib.client import AuthClient
        from quickbooks import QuickBooks
        from quickbooks.objects.customer import Customer
    except ImportError:
        return None
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the sandbox speaks plain http on loopback
    auth = AuthClient(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI,
                      environment=f"{base}/.well-known/openid_sandbox_configuration",
                      access_token=tokens["access_token"], refresh_token=tokens["refresh_token"])
    qb = QuickBooks(auth_client=auth, refresh_token=tokens["refresh_token"], company_id=realm, minorversion=75)
    qb.api_url_v3 = qb.sandbox_api_url_v3 = f"{base}/v3"
    started = time.perf_counter()
    for record_id in ids:
        Customer.get(record_id, qb=qb)
    return time.perf_counter() - started


def limits_part(base: str, realm: str, token: str, count: int) -> None:
    before = refused(base)
    elapsed, requests, sustained = asyncio.run(creates(base, realm, token, count))
    if count <= 500:
        print("note: 500 creates or fewer fit in one minute's allowance, so the rate below is a burst")
    print(f"creates  {count} records, {requests} requests in {elapsed:.1f} s; after the first minute's "
          f"allowance: {sustained:.0f} requests/min ({sustained / 5:.1f} % of 500/min); "
          f"429s from the sandbox: {refused(base) - before}")
    wait_for_quiet_window(base, realm)
    before = refused(base)
    elapsed, batches, sustained = asyncio.run(batch_creates(base, realm, token, count))
    print(f"batch    {count} records, {batches} batch requests in {elapsed:.1f} s: {count / elapsed * 60:.0f} "
          f"records/min; after the first minute's allowance: {sustained:.1f} batch requests/min (limit 40, "
          f"{sustained * 30:.0f} records/min); 429s from the sandbox: {refused(base) - before}")


def wait_for_quiet_window(base: str, realm: str) -> None:
    """Let the previous phase's requests leave Intuit's one-minute window, so phases are measured apart."""
    while httpx.get(f"{base}/_sandbox/limits").json()["realms"][realm]["requests_last_minute"]:
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=2000, help="records to create (default 2000)")
    parser.add_argument("--reads", type=int, default=1000, help="reads for the comparison (default 1000)")
    parser.add_argument("--latency", type=float, default=0.01, help="seconds added per answer (default 0.01)")
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"Python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")
    process = start_sandbox(port)
    try:
        realm, tokens = connect(base)
        token = tokens["access_token"]
        print(f"sandbox {base}, company {realm}, throttles on (500/min, 10 in flight, 40 batch/min)\n")

        if args.creates:
            limits_part(base, realm, token, args.creates)

        httpx.put(f"{base}/_sandbox/limits", json={"enabled": False}).raise_for_status()
        httpx.put(f"{base}/_sandbox/faults", json={"latency": args.latency}).raise_for_status()
        customers = httpx.get(f"{base}/v3/company/{realm}/query", headers={"Authorization": f"Bearer {token}"},
                              params={"query": "select * from Customer MAXRESULTS 1000"}).json()
        known = [c["Id"] for c in customers["QueryResponse"]["Customer"]]
        ids = [known[n % len(known)] for n in range(args.reads)]
        ours = asyncio.run(qbflow_reads(base, realm, token, ids))
        theirs = python_quickbooks_reads(base, realm, tokens, ids)
        print(f"\nreads    {args.reads} GET /customer/{{id}} with {args.latency * 1000:.0f} ms added latency, "
              f"throttles off")
        print(f"  qbflow QBOClient (10 in flight):        {ours:.2f} s")
        if theirs is None:
            print("  python-quickbooks: not installed (pip install python-quickbooks)")
        else:
            print(f"  python-quickbooks (sequential):         {theirs:.2f} s")
            print(f"  ratio qbflow / python-quickbooks:       {ours / theirs:.3f}")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
