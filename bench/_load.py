"""A closed-loop HTTP load generator (asyncio + httpx) and a py-spy helper for the benchmarks."""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

Request = tuple[str, str, dict[str, Any] | None]  # method, url, json body


async def _run(
    make: Callable[[int], Request],
    n: int,
    clients: int,
    headers: dict[str, str],
    budget: float,
    think: float = 0.0,
) -> dict[str, Any]:
    lat: list[float] = []
    codes: collections.Counter[str] = collections.Counter()
    counter = itertools.count()
    deadline = time.monotonic() + budget
    # one client (one keep-alive connection) per simulated user: a shared 50-connection httpx
    # pool costs several ms of client CPU per request, stolen from the server on a 2-core box
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    sessions = [
        httpx.AsyncClient(headers=headers, limits=limits, timeout=120) for _ in range(clients)
    ]

    rng = random.Random(17)

    async def worker(client: httpx.AsyncClient) -> None:
        if think > 0:
            # independent clients: each starts at a random moment and waits an exponentially
            # distributed time (mean `think`) between requests, so arrivals are not in lockstep
            await asyncio.sleep(rng.uniform(0, think))
        while time.monotonic() < deadline:
            i = next(counter)
            if i >= n:
                return
            method, url, body = make(i)
            t = time.perf_counter()
            try:
                r = await client.request(method, url, json=body)
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            lat.append(time.perf_counter() - t)
            codes[code] += 1
            if think > 0:
                await asyncio.sleep(rng.expovariate(1 / think))

    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in sessions))
    finally:
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        for c in sessions:
            await c.aclose()
    return {
        "latencies": lat,
        "codes": dict(codes),
        "wall_seconds": wall,
        "throughput_rps": len(lat) / wall if wall else 0.0,
        "client_cpu_seconds": cpu,
        "completed": len(lat),
        "requested": n,
    }


def run_load(
    make: Callable[[int], Request],
    n: int,
    clients: int,
    headers: dict[str, str],
    budget: float = 300.0,
    think: float = 0.0,
) -> dict[str, Any]:
    """n requests from `clients` concurrent connections, each sending its next request a random
    time (exponential, mean `think` seconds; 0: at once) after the previous answered, the first
    after a random offset; stops early after `budget` seconds."""
    return asyncio.run(_run(make, n, clients, headers, budget, think))


# -- profiling -----------------------------------------------------------------------------------
def pyspy() -> str | None:
    here = Path(__import__("sys").executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def find_child(root_pid: int, needle: str) -> int | None:
    import psutil

    for proc in psutil.Process(root_pid).children(recursive=True):
        try:
            if any(needle in part for part in proc.cmdline()):
                return proc.pid
        except psutil.Error:
            continue
    return None


class Profiler:
    """py-spy record (raw collapsed stacks) of one process for the duration of a `with`."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        exe = pyspy()
        if exe is None:
            return self
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(self.pid),
                "--format",
                "raw",
                "--rate",
                str(self.rate),
                "--threads",
                "--output",
                str(self.out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # let it attach
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes the file and exits
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def hotspots(path: Path, top: int = 12, ours: tuple[str, ...] = ("api/", "pmops/")) -> dict:
    """Inclusive share of samples per function from py-spy's raw (collapsed) output.

    Only samples of threads that were doing something count (idle event-loop/selector waits and
    pool threads blocked on their work queue are dropped)."""
    if not path.exists():
        return {}
    idle_markers = (
        "select (selectors.py",
        "_worker (concurrent/futures/thread.py",
        "wait (threading.py",
    )
    total = 0
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1] if frames else ""
        if any(m in leaf for m in idle_markers):
            continue
        c = int(count)
        total += c
        seen = set()
        for f in frames:
            key = _frame_key(f)
            if key not in seen:
                incl[key] += c
                seen.add(key)
        self_[_frame_key(leaf)] += c

    def pct(c: int) -> float:
        return round(100 * c / total, 1) if total else 0.0

    ours_incl = [(k, pct(v)) for k, v in incl.most_common() if k.startswith(ours)][:top]
    return {
        "busy_samples": total,
        "inclusive_ours": ours_incl,
        "self_top": [(k, pct(v)) for k, v in self_.most_common(top)],
    }


def _frame_key(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "path/file.py:function" trimmed to the package
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    file = loc.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{name}"
