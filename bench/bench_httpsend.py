"""Webhook POST throughput of pmops.delivery.httpsend.HttpSender next to httpx.AsyncClient, on
loopback.

Starts --receivers receiver processes (asyncio Protocol servers on 127.0.0.1 answering every
request with "200 OK", uvloop when --receiver-uvloop), then, per client and round, posts --n
signed JSON bodies of --size bytes (HMAC-SHA256 per request, as the deliverer signs) from
--concurrency tasks of one asyncio process, spread round-robin over the receivers, after a
warm-up of --warmup posts. HttpSender goes through a NetGuard (allow list 127.0.0.0/8), so each
post also pays the address check. Rounds alternate between the clients so drift hits both.
Reports figures, never asserts; with 2 CPUs the receivers compete with the client for CPU.

  .venv/bin/python bench/bench_httpsend.py [--n 20000] [--concurrency 100] [--receivers 10]
      [--size 3072] [--rounds 2] [--clients httpsend,httpx] [--host 127.0.0.1] [--uvloop]
      [--no-wait]
Raw figures: bench/results/httpsend.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stack import (
    ROOT,
    ForeignLoad,
    command_line,
    foreign_metric,
    machine,
    metric,
    wait_quiet,
    write_json,
)

sys.path.insert(0, str(ROOT))

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class _Receiver(asyncio.Protocol):
    """Answers each complete request (head + Content-Length body) with RESPONSE."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        answers = 0
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end]).lower()
            at = head.find(b"content-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15 : stop if stop >= 0 else None])
            if len(buf) < end + 4 + length:
                break
            del buf[: end + 4 + length]
            answers += 1
        if answers:
            self.transport.write(RESPONSE * answers)


def _receiver_main(conn: Connection, use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop

        uvloop.install()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Receiver, "127.0.0.1", 0, backlog=1024)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()  # until terminated

    asyncio.run(serve())


def start_receivers(count: int, use_uvloop: bool) -> tuple[list[Any], list[int]]:
    ctx = mp.get_context("spawn")
    procs, ports = [], []
    for _ in range(count):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_receiver_main, args=(child, use_uvloop), daemon=True)
        proc.start()
        procs.append(proc)
        if not parent.poll(30):
            raise SystemExit("a receiver did not start")
        ports.append(parent.recv())
    return procs, ports


SECRET = b"bench-secret-key"


def signed(body: bytes, n: int) -> dict[str, str]:
    msg_id = f"msg_{n}"
    stamp = str(int(time.time()))
    mac = hmac.new(SECRET, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + mac,
    }


Post = Callable[[str, dict[str, str], bytes], Awaitable[int]]


async def drive(post: Post, urls: list[str], n: int, concurrency: int, body: bytes) -> dict:
    counter = itertools.count()
    statuses: dict[str, int] = {}

    async def worker() -> None:
        while (i := next(counter)) < n:
            try:
                status = str(await post(urls[i % len(urls)], signed(body, i), body))
            except Exception as e:
                status = type(e).__name__
            statuses[status] = statuses.get(status, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"n": n, "seconds": round(wall, 3), "rps": round(n / wall), "statuses": statuses}


async def run_httpsend(urls: list[str], args: argparse.Namespace, body: bytes) -> dict:
    from pmops.delivery.httpsend import HttpSender
    from pmops.delivery.netguard import NetGuard, parse_networks

    async with HttpSender(NetGuard(allow=parse_networks("127.0.0.0/8"))) as sender:

        async def post(url: str, headers: dict[str, str], data: bytes) -> int:
            return (await sender.post(url, headers, data)).status

        await drive(post, urls, args.warmup, args.concurrency, body)
        return await drive(post, urls, args.n, args.concurrency, body)


async def run_httpx(urls: list[str], args: argparse.Namespace, body: bytes) -> dict:
    import httpx

    conns = args.concurrency
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def post(url: str, headers: dict[str, str], data: bytes) -> int:
            return (await client.post(url, headers=headers, content=data)).status_code

        await drive(post, urls, args.warmup, args.concurrency, body)
        return await drive(post, urls, args.n, args.concurrency, body)


CLIENTS = {"httpsend": run_httpsend, "httpx": run_httpx}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--receivers", type=int, default=10)
    p.add_argument("--size", type=int, default=3072)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--clients", default="httpsend,httpx")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="host in the URLs; a name (localhost) adds HttpSender's per-send getaddrinfo",
    )
    p.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    p.add_argument("--receiver-uvloop", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = p.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if unknown := set(clients) - set(CLIENTS):
        raise SystemExit(f"unknown client(s): {', '.join(sorted(unknown))}")

    waited = 0.0 if args.no_wait else wait_quiet()
    procs, ports = start_receivers(args.receivers, args.receiver_uvloop)
    try:
        urls = [f"http://{args.host}:{port}/webhooks/bench" for port in ports]
        payload = {"type": "operation.completed", "data": {"pad": ""}}
        pad = args.size - len(json.dumps(payload).encode())
        payload["data"] = {"pad": "x" * max(pad, 0)}
        body = json.dumps(payload).encode()
        if args.uvloop:
            import uvloop

            uvloop.install()
        results: dict[str, list[dict]] = {c: [] for c in clients}
        with ForeignLoad() as foreign:
            for _ in range(args.rounds):
                for name in clients:
                    results[name].append(asyncio.run(CLIENTS[name](urls, args, body)))
                    last = results[name][-1]
                    print(f"  {name}: {last['rps']:,} req/s {last['statuses']}", file=sys.stderr)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(5)

    loop_name = "uvloop" if args.uvloop else "asyncio"
    print(
        f"\n{args.n:,} POSTs of {len(body):,} B, {args.concurrency} concurrent tasks, "
        f"{args.receivers} receivers at {args.host}, client on {loop_name}, "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| client | req/s per round | median req/s | statuses |")
    print("|---|---|---|---|")
    for name in clients:
        rounds = results[name]
        statuses: dict[str, int] = {}
        for r in rounds:
            for k, v in r["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        per_round = ", ".join(f"{r['rps']:,}" for r in rounds)
        median = round(statistics.median(r["rps"] for r in rounds))
        print(f"| {name} | {per_round} | {median:,} | {statuses} |")
    report = foreign.report()
    print(
        f"\nother processes used {report['foreign_share_of_machine']:.0%} of the machine "
        f"meanwhile (waited {waited:.0f} s for quiet)\ncommand: {command_line()}"
    )
    path = write_json(
        "httpsend",
        {
            "machine": machine(),
            "params": vars(args),
            "body_bytes": len(body),
            "results": results,
            "foreign_load": report,
            "metrics": [
                *(
                    metric(
                        f"{name}: POSTs per second (median of rounds)",
                        statistics.median(r["rps"] for r in results[name]),
                        "req/s",
                    )
                    for name in clients
                    if results[name]
                ),
                foreign_metric(report),
            ],
        },
    )
    print(f"raw: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
