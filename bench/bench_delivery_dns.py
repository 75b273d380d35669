"""DNS and delivery sends (issue #16): a webhook host whose DNS hangs must not stall another's.

For `--seconds` (6), 64 concurrent senders POST to a healthy host whose lookups take `--dns-ms`
(20 ms) and, in the second scenario, 64 more POST to a host whose lookups hang 5 s. Both names
answer 127.0.0.1 (the receiver, bench/_receiver.py, answering 200 at once); the lookups are
made slow by replacing socket.getaddrinfo in the sending process, the same function both
versions call (the rest is real: HttpSender, NetGuard, sockets). The event loop's default
executor has 64 threads, as in the deliverer. Counted: the healthy host's answered POSTs.

  now     this checkout: the host resolved only for new connections, in the NetGuard's own
          threads, one lookup per host at a time, the checked address kept 30 s
  before  (with --baseline REV) pmops/delivery at git REV: resolved on every send with
          loop.getaddrinfo (the default executor)

Usage: .venv/bin/python bench/bench_delivery_dns.py [--baseline 51902ff]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HANG_SECONDS = 5.0


def worker(port: int, hang: bool, seconds: float, dns_ms: float) -> dict[str, Any]:
    import socket
    from concurrent.futures import ThreadPoolExecutor

    real = socket.getaddrinfo

    def slow_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.test":
            time.sleep(HANG_SECONDS)
        elif host == "fast.test":
            time.sleep(dns_ms / 1000)
        else:
            return real(host, port, *args, **kwargs)
        return real("127.0.0.1", port, *args, **kwargs)

    socket.getaddrinfo = slow_dns
    from pmops.delivery.httpsend import HttpSender
    from pmops.delivery.netguard import NetGuard, parse_networks

    counts = {"fast_ok": 0, "fast_failed": 0, "slow_ok": 0, "slow_failed": 0}

    async def sends(host: str, sender: HttpSender, end: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < end:
            try:
                r = await sender.post(f"http://{host}:{port}/{host}", {}, b'{"a":1}')
                counts[f"{host[:4]}_ok" if r.status == 200 else f"{host[:4]}_failed"] += 1
            except Exception:
                counts[f"{host[:4]}_failed"] += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(64))
        guard = NetGuard(parse_networks("127.0.0.0/8"))
        sender = HttpSender(guard, timeout=10.0, max_idle_per_origin=256)
        end = loop.time() + seconds
        hosts = ["fast.test"] * 64 + (["slow.test"] * 64 if hang else [])
        tasks = [asyncio.create_task(sends(h, sender, end)) for h in hosts]
        await asyncio.wait(tasks, timeout=seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.close()

    asyncio.run(main())
    return counts


def run_worker(port: int, hang: bool, args: argparse.Namespace, code: Path | None) -> Any:
    env = dict(os.environ)
    if code is not None:
        env["PMOPS_BENCH_CODE"] = str(code)
    argv = [PY, __file__, "--worker", str(port), "--seconds", str(args.seconds)]
    argv += ["--dns-ms", str(args.dns_ms)] + (["--hang"] if hang else [])
    out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--dns-ms", type=float, default=20.0)
    parser.add_argument("--baseline", default=None)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--hang", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    code_dir = os.environ.get("PMOPS_BENCH_CODE")
    sys.path.insert(0, code_dir or str(ROOT))
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.hang, args.seconds, args.dns_ms)))
        return
    from bench._stack import command_line, free_port, machine, metric, write_json

    port = free_port()
    receiver = subprocess.Popen(
        [PY, "bench/_receiver.py", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL
    )
    rows: dict[str, Any] = {}
    try:
        time.sleep(1.5)
        with tempfile.TemporaryDirectory(prefix="pmops-base-") as base:
            versions: list[tuple[str, Path | None]] = [("now", None)]
            if args.baseline:
                archive = subprocess.run(
                    ["git", "archive", args.baseline, "pmops"],
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                ).stdout
                subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
                versions.append((f"before ({args.baseline})", Path(base)))
            for name, code in versions:
                for hang in (False, True):
                    label = f"{name}, {'beside a host whose DNS hangs' if hang else 'alone'}"
                    rows[label] = run_worker(port, hang, args, code)
    finally:
        receiver.terminate()
        receiver.wait(10)
    metrics = [
        metric(f"healthy host's answered POSTs in {args.seconds:g} s, {k}", v["fast_ok"], "")
        for k, v in rows.items()
    ]
    doc = {"command": command_line(), "machine": machine(), "rows": rows, "metrics": metrics}
    path = write_json("delivery_dns", doc)
    print(f"`{doc['command']}`\n")
    print(f"| sender | healthy host: answered in {args.seconds:g} s | hanging host: answered |")
    print("|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v['fast_ok']:,} | {v['slow_ok']:,} |")
    print(f"\n(raw: {path})")


if __name__ == "__main__":
    main()
