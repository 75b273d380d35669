"""DNS for deliveries: resolved only for new connections, one lookup per host at a time, in the
guard's own threads, so a host whose DNS hangs delays only its own sends. Real sockets and a real
receiver on 127.0.0.1; only getaddrinfo is replaced (by one that hangs for a chosen name)."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections import Counter
from typing import Any

import pytest

from pmops.delivery.httpsend import HttpSender
from pmops.delivery.netguard import BlockedAddress, NetGuard, ResolveFailed
from tests.delivery.test_httpsend import LOCAL, Receiver, Request, run

# a correctness deadline for the loaded 2-core machine, not a speed figure
DEADLINE = 60.0


class FakeDns:
    """getaddrinfo answering names from `answers`; names in `hanging` block until release()."""

    def __init__(self, answers: dict[str, str], hanging: frozenset[str] = frozenset()) -> None:
        self.answers = answers
        self.hanging = set(hanging)
        self.calls: Counter[str] = Counter()
        self.released = threading.Event()

    def __call__(self, host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        self.calls[host] += 1
        if host in self.hanging:
            self.released.wait(DEADLINE)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.answers[host], port))]

    def release(self) -> None:
        self.released.set()


def test_a_host_whose_dns_hangs_does_not_delay_another_hosts_sends() -> None:
    """40 sends to a host whose lookup hangs wait on one lookup; meanwhile 200 sends to a
    healthy host all complete, after one lookup of it."""
    dns = FakeDns(
        {"slow.test": "127.0.0.1", "fast.test": "127.0.0.1"}, hanging=frozenset({"slow.test"})
    )

    async def main() -> None:
        guard = NetGuard(allow=LOCAL, getaddrinfo=dns)
        async with Receiver() as rx, HttpSender(guard, timeout=DEADLINE) as sender:
            slow = [
                asyncio.create_task(sender.post(rx.url(host="slow.test"), {}, b"s"))
                for _ in range(40)
            ]
            await asyncio.sleep(0)
            fast = await asyncio.wait_for(
                asyncio.gather(
                    *(sender.post(rx.url(host="fast.test"), {}, b"f") for _ in range(200))
                ),
                DEADLINE,
            )
            assert [r.status for r in fast] == [200] * 200
            assert not any(t.done() for t in slow)  # still waiting for their one lookup
            assert dns.calls == {"slow.test": 1, "fast.test": 1}
            dns.release()
            answers = await asyncio.wait_for(asyncio.gather(*slow), DEADLINE)
            assert [r.status for r in answers] == [200] * 40
            assert dns.calls["slow.test"] == 1
            assert {r.header("Host").split(":")[0] for r in rx.requests} == {
                "slow.test",
                "fast.test",
            }

    try:
        run(main())
    finally:
        dns.release()


def test_a_lookup_that_times_out_fails_only_its_sends_and_is_not_repeated_meanwhile() -> None:
    """With a DNS timeout, the hanging host's sends fail as ResolveFailed (timed out) while the
    lookup under way is joined, not repeated; the healthy host is unaffected."""
    dns = FakeDns(
        {"slow.test": "127.0.0.1", "fast.test": "127.0.0.1"}, hanging=frozenset({"slow.test"})
    )

    async def main() -> None:
        guard = NetGuard(allow=LOCAL, getaddrinfo=dns)
        async with Receiver() as rx, HttpSender(guard, timeout=DEADLINE, dns_timeout=0.2) as s:
            for _ in range(3):
                with pytest.raises(ResolveFailed, match="did not resolve within") as info:
                    await s.post(rx.url(host="slow.test"), {}, b"s")
                assert info.value.timed_out
                response = await s.post(rx.url(host="fast.test"), {}, b"f")
                assert response.status == 200
            assert dns.calls["slow.test"] == 1  # the first lookup is still hanging: joined

    try:
        run(main())
    finally:
        dns.release()


def test_kept_alive_connections_need_no_lookup_and_new_ones_are_checked_again() -> None:
    """Sends on a kept-alive connection do not resolve; with no address kept (dns_ttl 0), a new
    connection resolves again and the guard checks that answer: a name that now points at a
    private address is refused and never connected to."""
    dns = FakeDns({"hook.test": "127.0.0.1"})

    async def close_after(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        return False

    async def main() -> None:
        guard = NetGuard(allow=LOCAL, getaddrinfo=dns)
        async with Receiver() as rx, HttpSender(guard, dns_ttl=0) as sender:
            for _ in range(20):
                assert (await sender.post(rx.url(host="hook.test"), {}, b"x")).status == 200
            assert rx.connections == 1 and dns.calls["hook.test"] == 1
        async with Receiver(close_after) as rx, HttpSender(guard, dns_ttl=0) as sender:
            await sender.post(rx.url(host="hook.test"), {}, b"x")
            await sender.post(rx.url(host="hook.test"), {}, b"x")
            assert dns.calls["hook.test"] == 3  # each new connection resolved
            dns.answers["hook.test"] = "10.0.0.7"  # rebinding to a private address
            with pytest.raises(BlockedAddress, match=re.escape("hook.test resolves to 10.0.0.7")):
                await sender.post(rx.url(host="hook.test"), {}, b"x")
            assert rx.connections == 2

    run(main())


def test_a_kept_address_is_reused_until_its_ttl_and_dropped_when_connecting_fails() -> None:
    """New connections within dns_ttl reuse the checked address; a refused connect forgets it."""
    dns = FakeDns({"hook.test": "127.0.0.1"})

    async def close_after(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        return False

    async def main() -> None:
        guard = NetGuard(allow=LOCAL, getaddrinfo=dns)
        async with HttpSender(guard, dns_ttl=300) as sender:
            async with Receiver(close_after) as rx:
                for _ in range(5):
                    assert (await sender.post(rx.url(host="hook.test"), {}, b"x")).status == 200
                assert rx.connections == 5 and dns.calls["hook.test"] == 1
                url = rx.url(host="hook.test")
            with pytest.raises(Exception, match="connection refused"):
                await sender.post(url, {}, b"x")  # the receiver is gone
            with pytest.raises(Exception, match="connection refused"):
                await sender.post(url, {}, b"x")
            assert dns.calls["hook.test"] == 2  # looked up again after the failed connect

    run(main())
