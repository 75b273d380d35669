"""Two real nodes (issue #15): one Prefect server on PostgreSQL and two `pmops up --only
api,runner,deliverer` with data dirs of their own, on one PostgreSQL store and one S3 bucket
(tests/cluster/conftest.py `cluster`), as README "Scaling out" lays them out on machines.

Work submitted to either API completes and downloads from either; the two deliverers never
deliver an event twice; the worker limit holds across both nodes; the leader API's death moves
dispatching to the other node; a runner node lost mid-run has its operation resumed on the other
node from the checkpoints in the bucket. The tests run in order on one cluster (the last two kill
parts of it)."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.cluster.conftest import WORKER_LIMIT, Cluster
from tests.receivers import HttpReceiver
from tests.service_stack import Tenant, eventually, frozen, pid_of, process_gone

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster-nodes")]  # its own servers

QUICK = {"analysisType": "quick"}
EVENTS = [
    "operation.started",
    "operation.phase.completed",
    "operation.completed",
    "operation.failed",
]
HOOK = "/cluster-hook"


class Watch:
    """Samples the cluster while a test runs: which node's process runs each operation (its
    flow-run process, execution.workerNode 'host:pid', is a child of that node's runner) and how
    many operations run at once across both nodes (the store, read through one API)."""

    def __init__(self, cluster: Cluster, api: Tenant) -> None:
        self.cluster, self.api = cluster, api
        self.ran_on: dict[int, str] = {}  # flow-run process id -> node
        self.most_running = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, node in self.cluster.nodes.items():
                for p in node.descendants():
                    self.ran_on.setdefault(p.pid, name)
            r = self.api.get("/async/operations", params={"status": "Running", "pageSize": 100})
            if r.status_code == 200:
                self.most_running = max(self.most_running, len(r.json()["operations"]))
                self.samples += 1
            self._stop.wait(0.2)

    def node_of(self, status: dict[str, Any]) -> str:
        node = self.ran_on.get(pid_of(status))
        assert node is not None, f"{status['operationId']}'s process was on neither node"
        return node

    @contextmanager
    def running(self) -> Iterator[Watch]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(30)


def completed(api: Tenant, op_ids: list[str], deadline: float = 300) -> list[dict[str, Any]]:
    finals = [api.wait(op_id, deadline=deadline) for op_id in op_ids]
    for final in finals:
        assert final["status"] == "Completed", final
    return finals


def start_quick(api: Tenant, dataset_id: str, name: str, n: int) -> list[str]:
    return [api.start(dataset_id, f"{name} {i}", parameters=QUICK)["operationId"] for i in range(n)]


@pytest.fixture(scope="module")
def receipt(cluster: Cluster, datasets: Path) -> str:
    return str(cluster.apis["a"].upload(datasets / "receipt.xes.gz")["datasetId"])


@pytest.fixture(scope="module")
def receiver(cluster: Cluster) -> Iterator[HttpReceiver]:
    """A real HTTP receiver with a webhook of the project on it, registered before any work."""
    http = HttpReceiver()
    r = cluster.apis["b"].post(
        "/async/webhooks",
        json={"webhookUrl": http.url(HOOK), "webhookName": "cluster hook", "events": EVENTS},
    )
    assert r.status_code == 201, r.text
    yield http
    http.close()


def test_work_from_either_api_completes_and_downloads_from_both(
    cluster: Cluster, receipt: str, receiver: HttpReceiver
) -> None:
    apis = cluster.apis
    with Watch(cluster, apis["a"]).running() as watch:
        ops = {name: start_quick(api, receipt, f"through {name}", 1) for name, api in apis.items()}
        finals = {
            name: completed(apis["a" if name == "b" else "b"], op_ids)  # read on the other node
            for name, op_ids in ops.items()
        }
    ran = {f["operationId"]: watch.node_of(f) for fs in finals.values() for f in fs}
    print(f"cluster: submitted through {ops}; ran on {ran}")  # which runner took which
    # every operation's results, zipped, from both APIs (the other node's too): the same files
    for op_id in ran:
        names = []
        for api in apis.values():
            r = api.results(op_id, format="download")
            assert r.status_code == 200, r.text
            names.append(sorted(zipfile.ZipFile(io.BytesIO(r.content)).namelist()))
        assert names[0] == names[1] and names[0], names
    # the webhook's events: each operation's completion arrives, no event twice (two deliverers)
    assert eventually(
        lambda: all(
            any(
                e["type"] == "operation.completed" and e.get("operationId") == op_id
                for e in receiver.events(HOOK).values()
            )
            for op_id in ran
        ),
        120,
    ), [r.json() for r in receiver.at(HOOK)]
    assert_each_event_once(receiver)


def assert_each_event_once(receiver: HttpReceiver) -> None:
    ids = [r.json()["id"] for r in receiver.at(HOOK)]
    twice = {i for i in ids if ids.count(i) > 1}
    assert ids and not twice, twice


def test_worker_limit_holds_across_both_nodes(
    cluster: Cluster, receipt: str, receiver: HttpReceiver
) -> None:
    apis = cluster.apis
    with Watch(cluster, apis["b"]).running() as watch:
        op_ids = [
            op
            for i in range(2)
            for name, api in apis.items()
            for op in start_quick(api, receipt, f"limit {name} {i}", 1)
        ]
        finals = completed(apis["a"], op_ids)
    nodes = {watch.node_of(f) for f in finals}
    print(
        f"cluster: limit {WORKER_LIMIT}: at most {watch.most_running} running "
        f"({watch.samples} samples), on nodes {sorted(nodes)}"
    )
    assert watch.samples > 0
    assert 1 <= watch.most_running <= WORKER_LIMIT, watch.most_running
    assert_each_event_once(receiver)


def test_leader_api_killed_moves_dispatching_to_the_other_node(
    cluster: Cluster, receipt: str, receiver: HttpReceiver
) -> None:
    assert eventually(lambda: cluster.leader() is not None, 30), "no API process leads"
    leader = cluster.leader()
    assert leader is not None
    other = "b" if leader == "a" else "a"
    api = cluster.apis[other]
    before = start_quick(api, receipt, "queued before the leader died", 3)
    victim = cluster.api_child(leader)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()
    after = start_quick(api, receipt, "queued after the leader died", 1)
    # the advisory lock's session ended with the process; the other node's API takes it
    assert eventually(lambda: cluster.leader() == other, 10), cluster.leader()
    print(f"cluster: {other} leads {time.monotonic() - killed_at:.1f} s after {leader}'s API died")
    completed(api, before + after)
    cluster.nodes[leader].restarted("uvicorn", victim.pid)  # its supervisor restarts it
    assert eventually(cluster.nodes[leader].healthy, 120)
    assert_each_event_once(receiver)


def test_runner_node_lost_mid_run_resumes_on_the_other_node(
    cluster: Cluster, datasets: Path, receiver: HttpReceiver
) -> None:
    apis = cluster.apis
    bpic = apis["a"].upload(datasets / "bpic2012.xes.gz")["datasetId"]
    op = apis["a"].start(
        bpic,
        "lost with its node",
        parameters={"analysisType": "comprehensive"},
        retryPolicy={"maxRetries": 1, "retryDelay": 1, "backoffMultiplier": 1},
    )
    op_id = op["operationId"]

    bucket = cluster.s3.storage("cluster")

    def some_phase_done(s: dict[str, Any]) -> bool:
        """Running, with its first phase's checkpoint uploaded to the bucket (the loaded log:
        large, and slow to upload on a loaded machine)."""
        assert s["status"] in ("Initiated", "Running"), s
        return (
            s["status"] == "Running"
            and any(p["status"] == "Completed" for p in s["phases"])
            and bucket.exists(f"operations/{op_id}/state/1.pkl")
        )

    with Watch(cluster, apis["b"]).running() as watch:
        live = apis["a"].wait(op_id, some_phase_done, deadline=300, every=0.5)
        lost_node = watch.node_of(live)
        node = cluster.nodes[lost_node]
        run_pid = pid_of(live)
        # the node's runner and its flow-run process die; its supervisor is frozen meanwhile,
        # so that node runs nothing until the retry has completed elsewhere
        assert node.proc is not None
        with frozen(psutil.Process(node.proc.pid)):
            runner = node.child("deployments.serve")
            runner.send_signal(signal.SIGKILL)
            os.kill(run_pid, signal.SIGKILL)
            # (a zombie until the frozen supervisor reaps it: gone all the same)
            assert eventually(lambda: process_gone(runner.pid) and process_gone(run_pid), 30)
            lost = apis["b"].wait(op_id, deadline=180)
            assert lost["status"] == "Failed", lost
            assert lost["error"]["code"] == "worker_lost", lost["error"]
            done = [p["phaseName"] for p in lost["phases"] if p["status"] == "Completed"]
            assert done, lost["phases"]
            assert eventually(lambda: bool(apis["b"].status(op_id).get("retries")), 120)
            (retry_id,) = apis["b"].status(op_id)["retries"]
            (final,) = completed(apis["b"], [retry_id], deadline=600)
        survivor = "b" if lost_node == "a" else "a"
        assert watch.node_of(final) == survivor, (lost_node, final["execution"])
    node.restarted("deployments.serve", runner.pid)
    # the phases the lost run had completed were restored from its checkpoints in the bucket
    doc = apis[lost_node].results(retry_id, format="detailed").json()  # the other API
    preserved = [p["phaseName"] for p in doc["phaseResults"] if p.get("preservedFrom") == op_id]
    print(
        f"cluster: {op_id} lost on {lost_node} after {done}; retry {retry_id} completed on "
        f"{survivor} preserving {preserved}"
    )
    assert preserved and set(preserved) <= set(done), (preserved, done)
    assert final["retryOf"]["originalOperationId"] == op_id
    assert_each_event_once(receiver)
