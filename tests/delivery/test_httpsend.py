"""HttpSender against real asyncio servers on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import trustme

from pmops.delivery.httpsend import HttpSender, InvalidHeader, SendError, retry_after_seconds
from pmops.delivery.netguard import BlockedAddress, NetGuard, UnsafeUrl, parse_networks

LOCAL = parse_networks("127.0.0.0/8")


def run(coro: Coroutine[Any, Any, None], tolerate: tuple[str, ...] = ()) -> None:
    """asyncio.run(coro), failing on anything the loop reports (unretrieved exceptions, ...).

    `tolerate`: message prefixes that are expected, e.g. the server side of a refused handshake.
    """
    reported: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: reported.append(ctx))
        await coro

    asyncio.run(main())
    unexpected = [c for c in reported if not str(c.get("message", "")).startswith(tolerate)]
    assert not unexpected, unexpected


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]  # as sent: names not case-folded, in order
    body: bytes
    connection: int  # which connection (1-based) it came on
    index: int  # its position on that connection (0-based)

    def header(self, name: str) -> str:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        assert len(values) == 1, (name, self.headers)
        return values[0]


# respond(request, writer) writes the answer and returns whether to keep the connection open.
Responder = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


def answer(raw: bytes) -> Responder:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        return True

    return respond


OK = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@dataclass
class Receiver:
    """A small HTTP/1.1 server recording every connection and request."""

    respond: Responder = OK
    ssl_context: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None
    port: int = 0

    async def __aenter__(self) -> Receiver:
        self.server = await asyncio.start_server(
            self._serve, self.host, 0, ssl=self.ssl_context, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.stopping.set()
        for writer in self.writers:
            writer.close()
        # Handlers must end on their own: a cancelled one makes 3.11's streams log an error.
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=5)
        await self.server.wait_closed()

    def url(self, path: str = "/x", scheme: str = "http", host: str | None = None) -> str:
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            for index in itertools.count():
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ")
                headers = [
                    (n, v.strip())
                    for n, _, v in (line.partition(":") for line in lines[1:] if line)
                ]
                length = sum(int(v) for n, v in headers if n.lower() == "content-length")
                body = await reader.readexactly(length)
                request = Request(method, target, version, headers, body, number, index)
                self.requests.append(request)
                if not await self.respond(request, writer):
                    return
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def test_content_length_body_and_request_as_sent() -> None:
    async def main() -> None:
        body = bytes(range(256)) * 12 + b'{"event":"operation.completed"}'
        reply = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Reply: yes\r\n\r\nhello")
        async with Receiver(reply) as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            r = await sender.post(
                rx.url("/hooks/a?x=1"),
                {
                    "Content-Type": "application/json",
                    "webhook-id": "msg_2a",
                    "X-Signature-256": "sha256=abc",
                },
                body,
            )
            assert (r.status, r.body, r.address) == (200, b"hello", "127.0.0.1")
            assert r.headers == {"content-length": "5", "x-reply": "yes"}
            assert not r.truncated
        [req] = rx.requests
        assert (req.method, req.target, req.version) == ("POST", "/hooks/a?x=1", "HTTP/1.1")
        assert req.body == body
        assert req.header("Host") == f"127.0.0.1:{rx.port}"
        assert req.header("Content-Length") == str(len(body))
        assert req.header("Content-Type") == "application/json"
        assert req.header("webhook-id") == "msg_2a"
        assert req.header("X-Signature-256") == "sha256=abc"
        assert req.header("User-Agent") == "pmops-webhooks/0.1"
        assert req.header("Connection") == "keep-alive"
        assert [n for n, _ in req.headers].count("webhook-id") == 1  # names exactly as given

    run(main())


def test_chunked_body_in_pieces_then_keep_alive() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        pieces = [
            b"HTTP/1.1 200 OK\r\nTransfer-",
            b"Encoding: chunked\r\n\r\n5;ext=1\r",
            b"\nhel",
            b"lo\r\n6\r\n world\r\n",
            b"0\r\nX-Trailer: t\r\n\r\n",
        ]
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        return True

    async def main() -> None:
        async with Receiver(respond) as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            for _ in range(2):
                r = await sender.post(rx.url(), {}, b"{}")
                assert (r.status, r.body) == (200, b"hello world")
        assert rx.connections == 1

    run(main())


def test_read_until_close_http10() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"the end")
        await writer.drain()
        return False

    async def main() -> None:
        async with Receiver(respond) as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            for _ in range(2):
                r = await sender.post(rx.url(), {}, b"x")
                assert (r.status, r.body) == (200, b"until the end")
        assert rx.connections == 2

    run(main())


def test_connection_close_header_is_honoured() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the client must not wait for the close to answer
        return False

    async def main() -> None:
        async with Receiver(respond) as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            for _ in range(3):
                assert (await sender.post(rx.url(), {}, b"x")).status == 202
        assert rx.connections == 3

    run(main())


def test_100_continue_is_skipped() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"HTTP/1.1 204 No Content\r\nX-Final: 1\r\n\r\n")
        await writer.drain()
        return True

    async def main() -> None:
        async with Receiver(respond) as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            for _ in range(2):
                r = await sender.post(rx.url(), {}, b"x")
                assert (r.status, r.body, r.headers) == (204, b"", {"x-final": "1"})
        assert rx.connections == 1

    run(main())


def test_redirect_is_returned_not_followed() -> None:
    async def main() -> None:
        async with Receiver() as rx:
            location = rx.url("/elsewhere").encode()
            rx.respond = answer(
                b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
            )
            async with HttpSender(NetGuard(allow=LOCAL)) as sender:
                r = await sender.post(rx.url("/first"), {}, b"x")
            assert r.status == 302
            assert r.headers["location"] == location.decode()
        assert [req.target for req in rx.requests] == ["/first"]

    run(main())


def test_keep_alive_reuses_one_connection() -> None:
    async def main() -> None:
        async with Receiver() as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            for i in range(50):
                r = await sender.post(rx.url(f"/n/{i}"), {}, b"%d" % i)
                assert (r.status, r.body) == (200, b"ok")
        assert rx.connections == 1
        assert [req.body for req in rx.requests] == [b"%d" % i for i in range(50)]

    run(main())


def test_concurrent_posts_use_separate_connections() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"%d" % len(request.body))
        writer.write(b"\r\n\r\n" + request.body)
        await writer.drain()
        return True

    async def main() -> None:
        async with Receiver(respond) as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            bodies = [b"body %d" % i for i in range(20)]
            for _ in range(3):
                results = await asyncio.gather(*(sender.post(rx.url(), {}, b) for b in bodies))
                assert [r.body for r in results] == bodies
        # 20 at first; later rounds reuse the 16 kept idle (max_idle_per_origin) and open 4.
        assert rx.connections == 20 + 4 + 4

    run(main())


def test_idle_connection_closed_by_server_between_posts() -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return False  # closes like an idle timeout, without announcing it

    async def main() -> None:
        async with Receiver(respond) as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            for _ in range(3):
                assert (await sender.post(rx.url(), {}, b"x")).status == 200
                await asyncio.sleep(0.05)
        assert rx.connections == 3

    run(main())


def test_stale_keep_alive_race_is_retried_once() -> None:
    """The server drops the reused connection after reading the request, answering nothing."""

    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.index == 1:
            return False
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return True

    async def main() -> None:
        async with Receiver(respond) as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            assert (await sender.post(rx.url(), {}, b"first")).status == 200
            r = await sender.post(rx.url(), {}, b"second")
            assert (r.status, r.body) == (200, b"ok")
        assert rx.connections == 2
        assert [(q.body, q.connection, q.index) for q in rx.requests] == [
            (b"first", 1, 0),
            (b"second", 1, 1),
            (b"second", 2, 0),
        ]

    run(main())


def test_stale_retry_happens_once_and_not_on_fresh_connections() -> None:
    async def main() -> None:
        async with Receiver() as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            assert (await sender.post(rx.url(), {}, b"x")).status == 200

            async def drop(request: Request, writer: asyncio.StreamWriter) -> bool:
                return False

            rx.respond = drop
            with pytest.raises(SendError, match="connection closed before the response"):
                await sender.post(rx.url(), {}, b"x")
            assert rx.connections == 2  # the reused one, then one fresh retry
            with pytest.raises(SendError, match="connection closed before the response"):
                await sender.post(rx.url(), {}, b"x")
            assert rx.connections == 3  # a fresh connection is not retried

    run(main())


def test_timeout_when_the_server_never_answers() -> None:
    async def main() -> None:
        async with Receiver() as rx, HttpSender(NetGuard(allow=LOCAL), timeout=0.5) as s:

            async def never(request: Request, writer: asyncio.StreamWriter) -> bool:
                await rx.stopping.wait()
                return False

            rx.respond = never
            with pytest.raises(SendError) as info:
                await s.post(rx.url(), {}, b"x")
        # how long it took is a speed question (bench/); here: it gave up, saying why
        assert info.value.message == "timed out after 0.5 s"

    run(main())


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        async with HttpSender(NetGuard(allow=LOCAL)) as sender:
            with pytest.raises(SendError, match=r"^connection refused$"):
                await sender.post(f"http://127.0.0.1:{port}/x", {}, b"x")

    run(main())


def test_blocked_address_is_never_connected() -> None:
    async def main() -> None:
        async with Receiver() as rx, HttpSender(NetGuard()) as sender:
            with pytest.raises(BlockedAddress, match=re.escape("127.0.0.1 is a loopback address")):
                await sender.post(rx.url(), {}, b"x")
            with pytest.raises(BlockedAddress, match=re.escape("localhost resolves to 127.0.0.1")):
                await sender.post(rx.url(host="localhost"), {}, b"x")
            with pytest.raises(UnsafeUrl):
                await sender.post("ftp://127.0.0.1/x", {}, b"x")
        assert rx.connections == 0

    run(main())


def test_headers_the_sender_owns_or_that_would_inject_are_refused() -> None:
    async def main() -> None:
        async with Receiver() as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            for bad in (
                {"Host": "evil.example"},
                {"content-length": "1"},
                {"Transfer-Encoding": "chunked"},
                {"X-A": "a\r\nX-Injected: 1"},
                {"Bad Name": "x"},
                {"X-A": "a\x0bb"},
                {"X-A": "a\x7f"},
                {"TE": "trailers"},
                {"Keep-Alive": "timeout=5"},
                {"Upgrade": "h2c"},
                {"Proxy-Authorization": "x"},
            ):
                with pytest.raises(InvalidHeader) as info:
                    await sender.post(rx.url(), bad, b"x")
                assert info.value.message.startswith("invalid header ")
                assert "Error" not in info.value.message
            r = await sender.post(rx.url(), {"User-Agent": "custom/1"}, b"x")
            assert r.status == 200
        assert rx.connections == 1
        assert rx.requests[0].header("User-Agent") == "custom/1"

    run(main())


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 100000\r\n\r\n" + b"a" * 100000,
        b"Transfer-Encoding: chunked\r\n\r\n" + b"186a0\r\n" + b"a" * 100000 + b"\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
def test_oversized_framed_body_is_truncated_and_the_connection_kept(framing: bytes) -> None:
    async def main() -> None:
        reply = answer(b"HTTP/1.1 200 OK\r\n" + framing)
        async with Receiver(reply) as rx, HttpSender(NetGuard(allow=LOCAL), max_body=1000) as s:
            for _ in range(2):
                r = await s.post(rx.url(), {}, b"x")
                assert (r.status, r.body, r.truncated) == (200, b"a" * 1000, True)
        assert rx.connections == 1  # the rest was read and dropped

    run(main())


def test_oversized_body_without_framing_is_truncated() -> None:
    """Neither waits for the server to close nor drains a body that has no end in sight."""

    async def main() -> None:
        async with Receiver() as rx, HttpSender(NetGuard(allow=LOCAL), timeout=5, max_body=10) as s:

            async def unframed(request: Request, writer: asyncio.StreamWriter) -> bool:
                writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"b" * 50000)
                await writer.drain()
                await rx.stopping.wait()  # never closes: the client must not wait for it
                return False

            async def huge(request: Request, writer: asyncio.StreamWriter) -> bool:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
                writer.write(b"c" * 5000)
                await writer.drain()
                await rx.stopping.wait()
                return False

            rx.respond = unframed
            r = await s.post(rx.url(), {}, b"x")
            assert (r.status, r.body, r.truncated) == (200, b"b" * 10, True)
            rx.respond = huge
            r = await s.post(rx.url(), {}, b"x")
            assert (r.status, r.body, r.truncated) == (200, b"c" * 10, True)
        assert rx.connections == 2  # neither connection was reused

    run(main())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "after 3 of 10 body bytes"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "invalid status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"HTTP/1.1 200 OK\r\nContent-", "in the response head"),
    ],
)
def test_bad_responses(raw: bytes, message: str) -> None:
    async def respond(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        return False

    async def main() -> None:
        async with Receiver(respond) as rx, HttpSender(NetGuard(allow=LOCAL)) as sender:
            with pytest.raises(SendError, match="^bad response: .*" + message):
                await sender.post(rx.url(), {}, b"x")

    run(main())


def test_retry_after_seconds() -> None:
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 0 ") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 60.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0  # past: no wait
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 -0000", now) == 60.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now.replace(tzinfo=None)) == 60.0
    for bad in (None, "", "soon", "-5", "1.5", "Wed, 99 Foo 2015"):
        assert retry_after_seconds(bad, now) is None
    later = retry_after_seconds("Fri, 01 Jan 2100 00:00:00 GMT")
    assert later is not None and later > 0


# -- HTTPS ---------------------------------------------------------------------------------------
def _server_context(ca: trustme.CA, name: str, seen: list[str | None]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)

    def record_sni(sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        seen.append(server_name)

    context.sni_callback = record_sni
    return context


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _first_localhost_address() -> str:
    async def first() -> str:
        guard = NetGuard(allow=parse_networks("127.0.0.0/8,::1/128"))
        return str((await guard.resolve_async("localhost", 443, 2.0))[0])

    return asyncio.run(first())


def test_https_uses_the_url_host_for_sni_and_verification() -> None:
    ca = trustme.CA()
    seen: list[str | None] = []
    address = _first_localhost_address()

    async def main() -> None:
        server_ctx = _server_context(ca, "localhost", seen)
        guard = NetGuard(allow=parse_networks("127.0.0.0/8,::1/128"))
        async with (
            Receiver(ssl_context=server_ctx, host=address) as rx,
            HttpSender(guard, ssl_context=_client_context(ca)) as sender,
        ):
            url = f"https://localhost:{rx.port}/x"
            for _ in range(3):
                r = await sender.post(url, {"X-Test": "tls"}, b'{"a":1}')
                assert (r.status, r.body, r.address) == (200, b"ok", address)
        assert rx.connections == 1
        assert seen == ["localhost"]
        assert rx.requests[0].header("Host") == f"localhost:{rx.port}"
        assert rx.requests[0].body == b'{"a":1}'

    run(main())


TLS_UNTRUSTED = "TLS handshake failed: certificate verify failed"


def test_https_certificate_for_another_name_fails() -> None:
    ca = trustme.CA()
    address = _first_localhost_address()

    async def main() -> None:
        server_ctx = _server_context(ca, "other.example", [])
        guard = NetGuard(allow=parse_networks("127.0.0.0/8,::1/128"))
        async with Receiver(ssl_context=server_ctx, host=address) as rx:
            async with HttpSender(guard, ssl_context=_client_context(ca)) as sender:
                with pytest.raises(SendError, match="certificate") as info:
                    await sender.post(f"https://localhost:{rx.port}/x", {}, b"x")
                assert info.value.message.startswith(TLS_UNTRUSTED)
                assert "localhost" in info.value.message
            # Not trusted at all: the default context does not know our CA.
            async with HttpSender(guard) as sender:
                with pytest.raises(SendError, match=TLS_UNTRUSTED):
                    await sender.post(f"https://localhost:{rx.port}/x", {}, b"x")
            assert rx.requests == []

    run(main(), tolerate=("Error on transport creation for incoming connection",))
