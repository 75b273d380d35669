"""Real receivers on loopback for the delivery tests: an HTTP server and an SMTP server.

`HttpReceiver` records every request (headers, body, arrival time) and answers per path with a
rule (status, headers, delay) that a test can change at any moment: failing for a while, then
recovering; answering 410; hanging. `MailReceiver` is aiosmtpd's real SMTP server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


# (status, extra headers, seconds to wait before answering)
Answer = tuple[int, dict[str, str], float]
Rule = Callable[[Received, int], Answer]


def always(status: int, headers: dict[str, str] | None = None, delay: float = 0.0) -> Rule:
    return lambda _r, _n: (status, headers or {}, delay)


class HttpReceiver:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[Received] = []
        self.rules: dict[str, Rule] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                got = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.monotonic(),
                )
                with receiver.lock:
                    n = sum(1 for r in receiver.requests if r.path == self.path)
                    receiver.requests.append(got)
                    rule = receiver.rules.get(self.path, always(200))
                status, headers, delay = rule(got, n)
                if delay:
                    time.sleep(delay)
                got.answered = status
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.host = host
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def answer(self, path: str, rule: Rule) -> None:
        with self.lock:
            self.rules[path] = rule

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def events(self, path: str, ok_only: bool = True) -> dict[str, dict[str, Any]]:
        """Each event received at path once (deduplicated by its id), by id."""
        found: dict[str, dict[str, Any]] = {}
        for r in self.at(path):
            if not ok_only or 200 <= r.answered < 300:
                event = r.json()
                found.setdefault(event["id"], event)
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class MailReceiver:
    messages: list[tuple[list[str], Message]] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                receiver.messages.append(
                    (list(envelope.rcpt_tos), message_from_bytes(envelope.content))
                )
                return "250 Message accepted for delivery"

        with socket.socket() as probe:  # aiosmtpd checks it is up by connecting to its port
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def wait_until(check: Callable[[], Any], deadline: float = 60.0, every: float = 0.1) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    return check()
