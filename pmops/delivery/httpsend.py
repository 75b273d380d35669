"""A small, fast HTTP/1.1 POST client for webhook deliveries, with SSRF-safe connects.

Why our own client: the deliverer must push several thousand signed JSON POSTs a second from one
asyncio process. httpx measured ~480 req/s at 100 concurrent connections (~1,470 at 20) on the
loopback receivers where a hand-written asyncio client did ~20,000; its per-request machinery
(httpcore pool, h11 state machine, several layers of awaits) is the cost. A webhook POST needs a
small part of HTTP/1.1, so this module implements just that part on an `asyncio.Protocol`: one
write per request, one incremental parser fed from `data_received`, no streams and no task per
connection. See bench/bench_httpsend.py for the figures.

How a POST goes (`HttpSender.post`):

* An idle kept-alive connection to the URL's origin (scheme, host, port) is reused as it is: it
  goes to an address the guard checked when it was made, so a send on it needs no DNS at all.
* Only a new connection needs an address: `NetGuard.pick_address` resolves the host (in the
  guard's own lookup threads, one lookup per host at a time, within `dns_timeout`) and refuses
  it if any address is private; the connection then goes to exactly that IP
  (`create_connection` with a numeric host does no lookup). The picked address is kept for
  `dns_ttl` seconds for the next new connections to that host (dropped when connecting to it
  fails). Only checked addresses are kept and the connect never looks the name up again, so no
  DNS-rebinding window; a host whose DNS hangs delays only its own sends. For https, SNI and
  certificate verification use the URL's host name (`server_hostname`), not the IP.
* Redirects are never followed: a 3xx is returned like any status, since following one would
  send a signed delivery to a URL nobody registered (and past the registration check).
* Keep-alive: idle connections are pooled per origin (scheme, host, port), at most
  `max_idle_per_origin` each, and not reused after 30 s idle. A pooled connection the server
  closed just as we reused it (EOF or reset before any byte of the status line) is retried once
  on a fresh connection; any other failure drops the connection and is reported.
* The whole attempt (resolve, connect, TLS, send, response) is bounded by `timeout`; a timeout
  is a SendError with `timed_out` set (the deliverer's circuit breaker counts those).
* At most `max_body` response bytes are kept; the rest of a framed body is read and dropped (up to
  1 MiB, beyond that the connection is closed instead), an unframed one ends the connection.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import cast

from pmops.contract.headers import TOKEN, header_error
from pmops.delivery.netguard import DEFAULT_PORTS, NetGuard, Target, parse_target

DNS_TIMEOUT = 5.0  # seconds a new connection may wait for its host to resolve
DNS_TTL = 30.0  # seconds a picked (checked) address is reused for new connections
MAX_CACHED_HOSTS = 4096
IDLE_REUSE_LIMIT = 30.0  # seconds; servers commonly drop idle connections after 5-60 s
MAX_HEAD = 64 * 1024
DRAIN_LIMIT = 1024 * 1024  # dropping more than this is slower than a new connection

_STATUS_LINE = re.compile(r"HTTP/1\.([01]) ([1-9][0-9][0-9])(?:[ \t].*)?")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
# Framing and connection management are ours (a caller setting them would corrupt the stream),
# and no value may hold a control character: pmops.contract.headers, the rule the API applies to
# a webhook's headers at registration too.


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lowercased names, last value wins
    body: bytes  # at most max_body bytes
    elapsed_ms: float  # from just before connect/send to the full response
    address: str  # the IP connected to
    truncated: bool = False  # the body had more than max_body bytes


class InvalidHeader(ValueError):
    """A header the sender will not send; `message` is short and names it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@lru_cache(maxsize=4096)
def _target(url: str) -> Target:
    """parse_target, remembered per URL (a webhook's deliveries all go to one URL); a refused
    URL raises again each time (lru_cache keeps no exceptions)."""
    return parse_target(url)


