"""The client's own transport (aiohttp under httpx) over real sockets: answers, uploads, and failures named as
what they were."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from qbflow.qbo import QBOClient, RetryPolicy, StaticTokens, Transient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length) if length else b""


AMY = {"Customer": {"Id": "58", "SyncToken": "0", "DisplayName": "Amy"}, "time": "x"}


async def answer_json(writer: asyncio.StreamWriter, body: dict) -> None:
    content = json.dumps(body).encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(content)).encode() + b"\r\n\r\n" + content)
    await writer.drain()


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def client(base: str, **kwargs) -> QBOClient:
    return QBOClient("4620816365212345678", base_url=base, tokens=StaticTokens("an-access-token"), pacer=False,
                     retry=RetryPolicy(attempts=1), **kwargs)


async def test_answers_and_keeps_the_connection() -> None:
    seen: list[bytes] = []
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append(head + body)
            await answer_json(writer, AMY)
        writer.close()

    async with serve(answer) as base:
        async with client(base) as qbo:
            first = await qbo.get("Customer", "58")
            second = await qbo.get("Customer", "58")
    assert first["DisplayName"] == second["DisplayName"] == "Amy"
    assert connections == 1, "the second request reuses the kept-alive connection"
    assert b"authorization: bearer an-access-token" in seen[0].lower()
    assert seen[0].startswith(b"GET /v3/company/4620816365212345678/customer/58?")


async def test_a_connection_closed_mid_request_is_a_connection_failure_not_a_timeout() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with serve(hang_up) as base:
        async with client(base) as qbo:
            with pytest.raises(Transient) as caught:
                await qbo.create("Customer", {"DisplayName": "Amy"})
    assert "connection to QBO failed (ServerDisconnectedError)" in str(caught.value)


async def test_a_server_that_never_answers_is_a_timeout() -> None:
    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)
        writer.close()

    async with serve(say_nothing) as base:
        async with client(base, timeout=httpx.Timeout(0.3)) as qbo:
            with pytest.raises(Transient) as caught:
                await qbo.get("Customer", "58")
    assert "QBO did not answer in time" in str(caught.value)


async def test_nothing_listening_is_a_connection_failure() -> None:
    async with serve(lambda reader, writer: asyncio.sleep(0)) as base:
        pass
    # the port is closed again: nothing listens there now
    async with client(base) as qbo:
        with pytest.raises(Transient) as caught:
            await qbo.get("Customer", "58")
    assert "connection to QBO failed (ClientConnectorError)" in str(caught.value)


async def test_an_upload_sends_the_whole_multipart_body() -> None:
    bodies: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, body = await read_request(reader)
        bodies.append(body)
        await answer_json(writer, {"AttachableResponse": [{"Attachable": {"Id": "7", "FileName": "receipt.pdf"}}],
                                   "time": "x"})
        writer.close()

    pdf = b"%PDF-1.4 " + bytes(range(256)) * 400
    async with serve(answer) as base:
        async with client(base) as qbo:
            attachable = await qbo.upload_attachment("receipt.pdf", pdf, "application/pdf", link_to=("Bill", "12"))
    assert attachable["Id"] == "7"
    assert pdf in bodies[0], "the file arrives whole, byte for byte"
    metadata = bodies[0].split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
    assert json.loads(metadata)["AttachableRef"][0]["EntityRef"] == {"type": "Bill", "value": "12"}


async def test_a_proxy_named_in_the_environment_carries_the_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """As httpx alone did: HTTP(S)_PROXY is honoured (and NO_PROXY), read once when the client is made."""
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _body = await read_request(reader)
        seen.append(head.split(b"\r\n", 1)[0])
        await answer_json(writer, AMY)
        writer.close()

    async with serve(proxy) as proxy_url:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        async with client("http://quickbooks.example") as qbo:
            found = await qbo.get("Customer", "58")
    assert found["DisplayName"] == "Amy"
    assert seen and seen[0].startswith(b"GET http://quickbooks.example/v3/company/4620816365212345678/customer/58?")
