"""A real S3-compatible server on loopback for the s3:// storage tests: moto's standalone server
(werkzeug, in a thread of the test process) on a free port, one bucket, and the standard AWS
environment pointing at it while it runs."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from moto.server import ThreadedMotoServer

from pmops.service.storage import Storage, open_storage


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def storage(self, prefix: str = "") -> Storage:
        return open_storage(self.url(prefix))

    def keys(self, prefix: str = "") -> list[str]:
        """Every object under `prefix` of the bucket, as keys relative to it."""
        return open_storage(self.url()).files(prefix) if prefix else self._all()

    def _all(self) -> list[str]:
        fs = open_storage(self.url()).fs
        base = f"{self.bucket}/"
        return sorted(str(p)[len(base) :] for p in fs.find(self.bucket))


@contextmanager
def s3_server() -> Iterator[S3]:
    """The server, a fresh bucket, and AWS_* set for pmops (and restored after)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "pmops-test",
        "AWS_SECRET_ACCESS_KEY": "pmops-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        bucket = f"pmops-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield S3(endpoint, bucket)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
