"""Where a webhook may be delivered: URL checks and a guard against private addresses (SSRF).

A webhook URL is chosen by a tenant, and the deliverer runs inside our network, so without a guard
a URL such as `http://169.254.169.254/latest/meta-data/` or `http://10.0.0.5:5432/` would let a
tenant make us talk to cloud metadata or internal services. The rules:

* At registration (`NetGuard.check_registration`) the URL must be http(s), carry a host and no
  credentials, and every address the host resolves to *right now* must be public. A host that does
  not resolve is accepted: DNS may not be set up yet, and the check that matters is at send time.
* Before a new connection (`NetGuard.pick_address`) the host is resolved, every address is
  checked, and the caller connects to exactly the address returned, never looking the name up a
  second time. Checking one lookup and then letting the connect do its own would leave a
  DNS-rebinding window (a name answering a public address to the check and 127.0.0.1 to the
  connect), which is why the sender takes an IP, not a name, and why what it may keep (a
  connection, or the picked address for a few seconds: pmops.delivery.httpsend) is only ever an
  address this guard checked. Raw DNS answers are never cached here.
* Lookups run in the guard's own few daemon threads (`LookupThreads`), one at a time per host:
  callers asking for a host already being looked up wait for that lookup (each up to its own
  timeout) instead of starting another. So a host whose DNS hangs holds one thread, not every
  thread, and never the event loop's default executor that store calls use.
* If any address of a name is blocked the name is refused, even if another address is public: a
  name mixing both is either misconfigured or an attack, and refusing it keeps the rule simple.

Blocked: loopback, RFC 1918 / unique-local private, link-local (cloud metadata included),
carrier-grade NAT, multicast, unspecified, broadcast, reserved and any other non-global range.
IPv6 forms that embed an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96, 6to4) are judged by the
IPv4 address they reach. An explicit allow list (e.g. "127.0.0.0/8" for local development and
tests) overrides all of it. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import queue
import socket
import string
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443}

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
_THIS_NETWORK = _V4("0.0.0.0/8")
_RFC1918 = (_V4("10.0.0.0/8"), _V4("172.16.0.0/12"), _V4("192.168.0.0/16"))
_CGNAT = _V4("100.64.0.0/10")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_ULA = _V6("fc00::/7")
_NAT64 = _V6("64:ff9b::/96")
_LOOPBACKS = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
# Named so a refusal says what the address is; they are blocked by their ranges anyway.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
# Letters, digits, '-', '.', and '_' (seen in real service names); anything else in a host is
# either a parsing trick or something that would corrupt the Host header.
_HOST_CHARS = frozenset(string.ascii_lowercase + string.digits + "-._")
# Characters kept as they are when re-quoting path and query: the RFC 3986 reserved set, '%' so
# existing escapes survive, and the unreserved ones quote() always keeps.
_PATH_SAFE = "!$&'()*+,/:;=?@[]~%"


class UnsafeUrl(ValueError):
    """A webhook URL we refuse; `message` is human text naming the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BlockedAddress(Exception):
    """At send time the host resolved to an address we never connect to."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ResolveFailed(Exception):
    """At send time the host did not resolve (error or timeout)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


@dataclass(frozen=True)
class Target:
    scheme: str  # "http" | "https"
    host: str  # lowercased; IDNA (ASCII) form for names, IPv6 literals without brackets
    port: int
    path: str  # path plus "?query", percent-encoded where needed, at least "/"
    url: str  # as given