class SendError(Exception):
    """A delivery attempt that got no usable response; `message` says why."""

    def __init__(self, message: str, elapsed_ms: float = 0.0, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.elapsed_ms = elapsed_ms
        self.timed_out = timed_out  # the attempt ran out of time (no answer within timeout)


class _BadResponse(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _NoResponse(Exception):
    """The connection ended before any byte of a response: retryable on a reused connection."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class _Parser:
    """Incremental parser of one response; feed() returns True once it is complete."""

    __slots__ = (
        "body",
        "buf",
        "drain",
        "dropped",
        "headers",
        "keep_alive",
        "max_body",
        "remaining",
        "stage",
        "started",
        "status",
        "total",
        "truncated",
    )

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.buf = bytearray()
        self.stage = _HEAD
        self.started = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.remaining = 0
        self.total = 0
        self.dropped = 0
        self.drain = True
        self.keep_alive = True
        self.truncated = False

    def feed(self, data: bytes) -> bool:
        if data:
            self.started = True
            self.buf += data
        return self._run()

    def feed_eof(self, how: str) -> None:
        """The connection ended; completes an until-close body, else raises."""
        if self.stage == _UNTIL_CLOSE:
            self.buf.clear()
            self.stage = _DONE
            self.keep_alive = False
            return
        if self.stage == _DONE:
            return
        if not self.started:
            raise _NoResponse(f"connection {how} before the response")
        if self.stage == _HEAD:
            raise _BadResponse(f"connection {how} in the response head")
        if self.stage == _LENGTH:
            got = self.total - self.remaining
            raise _BadResponse(f"connection {how} after {got} of {self.total} body bytes")
        raise _BadResponse(f"connection {how} inside the chunked body")

    def _keep(self, n: int) -> None:
        room = self.max_body - len(self.body)
        if room > 0:
            self.body += self.buf[: min(n, room)]
        if n > room:
            self.dropped += n - max(room, 0)
            self.truncated = True
        del self.buf[:n]

    def _stop_early(self) -> None:
        # Body full and what is left is not worth reading: the connection goes.
        self.truncated = True
        self.keep_alive = False
        self.buf.clear()
        self.stage = _DONE

    def _run(self) -> bool:
        buf = self.buf
        while True:
            stage = self.stage
            if stage == _HEAD:
                if not self._head():
                    return False
            elif stage == _LENGTH:
                n = min(len(buf), self.remaining)
                if n:
                    self._keep(n)
                    self.remaining -= n
                if self.remaining == 0:
                    self.stage = _DONE
                elif not self.drain and len(self.body) >= self.max_body:
                    self._stop_early()
                else:
                    return False
            elif stage == _CHUNK_SIZE_LINE:
                i = buf.find(b"\n")
                if i < 0:
                    if len(buf) > 4096:
                        raise _BadResponse("chunk size line too long")
                    return False
                line = bytes(buf[:i]).rstrip(b"\r")
                del buf[: i + 1]
                size = line.split(b";", 1)[0].strip(b" \t")
                if not _CHUNK_SIZE.fullmatch(size):
                    raise _BadResponse(f"invalid chunk size line {line[:40]!r}")
                self.remaining = int(size, 16)
                self.stage = _CHUNK_DATA if self.remaining else _TRAILERS
            elif stage == _CHUNK_DATA:
                n = min(len(buf), self.remaining)
                if n:
                    self._keep(n)
                    self.remaining -= n
                if self.dropped > DRAIN_LIMIT:
                    self._stop_early()
                elif self.remaining:
                    return False
                else:
                    self.stage = _CHUNK_END
            elif stage == _CHUNK_END:
                if buf[:2] == b"\r\n":
                    del buf[:2]
                elif buf[:1] == b"\n":
                    del buf[:1]
                elif bytes(buf) in (b"", b"\r"):
                    return False
                else:
                    raise _BadResponse("chunk data not followed by CRLF")
                self.stage = _CHUNK_SIZE_LINE
            elif stage == _TRAILERS:
                i = buf.find(b"\n")
                if i < 0:
                    if len(buf) > MAX_HEAD:
                        raise _BadResponse("trailer line too long")
                    return False
                empty = not buf[:i].rstrip(b"\r")
                del buf[: i + 1]
                if empty:
                    self.stage = _DONE
            elif stage == _UNTIL_CLOSE:
                if len(buf) > self.max_body - len(self.body):
                    self._keep(self.max_body - len(self.body))
                    self._stop_early()
                else:
                    self.body += buf
                    buf.clear()
                    return False
            else:  # _DONE
                if buf:
                    # Bytes past the response: the server is out of step with us.
                    self.keep_alive = False
                    buf.clear()
                return True

    def _head(self) -> bool:
        """Parse a complete response head if buffered; False when more bytes are needed."""
        buf = self.buf
        end = _head_end(buf)
        if end is None:
            return False
        lines = buf[:end].decode("latin-1").split("\n")
        del buf[:end]
        status_line = lines[0].rstrip("\r")
        m = _STATUS_LINE.fullmatch(status_line)
        if m is None:
            raise _BadResponse(f"invalid status line {status_line[:80]!r}")
        status = int(m.group(2))
        fields = _HeadFields.parse(lines[1:])
        if status < 200:
            if status == 101:
                raise _BadResponse("unexpected 101 Switching Protocols")
            return True  # interim (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        self.headers = fields.headers
        if m.group(1) == "0":
            self.keep_alive = "keep-alive" in fields.tokens
        else:
            self.keep_alive = "close" not in fields.tokens
        self._framing(status, fields)
        return True

    def _framing(self, status: int, fields: _HeadFields) -> None:
        """How the body is delimited: none, chunked, Content-Length or until the close."""
        lengths, codings = fields.lengths, fields.codings
        if status in (204, 304):
            self.stage = _DONE
        elif codings:
            if codings[-1] == "chunked":
                self.stage = _CHUNK_SIZE_LINE
                if lengths:  # both framings: a smuggling pattern, do not trust what follows
                    self.keep_alive = False
            else:
                self.stage = _UNTIL_CLOSE
                self.keep_alive = False
        elif lengths:
            distinct = set(lengths)
            value = lengths[0]
            if len(distinct) != 1 or not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise _BadResponse(f"invalid Content-Length {fields.headers['content-length']!r}")
            self.total = self.remaining = int(value)
            self.drain = self.total <= self.max_body + DRAIN_LIMIT
            self.stage = _LENGTH if self.total else _DONE
        else:
            self.stage = _UNTIL_CLOSE
            self.keep_alive = False


def _head_end(buf: bytearray) -> int | None:
    """Where the buffered response head ends (after its blank line); None: not all here yet."""
    end = buf.find(b"\r\n\r\n")
    if end >= 0:
        lf = buf.find(b"\n\n", 0, end)
        end = lf + 2 if lf >= 0 else end + 4
    else:
        # Some servers end lines with a bare LF.
        lf = buf.find(b"\n\n")
        if lf < 0:
            if len(buf) > MAX_HEAD:
                raise _BadResponse("response head larger than 64 KiB")
            return None
        end = lf + 2
    if end > MAX_HEAD:
        raise _BadResponse("response head larger than 64 KiB")
    return end


@dataclass
class _HeadFields:
    """A response head's header lines: the last value of each name, and the framing ones."""

    headers: dict[str, str] = field(default_factory=dict)
    lengths: list[str] = field(default_factory=list)
    codings: list[str] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, lines: list[str]) -> _HeadFields:
        fields = cls()
        headers = fields.headers
        last = ""
        for raw in lines:
            line = raw.rstrip("\r")
            if not line:
                continue
            if line[0] in " \t":  # obsolete line folding
                if not last:
                    raise _BadResponse("header continuation without a header")
                headers[last] += " " + line.strip(" \t")
                continue
            name, sep, value = line.partition(":")
            if not sep or not TOKEN.fullmatch(name):
                raise _BadResponse(f"invalid header line {line[:80]!r}")
            last = name.lower()
            value = value.strip(" \t")
            headers[last] = value
            if last == "content-length":
                fields.lengths.extend(v.strip(" \t") for v in value.split(","))
            elif last == "transfer-encoding":
                fields.codings.extend(v.strip(" \t").lower() for v in value.split(","))
            elif last == "connection":
                fields.tokens.update(v.strip(" \t").lower() for v in value.split(","))
        return fields


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time (no pipelining)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int) -> None:
        self.loop = loop
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.parser: _Parser | None = None
        self.waiter: asyncio.Future[_Parser] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.address = ""  # the (checked) IP it is connected to
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            # Bytes with no request outstanding: whatever they are, the connection is unusable.
            self.abort()
            return
        try:
            done = parser.feed(data)
        except _BadResponse as e:
            self._finish(None, e)
            return
        if done:
            self._finish(parser, None)

    def eof_received(self) -> bool:
        self._ended("closed")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended("closed" if exc is None else "reset")
        if not self.lost.done():
            self.lost.set_result(None)

    def _ended(self, how: str) -> None:
        self.closed = True
        parser = self.parser
        if parser is None:
            return
        try:
            parser.feed_eof(how)
        except (_BadResponse, _NoResponse) as e:
            self._finish(None, e)
            return
        self._finish(parser, None)

    def _finish(self, parser: _Parser | None, exc: Exception | None) -> None:
        waiter = self.waiter
        self.parser = self.waiter = None
        if waiter is None or waiter.done():
            return
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(cast(_Parser, parser))

    async def request(self, payload: bytes) -> _Parser:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise _NoResponse("connection closed before the response")
        self.parser = _Parser(self.max_body)
        self.waiter = waiter = self.loop.create_future()
        transport.write(payload)
        parser: _Parser = await waiter
        return parser

    def close(self) -> None:
        self.closed = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


