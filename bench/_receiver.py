"""A fast webhook receiver for bench_webhooks.py: asyncio, HTTP/1.1 keep-alive, 200 at once.

Each POST is recorded as (path, arrival wall time, the event's `timestamp`); with --ids also its
X-Pmops-Delivery and X-Pmops-Attempt headers (bench_cluster_delivery.py counts duplicates by them).
A path starting with /slow answers after --slow-seconds instead. GET /dump answers the records as
JSON and clears them.
Usage: python bench/_receiver.py PORT [--slow-seconds 5] [--ids]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from datetime import datetime

STAMP = re.compile(rb'"timestamp":"([^"]+)"')
records: list[tuple[str, float, float] | tuple[str, float, float, str, str]] = []
IDS = False


def event_time(body: bytes) -> float:
    found = STAMP.search(body)
    if not found:
        return 0.0
    return datetime.fromisoformat(found.group(1).decode().replace("Z", "+00:00")).timestamp()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived = time.time()
            line, _, rest = head.partition(b"\r\n")
            method, path, _ = line.split(b" ", 2)
            length = 0
            delivery = attempt = ""
            for header in rest.split(b"\r\n"):
                if header[:15].lower() == b"content-length:":
                    length = int(header[15:])
                elif IDS and header[:8].lower() == b"x-pmops-":
                    name, _, value = header.partition(b":")
                    if name.lower() == b"x-pmops-delivery":
                        delivery = value.strip().decode()
                    elif name.lower() == b"x-pmops-attempt":
                        attempt = value.strip().decode()
            body = await reader.readexactly(length) if length else b""
            if method == b"GET" and path == b"/dump":
                out = json.dumps(records).encode()
                records.clear()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(out) + out)
                continue
            if IDS:
                records.append((path.decode(), arrived, event_time(body), delivery, attempt))
            else:
                records.append((path.decode(), arrived, event_time(body)))
            if path.startswith(b"/slow"):
                await asyncio.sleep(slow)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--ids", action="store_true")
    args = parser.parse_args()
    global IDS
    IDS = args.ids
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.slow_seconds), "127.0.0.1", args.port, backlog=1024
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
