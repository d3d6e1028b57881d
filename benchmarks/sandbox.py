"""Throughput of the local QuickBooks Online sandbox: creates, reads and queries, in requests per second.

    .venv/bin/python benchmarks/sandbox.py                      # uvicorn on 127.0.0.1, sandbox in a child process
    .venv/bin/python benchmarks/sandbox.py --server thread      # uvicorn in a thread of this process
    .venv/bin/python benchmarks/sandbox.py --in-process         # httpx.ASGITransport: no sockets, no HTTP parsing
    .venv/bin/python benchmarks/sandbox.py --client raw         # a lean HTTP client, so the server is the bottleneck
    .venv/bin/python benchmarks/sandbox.py --data /tmp/qb.db    # books written through to a new SQLite file

It loads --records records through the HTTP API (a tenth Customers, the rest Invoices with two sales lines
each), `--concurrency` requests at a time, then reads random invoices by Id and runs a few queries over
everything it loaded. It prints one row per phase: ops, errors, seconds, requests per second and the p50/p95
latency of a single request. Throttles are off (`Sandbox(rate_limit=False)`). This is a measuring script,
not a test: it never judges the numbers; it exits non-zero only if requests fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

# One request of a phase: (method, path relative to /v3/company/{realm}/, query params, JSON body).
Job = tuple[str, str, dict[str, str] | None, Any]


@dataclass
class Target:
    """Where the benchmark sends its requests."""

    realm: str
    token: str
    base_url: str
    transport: httpx.AsyncBaseTransport | None = None
    description: str = ""


@dataclass
class Result:
    name: str
    ops: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False)
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of single-request latency, in milliseconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000


# --- the sandbox under test ---------------------------------------------------------------------------------------

def _build_sandbox(data: str | None):
    from qbflow.sandbox.app import Sandbox

    box = Sandbox(data=data, rate_limit=False)
    realm = box.realms[0]
    token = box.oauth.issue_tokens_for_tests(box.client_id, realm)["access_token"]
    return box, realm, token


def _listening_socket() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1, handed to uvicorn so no other process can take the port.

    The protocol must be given explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
    whose `proto` is IPPROTO_TCP, and with proto 0 every small response waits ~40 ms for a delayed ACK.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _uvicorn_server(app):
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    return uvicorn.Server(config)


def serve_child(data: str | None) -> None:
    """Child-process mode (`--serve`): build a sandbox, tell the parent how to reach it, serve until stdin closes.

    The parent holds our stdin open; when it exits for whatever reason the pipe closes and we stop, so no
    server outlives the benchmark.
    """
    box, realm, token = _build_sandbox(data)
    sock = _listening_socket()
    server = _uvicorn_server(box)

    def watch_parent() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
        server.should_exit = True
        time.sleep(10)
        os._exit(1)  # graceful shutdown did not finish in time

    threading.Thread(target=watch_parent, daemon=True).start()
    port = sock.getsockname()[1]
    print(json.dumps({"port": port, "realm": realm, "token": token, "pid": os.getpid()}), flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        box.storage.close()


@contextlib.contextmanager
def child_server(data: str | None) -> Iterator[Target]:
    command = [sys.executable, str(Path(__file__).resolve()), "--serve"]
    if data:
        command += ["--data", data]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise SystemExit(f"the sandbox process exited before it started (exit code {child.wait()})")
        info = json.loads(line)
        _wait_for_port(info["port"], child)
        yield Target(info["realm"], info["token"], f"http://127.0.0.1:{info['port']}",
                     description=f"uvicorn on 127.0.0.1:{info['port']} in child process {info['pid']}")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_for_port(port: int, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"the sandbox process exited with code {child.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise SystemExit(f"the sandbox did not start listening on port {port}")


@contextlib.contextmanager
def thread_server(data: str | None) -> Iterator[Target]:
    box, realm, token = _build_sandbox(data)
    sock = _listening_socket()
    server = _uvicorn_server(box)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sandbox-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SystemExit("the sandbox thread did not start")
            time.sleep(0.02)
        port = sock.getsockname()[1]
        yield Target(realm, token, f"http://127.0.0.1:{port}",
                     description=f"uvicorn on 127.0.0.1:{port} in a thread of this process")
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        box.storage.close()


@contextlib.contextmanager
def in_process(data: str | None) -> Iterator[Target]:
    box, realm, token = _build_sandbox(data)
    try:
        yield Target(realm, token, "http://sandbox.test", transport=httpx.ASGITransport(app=box),
                     description="in process through httpx.ASGITransport (no server, no sockets)")
    finally:
        box.storage.close()


# --- driving requests ----------------------------------------------------------------------------------------------

# A client sends one request and answers (status, body); it raises OSError or httpx.HTTPError when it cannot.
Send = Callable[[str, str, "dict[str, str] | None", Any], Awaitable[tuple[int, bytes]]]


@contextlib.asynccontextmanager
async def httpx_client(target: Target, concurrency: int) -> AsyncIterator[Send]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=f"{target.base_url}/v3/company/{target.realm}/", transport=target.transport, limits=limits,
        headers={"Authorization": f"Bearer {target.token}", "Accept": "application/json"}, timeout=60,
    ) as client:

        async def send(method: str, path: str, params: dict[str, str] | None, body: Any) -> tuple[int, bytes]:
            response = await client.request(method, path, params=params, json=body)
            return response.status_code, response.content

        yield send


class RawClient:
    """The least a keep-alive HTTP/1.1 client must do, on asyncio streams: a load generator that costs the
    benchmark process far less CPU than httpx, so that over 127.0.0.1 the server, not the client, is measured.
    It speaks only to this sandbox (Content-Length bodies, no chunking, no redirects)."""

    def __init__(self, target: Target) -> None:
        url = urllib.parse.urlsplit(target.base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.prefix = f"/v3/company/{target.realm}/"
        self.head = (f"Host: {url.netloc}\r\nAuthorization: Bearer {target.token}\r\nAccept: application/json\r\n"
                     "User-Agent: qbflow-benchmark\r\n")
        self.idle: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.LifoQueue()

    async def send(self, method: str, path: str, params: dict[str, str] | None, body: Any) -> tuple[int, bytes]:
        target = self.prefix + path
        if params:
            target += "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        extra = f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n" if body is not None else ""
        request = f"{method} {target} HTTP/1.1\r\n{self.head}{extra}\r\n".encode() + payload
        reader, writer = self.idle.get_nowait() if not self.idle.empty() else await self._connect()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length = next((int(line.split(b":", 1)[1]) for line in lines[1:]
                           if line[:15].lower() == b"content-length:"), 0)
            content = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self.idle.put_nowait((reader, writer))
        return status, content

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port, limit=1 << 24)

    async def close(self) -> None:
        while not self.idle.empty():
            _reader, writer = self.idle.get_nowait()
            writer.close()


@contextlib.asynccontextmanager
async def raw_client(target: Target, _concurrency: int) -> AsyncIterator[Send]:
    client = RawClient(target)
    try:
        yield client.send
    finally:
        await client.close()


async def run_phase(send: Send, name: str, jobs: Iterable[Job], concurrency: int,
                    on_answer: Callable[[Any], None] | None = None) -> Result:
    """Send every job with `concurrency` requests in flight; time the whole phase and each request."""
    queue = iter(jobs)
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None

    async def worker() -> None:
        nonlocal errors, first_error
        for method, path, params, body in queue:  # one shared iterator: each job is taken once
            started = time.perf_counter()
            try:
                status, content = await send(method, path, params, body)
            except (OSError, asyncio.IncompleteReadError, httpx.HTTPError) as error:
                latencies.append(time.perf_counter() - started)
                errors += 1
                first_error = first_error or f"{method} {path}: {error!r}"
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors += 1
                first_error = first_error or f"{method} {path}: HTTP {status} {content[:300].decode('replace')}"
            elif on_answer is not None:
                on_answer(json.loads(content))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, len(latencies), errors, time.perf_counter() - began, latencies, first_error)


def customer_body(number: int, rng: random.Random) -> dict:
    street = f"{rng.randint(1, 9999)} {rng.choice(['Oak', 'Elm', 'Pine', 'Cedar', 'Maple'])} St."
    address = {"Line1": street, "City": "Palo Alto", "CountrySubDivisionCode": "CA", "PostalCode": "94303"}
    return {
        "DisplayName": f"Cust {number}", "CompanyName": f"Customer {number} LLC",
        "GivenName": rng.choice(["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay"]), "FamilyName": f"Family{number}",
        "PrimaryEmailAddr": {"Address": f"billing{number}@customer.example"},
        "PrimaryPhone": {"FreeFormNumber": f"(650) 555-{number % 10000:04d}"},
        "BillAddr": address, "ShipAddr": dict(address),
    }


def invoice_body(customer_id: str, items: list[tuple[str, float]], rng: random.Random) -> dict:
    lines = []
    for item_id, price in rng.sample(items, 2):
        qty = rng.randint(1, 8)
        lines.append({
            "DetailType": "SalesItemLineDetail", "Amount": round(qty * price, 2), "Description": "Work done",
            "SalesItemLineDetail": {"ItemRef": {"value": item_id}, "Qty": qty, "UnitPrice": price,
                                    "TaxCodeRef": {"value": "NON"}},
        })
    return {"CustomerRef": {"value": customer_id}, "Line": lines,
            "CustomerMemo": {"value": "Thank you for your business."}, "PrivateNote": "benchmark"}


async def benchmark(target: Target, args: argparse.Namespace) -> list[Result]:
    rng = random.Random(args.seed)
    results: list[Result] = []
    customers, invoices = split(args.records)
    concurrency = args.concurrency

    async def phase(name: str, jobs: list[Job], on_answer: Callable[[Any], None] | None = None) -> None:
        if jobs:
            results.append(await run_phase(send, name, jobs, concurrency, on_answer))

    opened = raw_client(target, concurrency) if args.client == "raw" else httpx_client(target, concurrency)
    async with opened as send:
        status, content = await send("GET", "query", {"query": "select * from Item MAXRESULTS 1000"}, None)
        if status != 200:
            raise SystemExit(f"the sandbox answered the item query with HTTP {status}: {content[:300]!r}")
        items = [(i["Id"], float(i["UnitPrice"])) for i in json.loads(content)["QueryResponse"]["Item"]
                 if float(i.get("UnitPrice", 0)) > 0]
        # Untimed warm-up: opens every pooled connection, so no phase pays for TCP connects.
        await run_phase(send, "warm-up", [("GET", f"companyinfo/{target.realm}", None, None)] * concurrency * 5,
                        concurrency)

        # Bodies are built before the clock starts, so the phase times only requests.
        customer_ids: list[str] = []
        await phase("create Customer", [("POST", "customer", None, customer_body(n, rng))
                                        for n in range(1, customers + 1)],
                    lambda doc: customer_ids.append(doc["Customer"]["Id"]))
        if not customer_ids:
            raise SystemExit("no customer was created; see the error above")

        invoice_ids: list[str] = []
        await phase("create Invoice (2 lines)",
                    [("POST", "invoice", None, invoice_body(rng.choice(customer_ids), items, rng))
                     for _ in range(invoices)],
                    lambda doc: invoice_ids.append(doc["Invoice"]["Id"]))
        if invoice_ids:
            await phase("read Invoice by Id",
                        [("GET", f"invoice/{rng.choice(invoice_ids)}", None, None) for _ in range(args.reads)])

        some_customer = customer_ids[len(customer_ids) // 2]
        middle = max(1, len(invoice_ids) // 2)
        queries = {
            "query TotalAmt > 100 (100 rows)": "select * from Invoice where TotalAmt > '100' MAXRESULTS 100",
            "query DisplayName LIKE 'Cust 12%'": "select * from Customer where DisplayName LIKE 'Cust 12%'",
            "query count(*) by CustomerRef": f"select count(*) from Invoice where CustomerRef = '{some_customer}'",
            "query Invoice mid page (100 rows)": f"select * from Invoice STARTPOSITION {middle} MAXRESULTS 100",
        }
        for name, text in queries.items():
            await phase(name, [("GET", "query", {"query": text}, None)] * args.queries)
    return results


def split(records: int) -> tuple[int, int]:
    """(customers, invoices) for --records: a tenth are customers."""
    customers = max(1, records // 10)
    return customers, records - customers


# --- reporting -----------------------------------------------------------------------------------------------------

def print_header(target: Target, args: argparse.Namespace) -> None:
    versions = ", ".join(f"{name} {_version(name)}" for name in ("qbflow", "starlette", "uvicorn", "httpx", "h11"))
    print(f"Python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}, "
          f"{os.cpu_count()} CPUs")
    print(versions)
    print(f"sandbox: {target.description}; books: {args.data or 'in memory'}; throttles off")
    customers, invoices = split(args.records)
    client = "httpx.AsyncClient" if args.client == "httpx" else "raw asyncio HTTP/1.1"
    print(f"records: {args.records} ({customers} customers, {invoices} invoices); client {client}, "
          f"concurrency {args.concurrency}; reads {args.reads}; queries {args.queries} each")
    print()


def _version(name: str) -> str:
    try:
        return version(name)
    except Exception:
        return "?"


def print_table(results: list[Result]) -> None:
    header = ("phase", "ops", "errors", "seconds", "req/s", "p50 ms", "p95 ms")
    rows = [(r.name, f"{r.ops}", f"{r.errors}", f"{r.seconds:.2f}", f"{r.rate:.0f}", f"{r.percentile(0.50):.1f}",
             f"{r.percentile(0.95):.1f}") for r in results]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Iterable[str]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    print(line(header))
    print(line("-" * w for w in widths))
    for row in rows:
        print(line(row))
    for r in results:
        if r.first_error:
            print(f"\n{r.name}: {r.errors} failed; first: {r.first_error}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000,
                        help="records to load: a tenth Customers, the rest Invoices (default 10000)")
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight at once (default 10)")
    parser.add_argument("--reads", type=int, default=5_000, help="GET /invoice/{id} requests (default 5000)")
    parser.add_argument("--queries", type=int, default=500, help="requests per query statement (default 500)")
    parser.add_argument("--in-process", action="store_true",
                        help="call the ASGI app through httpx.ASGITransport: no server, no sockets, no HTTP parsing")
    parser.add_argument("--server", choices=("process", "thread"), default="process",
                        help="where uvicorn runs when not --in-process: a child process (default) or a thread "
                             "of this one (then client and server share one GIL)")
    parser.add_argument("--client", choices=("httpx", "raw"), default="httpx",
                        help="httpx.AsyncClient (default), or a minimal asyncio HTTP/1.1 client that leaves more CPU "
                             "to the server (not with --in-process)")
    parser.add_argument("--data", metavar="FILE", help="SQLite persistence: a new file the sandbox writes through to")
    parser.add_argument("--seed", type=int, default=1, help="random seed for bodies and ids (default 1)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args(argv)
    if args.records < 2 or args.concurrency < 1 or args.reads < 0 or args.queries < 0:
        parser.error("--records must be at least 2, --concurrency at least 1, --reads and --queries not negative")
    if args.client == "raw" and args.in_process:
        parser.error("--client raw needs a server: it cannot be combined with --in-process")
    if args.data and not args.serve and Path(args.data).exists():
        parser.error(f"{args.data} exists; pass a new file so the run starts from fresh books")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve_child(args.data)
        return 0
    if args.in_process:
        place = in_process(args.data)
    else:
        place = child_server(args.data) if args.server == "process" else thread_server(args.data)
    with place as target:
        print_header(target, args)
        results = asyncio.run(benchmark(target, args))
    print_table(results)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
