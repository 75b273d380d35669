"""deployments/shared_tls.py: the Prefect clients of a flow run share one CA store when Prefect's
API is plain http, and nothing else is changed. Each case runs in a fresh interpreter: the module
patches `ssl` for the process that imports it (the runner's forkserver)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, ssl, sys

made = []
real = ssl.create_default_context
def counting(*args, **kwargs):
    made.append(1)
    return real(*args, **kwargs)
ssl.create_default_context = counting  # every store built from here on is counted

import deployments.shared_tls as shared_tls
from prefect.client.orchestration import get_client

before = len(made)  # the forkserver's own, built at import
clients = [get_client(sync_client=True), get_client(), get_client(sync_client=True)]
for_clients = len(made) - before
# the same call from code outside Prefect: a context of its own, every time
import certifi
mine = [ssl.create_default_context(cafile=certifi.where()) for _ in range(2)]
print(json.dumps({
    "patched": ssl.create_default_context is shared_tls.create_default_context,
    "built_for_clients": for_clients,
    "mine_distinct": mine[0] is not mine[1],
    "mine_verifies": all(c.verify_mode == ssl.CERT_REQUIRED for c in mine),
}))
"""


def probe(api_url: str) -> dict[str, object]:
    env = {**os.environ, "PREFECT_API_URL": api_url}
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_prefect_clients_on_http_share_one_ca_store() -> None:
    got = probe("http://127.0.0.1:4200/api")
    assert got["patched"] is True
    assert got["built_for_clients"] == 0  # three clients, no store built: the preloaded one
    assert got["mine_distinct"] is True and got["mine_verifies"] is True


def test_https_leaves_ssl_as_it_was() -> None:
    got = probe("https://prefect.example.com/api")
    assert got["patched"] is False
    assert got["built_for_clients"] == 3  # one store per client, as Prefect ships it
