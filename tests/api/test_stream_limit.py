"""Event streams per token (PMOPS_STREAMS_PER_TOKEN): with the limit's streams open, one more is
429 while the others stay open; a closed stream gives its slot back; another token has its own.

httpx's ASGI transport reads a whole answer before it returns, so the streams here are opened on
the app itself (ASGI calls whose client disconnects when the test says)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pmops.service.errors import Problem
from pmops.service.limits import Limits
from pmops.settings import Settings
from pmops.store.tokens import hash_token
from tests.api.conftest import Client, Served, served_app

LIMIT = 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_app(tmp_path_factory.mktemp("streamlimit"), streams_per_token=LIMIT) as served:
        yield served


class OpenStream:
    """One GET .../events on the app, open until `close()` (the client goes away)."""

    def __init__(self, served: Served, client: Client, operation_id: str) -> None:
        self.served = served
        path = f"{client.base}/async/operation/{operation_id}/events"
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                (b"authorization", f"Bearer {client.token}".encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.status = served.run(self._open())

    async def _open(self) -> int:
        self.gone = asyncio.Event()
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and not started.done():
                started.set_result(int(message["status"]))

        self.task = asyncio.create_task(self.served.app(self.scope, receive, send))
        return await asyncio.wait_for(started, 30)

    def close(self) -> None:
        async def closing() -> None:
            self.gone.set()
            await asyncio.wait_for(self.task, 30)

        self.served.run(closing())


def held(served: Served, client: Client) -> int:
    limits: Limits = served.app.state.limits
    return limits.streams.held(hash_token(client.token))


def test_streams_per_token(limited: Served, datasets: Path) -> None:
    a = limited.tenant()
    op_id = a.start(a.upload(datasets / "receipt.xes.gz")["datasetId"])["operationId"]
    streams = [OpenStream(limited, a, op_id) for _ in range(LIMIT)]
    assert [s.status for s in streams] == [200] * LIMIT
    assert all(not s.task.done() for s in streams)

    r = a.get(f"/async/operation/{op_id}/events")
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["limit"] == "PMOPS_STREAMS_PER_TOKEN"
    assert [e["field"] for e in body["errors"]] == ["Authorization"]
    assert int(r.headers["Retry-After"]) >= 1
    assert all(not s.task.done() for s in streams)  # the open ones stay open

    # another token of the same project has slots of its own
    b = limited.tenant(a.tenant, a.project)
    other = OpenStream(limited, b, op_id)
    assert other.status == 200

    assert held(limited, a) == LIMIT and held(limited, b) == 1
    streams[0].close()  # a closed stream gives its slot back
    assert held(limited, a) == LIMIT - 1
    again = OpenStream(limited, a, op_id)
    assert again.status == 200
    assert OpenStream(limited, a, op_id).status == 429
    for s in [*streams[1:], again, other]:
        s.close()
    assert held(limited, a) == 0 and held(limited, b) == 0

    # a stream that ends by itself (after the terminal event) gives its slot back too
    assert a.delete(f"/async/operation/{op_id}").json()["status"] == "Cancelled"
    for _ in range(LIMIT + 2):
        r = a.get(f"/async/operation/{op_id}/events")
        assert r.status_code == 200 and "operation.cancelled" in r.text
    assert held(limited, a) == 0


def test_stream_slots_directly() -> None:
    limits = Limits.from_settings(Settings())  # the default: 10 per token
    releases = [limits.hold_stream("t") for _ in range(10)]
    with pytest.raises(Problem) as caught:
        limits.hold_stream("t")
    assert caught.value.status == 429 and caught.value.headers["Retry-After"] == "5"
    releases[0]()
    releases[0]()  # given back once, however often called
    assert limits.streams.held("t") == 9
    limits.hold_stream("t")
    with pytest.raises(Problem):
        limits.hold_stream("t")
