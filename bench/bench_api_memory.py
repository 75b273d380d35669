"""API memory under abuse (issue #16): the API process's RSS after start-up and warm-up, after a
suite of hostile requests, and after a short rest.

Goal: RSS after the abuse within 1.3x of RSS after warm-up.

The abuse, all against one `pmops up` (no runner: queued operations stay queued, so only the
API's own memory is measured), as tenant A while nothing else runs:
  - 64 MiB JSON bodies to POST /async/operation (answered 413 before the body is read),
  - bodies just under the JSON limit (1 MiB of parameters; 422),
  - 2,000 operations queued (limits relaxed so they are accepted), then every page of the list,
  - 750 requests with bad tokens,
  - event streams opened and dropped (200, 20 at a time),
  - uploads: a 3.9 MB CSV with 100,000 distinct activities, 5 times, then bpic2012 (XES,
    262,200 events) 3 times,
  - status reads of every queued operation.

    .venv/bin/python bench/bench_api_memory.py [--operations 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stack import Stack, command_line, machine, write_json
from wide_logs import many_activities


def api_process(stack: Stack) -> psutil.Process:
    assert stack.proc is not None
    for p in psutil.Process(stack.proc.pid).children(recursive=True):
        try:
            if "uvicorn" in " ".join(p.cmdline()):
                return p
        except psutil.NoSuchProcess:
            continue
    raise LookupError("no uvicorn child")


def rss_mb(p: psutil.Process) -> float:
    return round(p.memory_info().rss / 1e6, 1)


async def _gather(n: int, parallel: int, one: Any) -> list[int]:
    sem = asyncio.Semaphore(parallel)

    async def run(i: int) -> int:
        async with sem:
            return int(await one(i))

    return await asyncio.gather(*(run(i) for i in range(n)))


async def warm_up(stack: Stack, client: httpx.AsyncClient, dataset_id: str) -> None:
    body = stack.start_body(dataset_id, "warm")
    for _ in range(20):
        r = await client.post(f"{stack.base}/async/operation", json=body)
        r.raise_for_status()
    for _ in range(200):
        await client.get(f"{stack.base}/async/operations", params={"pageSize": 50})
    await client.get(f"{stack.api}/docs")
    await client.get(f"{stack.api}/openapi.json")


async def big_bodies(stack: Stack, client: httpx.AsyncClient) -> dict[str, Any]:
    huge = (
        b'{"operationType":"ProcessMiningAnalysis","parameters":{"x":"' + b"a" * (64 << 20) + b'"}}'
    )
    statuses = []
    for _ in range(5):
        try:
            r = await client.post(
                f"{stack.base}/async/operation",
                content=huge,
                headers={"Content-Type": "application/json"},
            )
            statuses.append(r.status_code)
        except httpx.HTTPError as e:  # the API may close the connection after its 413
            statuses.append(type(e).__name__)
    near = json.dumps(
        {"operationType": "ProcessMiningAnalysis", "parameters": {"x": "b" * 1_000_000}}
    ).encode()

    async def one(_: int) -> int:
        r = await client.post(
            f"{stack.base}/async/operation",
            content=near,
            headers={"Content-Type": "application/json"},
        )
        return r.status_code

    near_statuses = await _gather(50, 5, one)
    return {"64MiB": statuses, "1MB": sorted(set(near_statuses))}


async def flood(stack: Stack, client: httpx.AsyncClient, dataset_id: str, n: int) -> dict[str, Any]:
    body = stack.start_body(dataset_id, "flood")

    async def one(i: int) -> int:
        r = await client.post(
            f"{stack.base}/async/operation", json={**body, "operationName": f"f{i}"}
        )
        return r.status_code

    statuses = await _gather(n, 10, one)
    pages = 0
    ids: list[str] = []
    while True:
        pages += 1
        r = await client.get(
            f"{stack.base}/async/operations", params={"page": pages, "pageSize": 100}
        )
        doc = r.json()
        ids += [o["operationId"] for o in doc.get("operations", [])]
        if not doc.get("hasNextPage") or pages >= 100:
            break

    async def status(i: int) -> int:
        r = await client.get(f"{stack.base}/async/operation/{ids[i]}")
        return r.status_code

    read = await _gather(len(ids), 10, status)
    return {"accepted": statuses.count(202), "pages": pages, "statusReads": len(read)}


async def bad_tokens(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as anon:

        async def one(_: int) -> int:
            r = await anon.get(
                f"{stack.base}/async/operations",
                headers={"Authorization": f"Bearer {uuid.uuid4().hex}"},
            )
            return r.status_code

        statuses = await _gather(750, 10, one)
    return {s: statuses.count(s) for s in sorted(set(statuses))}


async def streams(stack: Stack, client: httpx.AsyncClient, op_id: str) -> int:
    url = f"{stack.base}/async/operation/{op_id}/events"

    async def one(_: int) -> int:
        try:
            async with client.stream("GET", url, timeout=10) as r:
                async for _chunk in r.aiter_bytes():
                    break
                return r.status_code
        except httpx.HTTPError:
            return 0

    got = await _gather(200, 20, one)
    return got.count(200)


async def uploads(stack: Stack, client: httpx.AsyncClient, files: list[Path]) -> list[int]:
    out = []
    for path in files:
        with path.open("rb") as fh:
            r = await client.post(
                f"{stack.base}/datasets", files={"file": (path.name, fh)}, timeout=300
            )
        out.append(r.status_code)
    return out


async def abuse(stack: Stack, n_ops: int, files: list[Path], log: Path) -> dict[str, Any]:
    p = api_process(stack)
    client = httpx.AsyncClient(headers=stack.headers, timeout=120)
    dataset_id = stack.upload(log)
    await warm_up(stack, client, dataset_id)
    gc.collect()
    time.sleep(2)
    doc: dict[str, Any] = {"rssAfterWarmUpMB": rss_mb(p), "steps": {}}
    steps = doc["steps"]
    steps["bigBodies"] = await big_bodies(stack, client)
    steps["bigBodies"]["rssMB"] = rss_mb(p)
    steps["flood"] = await flood(stack, client, dataset_id, n_ops)
    steps["flood"]["rssMB"] = rss_mb(p)
    steps["badTokens"] = await bad_tokens(stack)
    steps["badTokens"]["rssMB"] = rss_mb(p)
    r = await client.get(f"{stack.base}/async/operations", params={"pageSize": 1})
    first = r.json()["operations"][0]["operationId"]
    steps["streams"] = {"opened": await streams(stack, client, first), "rssMB": rss_mb(p)}
    steps["uploads"] = {"statuses": await uploads(stack, client, files), "rssMB": rss_mb(p)}
    doc["peakDuringMB"] = max(s["rssMB"] for s in steps.values())
    doc["rssRightAfterMB"] = rss_mb(p)
    await client.aclose()
    time.sleep(15)
    doc["rssAfterRestMB"] = rss_mb(p)
    doc["ratio"] = round(doc["rssAfterRestMB"] / doc["rssAfterWarmUpMB"], 3)
    doc["goal"] = "rssAfterRest <= 1.3 x rssAfterWarmUp"
    doc["met"] = doc["ratio"] <= 1.3
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--operations", type=int, default=2000)
    ap.add_argument("--log", default="helpdesk.xes.gz")
    args = ap.parse_args()
    from _stack import DATASETS

    with Stack(runner=False) as stack:
        wide = stack.data_dir / "wide-100k-activities.csv"
        many_activities(wide, 100_000)
        big = DATASETS / "bpic2012.xes.gz"
        files = [wide] * 5 + [big] * 3
        doc = asyncio.run(abuse(stack, args.operations, files, DATASETS / args.log))
    doc["command"] = command_line()
    doc["machine"] = machine()
    print(json.dumps(doc, indent=2))
    write_json("api_memory", doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
