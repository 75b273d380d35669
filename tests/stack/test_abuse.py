"""Issue #16's abuse, replayed against one running service: tenant A misbehaves while tenant B
works. A 64 MiB JSON body, hostile formula names through a real run into the CSV artifacts, a
graceful cancel racing completion (PMOPS_CANCEL_RACES times; `make reliability` runs 50), a flood
of queued operations (PMOPS_FLOOD_OPERATIONS; `make reliability` queues 2,000) with B's wait
counted in A's dispatches, and the API's resident memory before and after all of it.

The webhook flood, the memory-limit kill and the auth-less Prefect request have their own tests
(test_service_webhooks.py, test_service_cancel.py / test_faults.py, test_security.py)."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.analysis.test_csvsafe import assert_neutral, cells, hostile_log
from tests.service_stack import TERMINAL, Stack, Tenant, assert_problem, running_stack

pytestmark = [pytest.mark.security, pytest.mark.xdist_group("stack-abuse")]

CANCEL_RACES = int(os.environ.get("PMOPS_CANCEL_RACES", "4"))
FLOOD = int(os.environ.get("PMOPS_FLOOD_OPERATIONS", "200"))
MIB = 1 << 20


@pytest.fixture(scope="module")
def abused(
    tmp_path_factory: pytest.TempPathFactory, prefect_template: Path, datasets: Path
) -> Iterator[tuple[Stack, Tenant, Tenant, dict[str, str], dict[str, float]]]:
    with running_stack(
        tmp_path_factory.mktemp("stack-abuse"), prefect_template, worker_limit=2
    ) as stack:
        a, b = stack.dev(), stack.create_token()
        ids = {
            "small": a.upload(datasets / "running-example.xes")["datasetId"],
            "receipt": a.upload(datasets / "receipt.xes.gz")["datasetId"],
            "b": b.upload(datasets / "running-example.xes")["datasetId"],
        }
        # warm-up: an analysis to its end, its results and artifacts, lists and the docs
        final = a.wait(a.start(ids["small"], "warm-up")["operationId"], deadline=300)
        assert final["status"] == "Completed", final
        for _ in range(50):
            a.get("/async/operations", params={"pageSize": 50})
        a.results(final["operationId"], format="detailed")
        a.get("/docs")
        rss = {"warm": stack.child("uvicorn").memory_info().rss / MIB}
        yield stack, a, b, ids, rss
        a.close()
        b.close()


def api_rss_mb(stack: Stack) -> float:
    return float(stack.child("uvicorn").memory_info().rss / MIB)


def test_a_64_mib_body_is_413_before_it_is_read(
    abused: tuple[Stack, Tenant, Tenant, dict[str, str], dict[str, float]],
    record_property: Any,
) -> None:
    """Tried: a 64 MiB JSON body to POST /async/operation, once with Content-Length and once
    chunked (no length). Both are 413 problem+json naming the limit; nothing is stored, and the
    API's resident memory grows by less than the body."""
    stack, a, _b, _ids, _rss = abused
    before = api_rss_mb(stack)
    listed = a.get("/async/operations", params={"pageSize": 1}).json()["summary"]
    # Content-Length says 64 MiB: the answer comes before a byte of the body is sent
    host, port = stack.url.removeprefix("http://").split(":")
    head = (
        f"POST {a.base}/async/operation HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {a.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {64 * MIB}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "application/problem+json" in answer, answer[:400]
    # chunked (no length): stopped as the count passes the limit; a client that does not read
    # while it writes may see the connection closed instead of the 413
    body = b'{"operationType":"ProcessMiningAnalysis","parameters":{"x":"' + b"a" * (64 * MIB)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), MIB):
            yield body[i : i + MIB]

    try:
        r = a.post(
            "/async/operation", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(r, 413)
    except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
        pass
    after = api_rss_mb(stack)
    assert a.get("/async/operations", params={"pageSize": 1}).json()["summary"] == listed
    assert after - before < 64, f"API RSS {before:.0f} -> {after:.0f} MiB"
    record_property("tried", 2)
    record_property("observed", f"413 twice; API RSS {before:.0f} -> {after:.0f} MiB")


def test_formula_names_are_neutral_in_the_downloaded_csvs(
    abused: tuple[Stack, Tenant, Tenant, dict[str, str], dict[str, float]],
    tmp_path: Path,
    record_property: Any,
) -> None:
    """Tried: a CSV log whose activities, resources and case ids are spreadsheet formulas
    (`=HYPERLINK(...)`, `=cmd|' /C calc'!A0`, `@SUM(...)`, `+1+1`, `-x`) uploaded and run
    through a comprehensive analysis and a DataEnrichment. In the downloaded anomalies CSV and
    enriched CSV no cell starts with `=`, `+`, `@`, tab or CR, and `-` only starts numbers."""
    _stack, a, _b, _ids, _rss = abused
    source = a.upload(hostile_log(tmp_path / "hostile.csv"))["datasetId"]
    mine = a.start(
        source,
        "formulas",
        parameters={"analysisType": "standard", "outputOptions": {"exportFormats": ["CSV"]}},
    )
    enrich = a.start(source, "formulas cleaned", "DataEnrichment", parameters={})
    checked = 0
    for op in (mine, enrich):
        final = a.wait(op["operationId"], deadline=300)
        assert final["status"] == "Completed", final
        doc = a.results(op["operationId"]).json()
        for artifact in doc["artifacts"]:
            if artifact["format"] != "CSV":
                continue
            r = a.get(artifact["downloadUrl"])
            assert r.status_code == 200, r.text
            path = tmp_path / f"{op['operationId']}.csv"
            path.write_bytes(r.content)
            written = cells(path)
            assert_neutral(written)
            assert any(c.startswith("'=") for c in written), artifact
            checked += len(written)
    assert checked > 0
    record_property("tried", 2)
    record_property("observed", f"{checked:,} cells downloaded, none a formula")


def _event_types(api: Tenant, op_id: str) -> list[str]:
    r = api.get(f"/async/operation/{op_id}/events", timeout=60)
    return [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]


def _race_once(a: Tenant, dataset_id: str, delay: float) -> tuple[str, str]:
    op_id = a.start(dataset_id, "cancel race", parameters={"analysisType": "quick"})["operationId"]
    a.wait(op_id, until=lambda s: s["status"] != "Initiated", deadline=300, every=0.05)
    time.sleep(delay)
    r = a.delete(f"/async/operation/{op_id}", json={"reason": "race"}, timeout=120)
    if r.status_code == 200:
        answer = r.json()["status"]
    else:
        answer = assert_problem(r, 409)["operationStatus"]
    final = a.wait(op_id, deadline=300)["status"]
    kinds = _event_types(a, op_id)
    assert answer == final, f"{op_id}: the answer said {answer}, the status is {final}"
    ended = [k for k in kinds if k in ("operation.completed", "operation.cancelled")]
    assert ended == [f"operation.{final.lower()}"], (op_id, final, kinds)
    return answer, final


def test_a_graceful_cancel_racing_completion_always_tells_the_truth(
    abused: tuple[Stack, Tenant, Tenant, dict[str, str], dict[str, float]],
    record_property: Any,
) -> None:
    """Tried: a graceful DELETE sent at a random moment of a short analysis (receipt, quick),
    from its start to past its usual end, PMOPS_CANCEL_RACES times. Every answer (200 Cancelled,
    or 409 naming the status the run ended with) equals the final status, and the events hold
    exactly one ending, the same one."""
    _stack, a, _b, ids, _rss = abused
    # how long one run takes here, so the cancels land all along it, the end included
    t = time.monotonic()
    op = a.start(ids["receipt"], "timing", parameters={"analysisType": "quick"})
    a.wait(op["operationId"], until=lambda s: s["status"] != "Initiated", deadline=300)
    started = time.monotonic()
    a.wait(op["operationId"], deadline=300)
    run_seconds = max(0.5, time.monotonic() - started)
    rng = random.Random(16)
    outcomes = [
        _race_once(a, ids["receipt"], rng.uniform(0.0, run_seconds * 1.2))
        for _ in range(CANCEL_RACES)
    ]
    counts = {k: sum(1 for o in outcomes if o[0] == k) for k in sorted({o[0] for o in outcomes})}
    record_property("tried", CANCEL_RACES)
    record_property(
        "observed",
        f"{counts} (run about {run_seconds:.1f} s; {time.monotonic() - t:.0f} s in all); "
        "0 answers disagreed with the final status",
    )


def _started(s: dict[str, Any]) -> datetime | None:
    when = (s.get("progress") or {}).get("startTime")
    return datetime.fromisoformat(when) if when else None


def test_a_flood_of_queued_operations_delays_another_tenant_by_one_slot_turn(
    abused: tuple[Stack, Tenant, Tenant, dict[str, str], dict[str, float]],
    record_property: Any,
) -> None:
    """Tried: tenant A queues PMOPS_FLOOD_OPERATIONS analyses at Critical (10 clients at once),
    then tenant B starts one at High. B's operation starts before more than two of A's
    start after it was queued (one slot turn: issue #16's goal), and runs to completion. A's
    flood is then cancelled; every one of A's ends Cancelled or Completed."""
    _stack, a, b, ids, _rss = abused
    body = {
        "operationType": "ProcessMiningAnalysis",
        "parameters": {"datasetId": ids["small"], "analysisType": "quick"},
        "priority": "Critical",
    }

    def queue(i: int) -> str:
        r = a.post("/async/operation", json={**body, "operationName": f"flood {i}"})
        assert r.status_code == 202, r.text
        return str(r.json()["operationId"])

    t0 = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        flood = list(pool.map(queue, range(FLOOD)))
    queued_in = time.monotonic() - t0
    mine = b.start(ids["b"], "B beside the flood", priority="High")["operationId"]
    created = datetime.fromisoformat(b.status(mine)["dateCreated"])
    t1 = time.monotonic()
    b_started = b.wait(mine, until=lambda s: s["status"] != "Initiated", deadline=600)
    waited = time.monotonic() - t1
    begun = _started(b_started)
    assert begun is not None, b_started

    def cancel(op_id: str) -> dict[str, Any]:
        a.delete(f"/async/operation/{op_id}", json={"forceTermination": True})
        return a.wait(op_id, deadline=600, every=0.5)

    with ThreadPoolExecutor(10) as pool:
        finals = list(pool.map(cancel, flood))
    ahead = [
        s["operationId"] for s in finals if (t := _started(s)) is not None and created < t < begun
    ]
    assert len(ahead) <= 2, f"{len(ahead)} of A's started after B queued and before B"
    assert {s["status"] for s in finals} <= {"Cancelled", "Completed"}
    assert b.wait(mine, deadline=300)["status"] == "Completed"
    assert not any(s["status"] not in TERMINAL for s in finals)
    record_property("tried", FLOOD)
    record_property(
        "observed",
        f"{FLOOD} queued in {queued_in:.0f} s; B started after {len(ahead)} of A's, "
        f"{waited:.1f} s after it was queued",
    )


def test_the_api_gives_its_memory_back_after_the_abuse(
    abused: tuple[Stack, Tenant, Tenant, dict[str, str], dict[str, float]],
    record_property: Any,
) -> None:
    """After every test above: the API's resident memory, read after a short rest, is within
    1.3x of what it was after start-up and warm-up (issue #16's goal)."""
    stack, _a, _b, _ids, rss = abused
    time.sleep(5)
    after = api_rss_mb(stack)
    ratio = after / rss["warm"]
    record_property("tried", 1)
    record_property("observed", f"API RSS {rss['warm']:.0f} -> {after:.0f} MiB ({ratio:.2f}x)")
    assert ratio <= 1.3, f"API RSS {rss['warm']:.0f} -> {after:.0f} MiB"