def parse_target(url: str, field: str = "URL") -> Target:
    """Split a webhook URL; UnsafeUrl (worded with `field`) when it is not one we deliver to."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as e:  # bad port, bad bracketed host, ...
        raise UnsafeUrl(f"{field} is not a valid URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        shown = f"'{scheme}'" if scheme else "none"
        raise UnsafeUrl(f"{field} must use http or https (scheme: {shown})")
    if "@" in parts.netloc:
        raise UnsafeUrl(f"{field} must not contain credentials (user:password@)")
    raw_host = parts.hostname
    if not raw_host:
        raise UnsafeUrl(f"{field} has no host")
    host = _normalise_host(raw_host)
    if host is None:
        raise UnsafeUrl(f"{field} has an invalid host: {raw_host!r}")
    if port is None:
        port = DEFAULT_PORTS[scheme]
    elif not 1 <= port <= 65535:
        raise UnsafeUrl(f"{field} has an invalid port: {port}")
    path = urllib.parse.quote(parts.path or "/", safe=_PATH_SAFE)
    if not path.startswith("/"):
        path = "/" + path
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe=_PATH_SAFE)
    return Target(scheme=scheme, host=host, port=port, path=path, url=url)


def _normalise_host(host: str) -> str | None:
    literal = _literal(host)
    if literal is not None:
        return str(literal)
    try:
        # The IDNA form is what DNS, the Host header and TLS SNI all need.
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    if not ascii_host.strip(".") or not set(ascii_host) <= _HOST_CHARS:
        return None
    return ascii_host


def parse_networks(spec: str) -> tuple[Network, ...]:
    """Networks from "127.0.0.0/8, ::1/128" ("" -> ()); ValueError names a bad entry.

    Host bits are ignored ("10.1.2.3/8" means 10.0.0.0/8), and a bare address is a /32 or /128.
    """
    out: list[Network] = []
    for item in spec.replace(",", " ").split():
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {item!r}") from None
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _literal(host: str) -> Address | None:
    """The address when `host` is an IP literal (in canonical notation), else None.

    Only canonical forms count: "127.1" or "0x7f.0.0.1" are names to getaddrinfo, which turns
    them into the address they mean, and that address is what gets checked.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_localhost(host: str) -> bool:
    """RFC 6761: "localhost" and every name under it are loopback whatever DNS says. Only the
    bare "localhost" is looked up as it is; "localhost." or "x.localhost" may be in no hosts
    file and would otherwise pass registration as a name that does not resolve yet."""
    bare = host.lower().rstrip(".")
    return host != "localhost" and (bare == "localhost" or bare.endswith(".localhost"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _ipv4_reason(ip: ipaddress.IPv4Address) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip in _THIS_NETWORK:
        return "a 'this network' address (0.0.0.0/8)"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if any(ip in net for net in _RFC1918):
        return "a private address"
    if ip in _CGNAT:
        return "a carrier-grade NAT address"
    if ip.is_multicast:
        return "a multicast address"
    if ip == _BROADCAST:
        return "a broadcast address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


def _ipv6_reason(ip: ipaddress.IPv6Address) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip in _ULA:
        return "a private address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_site_local:
        return "a site-local address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


GetAddrInfo = Callable[..., list[tuple[Any, ...]]]
LOOKUP_THREADS = 32


class LookupThreads:
    """A few daemon threads running blocking lookups for event loops (started as needed, at most
    `size`). Daemon threads: a lookup that hangs never holds up interpreter exit."""

    def __init__(self, size: int = LOOKUP_THREADS) -> None:
        self.size = size
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._idle:
                self._idle -= 1  # an idle thread takes it
            elif self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._work, name="pmops-dns", daemon=True).start()
        self._jobs.put((loop, future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            loop, future, fn, args = self._jobs.get()
            try:
                result, error = fn(*args), None
            except BaseException as e:  # handed to the waiting coroutine
                result, error = None, e
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle_future, future, result, error)
            with self._lock:
                self._idle += 1


def _settle_future(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # every waiter may have given up (timed out): the outcome must not be reported as lost
    if not future.cancelled():
        future.exception()


class NetGuard:
    """Resolves webhook hosts and refuses private addresses; `allow` networks are exempt.

    `getaddrinfo` is socket.getaddrinfo unless given (tests give one that hangs for a host)."""

    def __init__(
        self,
        allow: Iterable[Network] = (),
        getaddrinfo: GetAddrInfo | None = None,
        threads: LookupThreads | None = None,
    ) -> None:
        self.allow: tuple[Network, ...] = tuple(allow)
        self._getaddrinfo: GetAddrInfo = getaddrinfo or socket.getaddrinfo
        self._threads = threads
        # lookups under way, per loop and (host, port): later callers join them
        self._lookups: dict[tuple[int, str, int], asyncio.Future[Any]] = {}
        # Verdicts per address (not per name): a pure function of the address and the allow
        # list, cached because the range checks cost microseconds on every send.
        self._verdicts: dict[Address, str | None] = {}

    def _allowed(self, ip: Address) -> bool:
        return any(ip in net for net in self.allow)

    def blocked_reason(self, ip: Address) -> str | None:
        """None when `ip` may be connected to, else why not (e.g. "a loopback address")."""
        try:
            return self._verdicts[ip]
        except KeyError:
            pass
        reason = self._reason(ip)
        if len(self._verdicts) >= 4096:
            self._verdicts.clear()
        self._verdicts[ip] = reason
        return reason

    def _reason(self, ip: Address) -> str | None:
        if self._allowed(ip):
            return None
        if isinstance(ip, ipaddress.IPv4Address):
            reason = _ipv4_reason(ip)
        else:
            v4 = _embedded_ipv4(ip.__class__(ip.packed))  # without a scope id
            if v4 is not None:
                if self._allowed(v4):
                    return None
                reason = _ipv4_reason(v4)
                # The embedded IPv4 is what the connection reaches, so it alone decides.
                return None if reason is None else f"{reason} (embeds IPv4 {v4})"
            reason = _ipv6_reason(ip)
        if reason is not None and ip in _METADATA:
            reason += " (cloud metadata)"
        return reason

    def resolve(self, host: str, port: int, timeout: float = 2.0) -> list[Address]:
        """All TCP addresses of `host` (an IP literal as is); socket.gaierror or TimeoutError.

        getaddrinfo cannot be interrupted, so it runs in a daemon thread that is abandoned on
        timeout rather than holding up the caller (or interpreter exit).
        """
        literal = _literal(host)
        if literal is not None:
            return [literal]
        if _is_localhost(host):
            try:
                return self.resolve("localhost", port, timeout) or list(_LOOPBACKS)
            except (OSError, UnicodeError):
                return list(_LOOPBACKS)
        result: list[Address] = []
        error: list[BaseException] = []
        done = threading.Event()

        def lookup() -> None:
            try:
                infos = self._getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
                result.extend(_addresses(infos))
            except BaseException as e:
                error.append(e)
            finally:
                done.set()

        threading.Thread(target=lookup, name="netguard-resolve", daemon=True).start()
        if not done.wait(timeout):
            raise TimeoutError(f"{host} did not resolve within {timeout:g} s")
        if error:
            raise error[0]
        return result

    async def resolve_async(self, host: str, port: int, timeout: float) -> list[Address]:
        """resolve() for the event loop: a fresh lookup, or the one of this host under way (no
        DNS cache). TimeoutError after `timeout` (the lookup itself goes on for later callers)."""
        literal = _literal(host)
        if literal is not None:
            return [literal]
        if _is_localhost(host):
            try:
                return await self.resolve_async("localhost", port, timeout) or list(_LOOPBACKS)
            except (OSError, UnicodeError):
                return list(_LOOPBACKS)
        loop = asyncio.get_running_loop()
        key = (id(loop), host, port)
        lookup = self._lookups.get(key)
        if lookup is None:
            if self._threads is None:
                self._threads = LookupThreads()
            lookup = self._threads.submit(self._lookup, host, port)
            self._lookups[key] = lookup
            lookup.add_done_callback(_retrieve)
            lookup.add_done_callback(lambda done: self._forget(key, done))
        addresses: list[Address] = await asyncio.wait_for(asyncio.shield(lookup), timeout)
        return addresses

    def _lookup(self, host: str, port: int) -> list[Address]:
        infos = self._getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        return _addresses(infos)

    def _forget(self, key: tuple[int, str, int], done: asyncio.Future[Any]) -> None:
        if self._lookups.get(key) is done:
            del self._lookups[key]

    def check_registration(self, url: str, field: str) -> Target:
        """The parsed URL, or UnsafeUrl naming `field` if it is unusable or resolves privately."""
        target = parse_target(url, field)
        try:
            addresses = self.resolve(target.host, target.port)
        except (OSError, UnicodeError):  # gaierror, TimeoutError: not resolving is no error
            return target
        for ip in addresses:
            reason = self.blocked_reason(ip)
            if reason is not None:
                raise UnsafeUrl(f"{field} resolves to {ip}, {reason}")
        return target

    async def pick_address(self, target: Target, timeout: float) -> Address:
        """The address to connect to for this one send; ResolveFailed or BlockedAddress."""
        try:
            addresses = await self.resolve_async(target.host, target.port, timeout)
        except TimeoutError:
            raise ResolveFailed(
                f"{target.host} did not resolve within {timeout:g} s", timed_out=True
            ) from None
        except (OSError, UnicodeError) as e:
            detail = getattr(e, "strerror", None) or str(e)
            raise ResolveFailed(f"{target.host} does not resolve ({detail})") from None
        if not addresses:
            raise ResolveFailed(f"{target.host} does not resolve (no addresses)")
        for ip in addresses:
            reason = self.blocked_reason(ip)
            if reason is not None:
                if str(ip) == target.host:
                    raise BlockedAddress(f"{ip} is {reason}")
                raise BlockedAddress(f"{target.host} resolves to {ip}, {reason}")
        return addresses[0]


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[Address]:
    out: list[Address] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in out:
            out.append(ip)
    return out
