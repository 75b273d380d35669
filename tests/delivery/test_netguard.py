"""NetGuard: which URLs and addresses a webhook may go to (no mocks; real getaddrinfo)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket

import pytest

from pmops.delivery.netguard import (
    BlockedAddress,
    NetGuard,
    ResolveFailed,
    UnsafeUrl,
    parse_networks,
    parse_target,
)

BLOCKED = [
    ("127.0.0.1", "a loopback address"),
    ("127.255.0.9", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.5", "a private address"),
    ("172.16.0.1", "a private address"),
    ("172.31.255.254", "a private address"),
    ("192.168.1.1", "a private address"),
    ("fd12:3456::1", "a private address"),
    ("169.254.169.254", "a link-local address (cloud metadata)"),
    ("169.254.1.1", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("100.64.0.1", "a carrier-grade NAT address"),
    ("100.127.255.254", "a carrier-grade NAT address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("0.0.0.0", "an unspecified address"),
    ("::", "an unspecified address"),
    ("0.1.2.3", "a 'this network' address (0.0.0.0/8)"),
    ("255.255.255.255", "a broadcast address"),
    ("240.0.0.1", "a reserved address"),
    ("192.0.2.10", "a non-public address"),  # documentation range
    ("2001:db8::1", "a non-public address"),
    ("::ffff:127.0.0.1", "a loopback address (embeds IPv4 127.0.0.1)"),
    ("::ffff:10.1.2.3", "a private address (embeds IPv4 10.1.2.3)"),
    ("64:ff9b::7f00:1", "a loopback address (embeds IPv4 127.0.0.1)"),
    ("64:ff9b::a9fe:a9fe", "a link-local address (embeds IPv4 169.254.169.254)"),
    ("2002:c0a8:101::1", "a private address (embeds IPv4 192.168.1.1)"),
    ("fd00:ec2::254", "a private address (cloud metadata)"),
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_blocked_addresses_name_their_class(address: str, reason: str) -> None:
    assert NetGuard().blocked_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert NetGuard().blocked_reason(ipaddress.ip_address(address)) is None


def test_allow_list_exempts_only_its_networks() -> None:
    guard = NetGuard(allow=parse_networks("127.0.0.0/8"))
    assert guard.blocked_reason(ipaddress.ip_address("127.0.0.1")) is None
    assert guard.blocked_reason(ipaddress.ip_address("127.9.9.9")) is None
    # The allow list speaks for the address reached, also through an IPv4-mapped form.
    assert guard.blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert guard.blocked_reason(ipaddress.ip_address("10.0.0.1")) == "a private address"
    assert guard.blocked_reason(ipaddress.ip_address("::1")) == "a loopback address"


def test_parse_networks() -> None:
    assert parse_networks("127.0.0.0/8, ::1/128") == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert parse_networks("") == ()
    assert parse_networks("  ") == ()
    assert parse_networks("10.1.2.3/8 192.168.0.7") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.0.7/32"),
    )
    with pytest.raises(ValueError, match="not-a-net"):
        parse_networks("127.0.0.0/8, not-a-net")
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")


def test_parse_target_fields() -> None:
    t = parse_target("HTTPS://Hooks.Example.COM/a/b?x=1&y=2#frag")
    assert (t.scheme, t.host, t.port, t.path) == ("https", "hooks.example.com", 443, "/a/b?x=1&y=2")
    assert t.url == "HTTPS://Hooks.Example.COM/a/b?x=1&y=2#frag"
    t = parse_target("http://example.com")
    assert (t.port, t.path) == (80, "/")
    t = parse_target("http://[::1]:8080/hook")
    assert (t.host, t.port, t.path) == ("::1", 8080, "/hook")
    t = parse_target("http://bücher.example/p ath?q=ä")
    assert (t.host, t.path) == ("xn--bcher-kva.example", "/p%20ath?q=%C3%A4")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://127.0.0.1:6379/_", "http or https"),
        ("example.com/x", "http or https"),
        ("http:///x", "no host"),
        ("https://", "no host"),
        ("http://user:secret@example.com/", "credentials"),
        ("http://user@example.com/", "credentials"),
        ("http://example.com:0/", "port"),
        ("http://example.com:70000/", "ort"),
        ("http://example.com:http/", "ort"),
        ("http://exa mple.com/", "invalid host"),
        ("http://%31%32%37.0.0.1/", "invalid host"),
    ],
)
def test_parse_target_rejects(url: str, words: str) -> None:
    with pytest.raises(UnsafeUrl) as info:
        parse_target(url, "webhookUrl")
    assert info.value.message.startswith("webhookUrl")
    assert words in info.value.message


def test_check_registration_refuses_a_private_host_naming_the_field() -> None:
    guard = NetGuard()
    with pytest.raises(UnsafeUrl) as info:
        guard.check_registration("http://localhost:9/x", "webhookUrl")
    assert info.value.message == "webhookUrl resolves to 127.0.0.1, a loopback address"
    with pytest.raises(UnsafeUrl, match=r"callbackUrl resolves to 169\.254\.169\.254, .*metadata"):
        guard.check_registration("http://169.254.169.254/latest/meta-data/", "callbackUrl")
    # Spellings of 127.0.0.1 that getaddrinfo understands are caught by what they resolve to.
    with pytest.raises(UnsafeUrl, match="loopback"):
        guard.check_registration("http://127.1/", "webhookUrl")
    with pytest.raises(UnsafeUrl, match="loopback"):
        guard.check_registration("http://2130706433/", "webhookUrl")
    with pytest.raises(UnsafeUrl, match="loopback"):
        guard.check_registration("http://[::ffff:127.0.0.1]/", "webhookUrl")
    with pytest.raises(UnsafeUrl, match="webhookUrl must use http or https"):
        guard.check_registration("ftp://example.com/", "webhookUrl")


def test_check_registration_accepts_a_host_that_does_not_resolve() -> None:
    guard = NetGuard()
    target = guard.check_registration("https://your-app.com/webhooks/x", "webhookUrl")
    assert (target.host, target.port, target.path) == ("your-app.com", 443, "/webhooks/x")


def test_check_registration_with_allow_list() -> None:
    guard = NetGuard(allow=parse_networks("127.0.0.0/8"))
    assert guard.check_registration("http://localhost:9/x", "webhookUrl").host == "localhost"
    with pytest.raises(UnsafeUrl, match=re.escape("10.0.0.1, a private address")):
        guard.check_registration("http://10.0.0.1/x", "webhookUrl")


def test_resolve() -> None:
    guard = NetGuard()
    assert guard.resolve("localhost", 80) == [ipaddress.ip_address("127.0.0.1")]
    assert guard.resolve("::1", 80) == [ipaddress.ip_address("::1")]
    assert guard.resolve("127.1", 80) == [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(socket.gaierror):
        guard.resolve("your-app.com", 443)


def test_resolve_async_and_pick_address() -> None:
    async def main() -> None:
        guard = NetGuard()
        assert await guard.resolve_async("localhost", 80, 2.0) == [
            ipaddress.ip_address("127.0.0.1")
        ]
        with pytest.raises(
            BlockedAddress, match=re.escape("localhost resolves to 127.0.0.1, a loopback")
        ):
            await guard.pick_address(parse_target("http://localhost/"), 2.0)
        with pytest.raises(BlockedAddress, match=re.escape("10.0.0.1 is a private address")):
            await guard.pick_address(parse_target("http://10.0.0.1/"), 2.0)
        with pytest.raises(ResolveFailed, match=re.escape("your-app.com does not resolve")):
            await guard.pick_address(parse_target("https://your-app.com/x"), 2.0)
        assert await guard.pick_address(parse_target("https://8.8.8.8/"), 2.0) == (
            ipaddress.ip_address("8.8.8.8")
        )
        allowed = NetGuard(allow=parse_networks("127.0.0.0/8"))
        assert await allowed.pick_address(parse_target("http://localhost:1/"), 2.0) == (
            ipaddress.ip_address("127.0.0.1")
        )

    asyncio.run(main())


def test_localhost_names_are_loopback_whatever_dns_says() -> None:
    """RFC 6761: "localhost." and names under .localhost are in no hosts file here; they were
    accepted at registration as names that "do not resolve yet"."""
    guard = NetGuard()
    for url in ("http://LOCALHOST./", "http://a.localhost/", "http://x.y.localhost.:8080/"):
        with pytest.raises(UnsafeUrl, match=re.escape("127.0.0.1, a loopback address")):
            guard.check_registration(url, "webhookUrl")
    allowed = NetGuard(allow=parse_networks("127.0.0.0/8"))
    assert allowed.check_registration("http://a.localhost/", "webhookUrl").host == "a.localhost"