_Origin = tuple[str, str, int]  # scheme, host, port


class HttpSender:
    """POSTs to webhook URLs through a NetGuard; one instance per event loop."""

    def __init__(
        self,
        guard: NetGuard,
        timeout: float = 10.0,
        max_body: int = 65536,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = 16,
        user_agent: str = "pmops-webhooks/0.1",
        dns_timeout: float = DNS_TIMEOUT,
        dns_ttl: float = DNS_TTL,
    ) -> None:
        self.guard = guard
        self.timeout = timeout
        self.dns_timeout = min(dns_timeout, timeout)
        self.dns_ttl = dns_ttl
        self._addresses: dict[tuple[str, int], tuple[float, str]] = {}
        self.max_body = max_body
        self.max_idle_per_origin = max_idle_per_origin
        self.user_agent = user_agent
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._active: set[_Connection] = set()
        self._closed = False
        self._next_sweep = 0.0

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Made on first https use: loading the CA store takes tens of milliseconds.
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def __aenter__(self) -> HttpSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        """POST `body` to `url`; a Response for any HTTP status, SendError when none came.

        UnsafeUrl, BlockedAddress and ResolveFailed come from the NetGuard unchanged;
        InvalidHeader (a ValueError) for a header that is malformed or one the sender sets itself
        (Host, Content-Length, ...; pmops.contract.headers). Every message is short and stable.
        """
        if self._closed:
            raise RuntimeError("HttpSender is closed")
        target = _target(url)
        payload = self._request_bytes(target, headers, body)
        t0 = time.perf_counter()
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                parser, ip = await self._exchange(target, payload)
        except TimeoutError as e:
            ms = (time.perf_counter() - t0) * 1000
            if deadline.expired():
                raise SendError(f"timed out after {self.timeout:g} s", ms, timed_out=True) from None
            raise SendError(_os_error_text(e), ms) from None
        except (_BadResponse, _NoResponse) as e:
            prefix = "bad response: " if isinstance(e, _BadResponse) else ""
            raise SendError(prefix + e.message, (time.perf_counter() - t0) * 1000) from None
        except ssl.SSLCertVerificationError as e:
            text = (
                f"TLS handshake failed: certificate verify failed: {e.verify_message or e.reason}"
            )
            raise SendError(text, (time.perf_counter() - t0) * 1000) from None
        except ssl.SSLError as e:
            text = f"TLS handshake failed ({str(e.reason or 'unknown').lower().replace('_', ' ')})"
            raise SendError(text, (time.perf_counter() - t0) * 1000) from None
        except OSError as e:
            raise SendError(_os_error_text(e), (time.perf_counter() - t0) * 1000) from None
        return Response(
            status=parser.status,
            headers=parser.headers,
            body=bytes(parser.body),
            elapsed_ms=(time.perf_counter() - t0) * 1000,
            address=ip,
            truncated=parser.truncated,
        )

    async def close(self) -> None:
        """Close every connection (in-flight posts fail with SendError)."""
        self._closed = True
        idle = [conn for stack in self._idle.values() for conn in stack]
        self._idle.clear()
        for conn in idle:
            conn.close()
        for conn in list(self._active):
            conn.abort()
        pending = [c.lost for c in (*idle, *self._active) if not c.lost.done()]
        if pending:
            # Lets TLS close_notify go out and transports finish before the loop may stop.
            await asyncio.wait(pending, timeout=1.0)

    def _request_bytes(self, target: Target, headers: Mapping[str, str], body: bytes) -> bytes:
        host = f"[{target.host}]" if ":" in target.host else target.host
        if target.port != DEFAULT_PORTS[target.scheme]:
            host = f"{host}:{target.port}"
        parts = [
            f"POST {target.path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n"
        ]
        user_agent = True
        for name, value in headers.items():
            error = header_error(name, value)
            if error is not None:
                shown = name if TOKEN.fullmatch(name) else "name"
                raise InvalidHeader(f"invalid header {shown}: {error}")
            lower = name.lower()
            if lower == "user-agent":
                user_agent = False
            parts.append(f"{name}: {value}\r\n")
        if user_agent:
            parts.append(f"User-Agent: {self.user_agent}\r\n")
        parts.append("\r\n")
        return "".join(parts).encode() + body

    async def _exchange(self, target: Target, payload: bytes) -> tuple[_Parser, str]:
        key = (target.scheme, target.host, target.port)
        fresh = False
        while True:
            conn = None if fresh else self._take_idle(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(target)
            self._active.add(conn)
            try:
                parser = await conn.request(payload)
            except _NoResponse:
                conn.abort()
                if reused:
                    # The server closed this idle connection as we reused it: try once anew.
                    fresh = True
                    continue
                raise
            except BaseException:
                conn.abort()
                raise
            finally:
                self._active.discard(conn)
            self._release(key, conn, parser.keep_alive)
            return parser, conn.address

    async def _address(self, target: Target) -> str:
        """The checked IP for a new connection to `target`: kept from a recent pick, or picked
        now (ResolveFailed, BlockedAddress)."""
        now = asyncio.get_running_loop().time()
        name = (target.host, target.port)
        kept = self._addresses.get(name)
        if kept is not None and kept[0] > now:
            return kept[1]
        ip = str(await self.guard.pick_address(target, self.dns_timeout))
        if self.dns_ttl > 0 and ip != target.host:
            if len(self._addresses) >= MAX_CACHED_HOSTS:
                self._addresses.clear()
            self._addresses[name] = (now + self.dns_ttl, ip)
        return ip

    async def _connect(self, target: Target) -> _Connection:
        ip = await self._address(target)
        loop = asyncio.get_running_loop()
        max_body = self.max_body
        try:
            if target.scheme == "https":
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, max_body),
                    ip,
                    target.port,
                    ssl=self.ssl_context,
                    server_hostname=target.host,
                )
            else:
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, max_body), ip, target.port
                )
        except BaseException:  # refused, unreachable, timed out: look the name up next time
            self._addresses.pop((target.host, target.port), None)
            raise
        conn.address = ip
        return conn

    def _take_idle(self, key: _Origin) -> _Connection | None:
        stack = self._idle.get(key)
        if not stack:
            return None
        now = asyncio.get_running_loop().time()
        while stack:
            conn = stack.pop()
            if not conn.closed and now - conn.idle_since <= IDLE_REUSE_LIMIT:
                return conn
            conn.close()
        return None

    def _release(self, key: _Origin, conn: _Connection, keep_alive: bool) -> None:
        if not keep_alive or conn.closed or self._closed:
            conn.close()
            return
        now = asyncio.get_running_loop().time()
        if now >= self._next_sweep:
            self._sweep(now)
        stack = self._idle.setdefault(key, [])
        if len(stack) >= self.max_idle_per_origin:
            conn.close()
            return
        conn.idle_since = now
        stack.append(conn)

    def _sweep(self, now: float) -> None:
        # Origins no longer posted to would otherwise hold their idle connections forever.
        self._next_sweep = now + IDLE_REUSE_LIMIT
        for name, (expires, _ip) in list(self._addresses.items()):
            if expires <= now:
                del self._addresses[name]
        for key, stack in list(self._idle.items()):
            keep = []
            for conn in stack:
                if conn.closed or now - conn.idle_since > IDLE_REUSE_LIMIT:
                    conn.close()
                else:
                    keep.append(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]


def _os_error_text(e: OSError) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(e, ConnectionAbortedError):
        return "connection aborted"
    if isinstance(e, TimeoutError):
        return "connection timed out"
    if e.strerror:
        return f"connection failed: {e.strerror.lower()}"
    return "connection failed"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
