"""Several processes on one PostgreSQL store (issue #15): each test gets a database of its own
and two engines on it, as two API or deliverer processes would have."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psutil
import psycopg
import pytest
from sqlalchemy.engine import Engine

from pmops.store.engine import make_engine
from pmops.store.locks import leader_pid
from tests.conftest import fresh_database
from tests.s3server import S3
from tests.service_stack import Stack, Tenant


@pytest.fixture
def cluster_url() -> Iterator[str]:
    with fresh_database("pmops_cluster") as url:
        yield url


@pytest.fixture
def engines(cluster_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines (two processes' pools) on one fresh database."""
    first, second = make_engine(cluster_url), make_engine(cluster_url)
    yield first, second
    first.dispose()
    second.dispose()


# -- two real nodes (tests/cluster/test_nodes.py) ---------------------------------------------
# One Prefect server on PostgreSQL (`pmops up --only prefect`) and two nodes, each `pmops up
# --only api,runner,deliverer` with a data dir of its own, on one PostgreSQL store and one S3
# bucket (moto's server on loopback), as README "Scaling out" lays them out on machines.

NODE_PARTS = "api,runner,deliverer"
WORKER_LIMIT = 2  # across both nodes


@dataclass
class Cluster:
    prefect: Stack
    nodes: dict[str, Stack]  # "a", "b"
    store_url: str
    s3: S3
    apis: dict[str, Tenant] = field(default_factory=dict)  # one project, through each node's API

    def api_child(self, name: str) -> psutil.Process:
        return self.nodes[name].child("uvicorn")

    def leader(self) -> str | None:
        """The node whose API process holds the store's leader lock (pmops/service/leader.py,
        `leader_pid`): that backend's client port is a local port of the API process."""
        engine = make_engine(self.store_url)
        try:
            backend = leader_pid(engine)
        finally:
            engine.dispose()
        if backend is None:
            return None
        with psycopg.connect(self.store_url.replace("+psycopg", ""), autocommit=True) as conn:
            row = conn.execute(
                "SELECT client_port FROM pg_stat_activity WHERE pid = %s", (backend,)
            ).fetchone()
        if row is None:
            return None
        for name in self.nodes:
            with contextlib.suppress(LookupError, psutil.NoSuchProcess):
                ports = {c.laddr.port for c in self.api_child(name).net_connections("tcp")}
                if row[0] in ports:
                    return name
        return None


def together(call: Callable[[Stack], object], stacks: Iterable[Stack]) -> None:
    """`call` on each stack in threads of its own; the first error is raised."""
    with ThreadPoolExecutor() as pool:
        for done in [pool.submit(call, stack) for stack in stacks]:
            done.result()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3: S3) -> Iterator[Cluster]:
    auth = f"pmops:{uuid.uuid4().hex}"
    with (
        fresh_database("pmops_cluster_store") as store_url,
        fresh_database("pmops_cluster_prefect") as prefect_url,
        contextlib.ExitStack() as running,
    ):
        prefect = Stack(
            tmp_path_factory.mktemp("cluster-prefect"),
            only="prefect",
            prefect_database_url=prefect_url.replace("+psycopg", "+asyncpg"),
            prefect_auth_string=auth,
        )
        running.callback(prefect.stop)
        prefect.start(deadline=300)  # migrates Prefect's PostgreSQL database first
        shared = {
            "prefect_api_url": f"http://127.0.0.1:{prefect.prefect_port}/api",
            "prefect_auth_string": auth,
            "database_url": store_url,
            "storage_url": s3.url("cluster"),
            "worker_limit": WORKER_LIMIT,
            "webhook_allow_networks": "127.0.0.0/8",  # the receiver is on loopback
        }
        nodes = {
            name: Stack(tmp_path_factory.mktemp(f"cluster-node-{name}"), only=NODE_PARTS, **shared)
            for name in ("a", "b")
        }
        # both at once, as machines start (each upgrades the store under its advisory lock and
        # deploys the same flows); stopped together too
        running.callback(lambda: together(Stack.stop, nodes.values()))
        together(lambda node: node.start(deadline=300), nodes.values())
        c = Cluster(prefect, nodes, store_url, s3)
        first = nodes["a"].create_token()
        c.apis = {
            name: Tenant(node, first.tenant, first.project, first.token)
            for name, node in nodes.items()
        }
        first.close()
        yield c
        for api in c.apis.values():
            api.close()
