"""Requests per token per second (a token bucket) and failed authentications per client address:
429 problem+json with Retry-After, naming the field and the setting. The counters live in the API
process; a fake clock drives them (no sleeping, no timing asserts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pmops.service.limits import FailureWindows, Limits, Slots, TokenBuckets
from tests.api.conftest import Served, served_app
from tests.service_stack import assert_problem

RATE, BURST = 2.0, 5
FAILURES, WINDOW = 20, 60.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_app(
        tmp_path_factory.mktemp("ratelimits"),
        token_requests_per_second=RATE,
        token_request_burst=BURST,
        auth_failures_per_address=FAILURES,
        auth_failure_window_seconds=WINDOW,
    ) as served:
        yield served


@pytest.fixture
def clock(limited: Served) -> FakeClock:
    """Fresh counters on a fake clock for each test."""
    fake = FakeClock()
    limited.app.state.limits = Limits.from_settings(limited.settings, fake)
    return fake


def from_address(served: Served, address: str, method: str, url: str, **kw: Any) -> httpx.Response:
    """A request from another client address (its own ASGI transport)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=served.app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.request(method, url, **kw)

    return served.run(send())


# -- the counters themselves ---------------------------------------------------------------------
def test_token_bucket_burst_then_rate() -> None:
    clock = FakeClock()
    bucket = TokenBuckets(50.0, 100, clock)
    assert all(bucket.take("a") == 0.0 for _ in range(100))
    assert bucket.take("a") == pytest.approx(1 / 50)
    assert bucket.take("b") == 0.0  # another token has its own bucket
    clock.advance(1 / 50)
    assert bucket.take("a") == 0.0
    assert bucket.take("a") > 0
    clock.advance(10.0)  # refills up to the burst, not beyond
    assert sum(1 for _ in range(150) if bucket.take("a") == 0.0) == 100


def test_failure_window_blocks_until_the_oldest_leaves() -> None:
    clock = FakeClock()
    window = FailureWindows(3, 60.0, clock)
    for _ in range(3):
        assert window.blocked("x") == 0.0
        window.failed("x")
        clock.advance(10.0)
    assert window.blocked("x") == pytest.approx(30.0)  # first failure at 0, now 30
    assert window.blocked("y") == 0.0
    clock.advance(30.0)
    assert window.blocked("x") == 0.0


def test_slots() -> None:
    slots = Slots(2)
    assert slots.acquire("t") and slots.acquire("t")
    assert not slots.acquire("t")
    assert slots.acquire("u")
    slots.release("t")
    assert slots.held("t") == 1 and slots.acquire("t")


# -- in the API ----------------------------------------------------------------------------------
def test_requests_per_token(limited: Served, clock: FakeClock) -> None:
    a, b = limited.tenant(), limited.tenant()
    for _ in range(BURST):
        assert a.get("/async/operations").status_code == 200
    r = a.get("/async/operations")
    body = assert_problem(r, 429, "Authorization")
    assert body["limit"] == "PMOPS_TOKEN_REQUESTS_PER_SECOND"
    assert r.headers["Retry-After"] == "1"  # half a second, rounded up
    assert b.get("/async/operations").status_code == 200  # another token is not slowed
    clock.advance(1 / RATE)
    assert a.get("/async/operations").status_code == 200
    assert a.get("/async/operations").status_code == 429


def test_failed_authentications_per_address(limited: Served, clock: FakeClock) -> None:
    good = limited.tenant()
    answers = [
        limited.request("GET", f"{good.base}/async/operations", headers=bad_token(i))
        for i in range(750)
    ]
    codes = [r.status_code for r in answers]
    assert codes[:FAILURES] == [401] * FAILURES
    assert codes[FAILURES:] == [429] * (750 - FAILURES)  # 750 bad tokens in a row: throttled
    body = assert_problem(answers[-1], 429, "Authorization")
    assert body["limit"] == "PMOPS_AUTH_FAILURES_PER_ADDRESS"
    assert answers[-1].headers["Retry-After"] == str(int(WINDOW))
    # the address is refused, even with a good token; another address is not
    assert good.get("/async/operations").status_code == 429
    other = from_address(
        limited, "10.1.2.3", "GET", f"{good.base}/async/operations", headers=good.headers
    )
    assert other.status_code == 200, other.text
    clock.advance(WINDOW / 2)
    assert good.get("/async/operations").headers["Retry-After"] == str(int(WINDOW / 2))
    clock.advance(WINDOW / 2)  # the window has passed
    assert good.get("/async/operations").status_code == 200


def test_no_token_is_not_a_failed_try(limited: Served, clock: FakeClock) -> None:
    good = limited.tenant()
    for _ in range(FAILURES + 5):
        r = limited.request("GET", f"{good.base}/async/operations")
        assert r.status_code == 401
    assert good.get("/async/operations").status_code == 200


def bad_token(i: int) -> dict[str, str]:
    return {"Authorization": f"Bearer pmops_guess{i:04d}"}
