"""The service outlives its own parts: the Prefect server and the runner are SIGKILLed (or frozen
with SIGSTOP) for real while operations run or wait, and flow runs end in Prefect before they
started their operation. The supervisor restarts what died; every accepted operation ends
Completed, or Failed with a reason a user can act on, and nothing stays Initiated or Running.

These tests kill parts of the stack, so they have a stack of their own (worker limit 2). It gives
up on a flow run that sits Pending/Running without claiming its operation after 20 s
(PMOPS_UNCLAIMED_RUN_SECONDS) instead of the default 60 s."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service_stack import (
    Stack,
    Tenant,
    eventually,
    frozen,
    pid_of,
    process_gone,
    running_stack,
)

pytestmark = [pytest.mark.fault, pytest.mark.xdist_group("stack-durability")]  # own stack

QUICK = {"analysisType": "quick"}
RECEIPT_EVENTS = 8577
SERVER, RUNNER = "prefect server start", "deployments.serve"


UNCLAIMED_RUN_SECONDS = 20


@pytest.fixture(scope="module")
def durable(
    tmp_path_factory: pytest.TempPathFactory, prefect_template: Path, datasets: Path
) -> Iterator[tuple[Stack, Tenant, str]]:
    with running_stack(
        tmp_path_factory.mktemp("stack-durability"),
        prefect_template,
        worker_limit=2,
        unclaimed_run_seconds=UNCLAIMED_RUN_SECONDS,
    ) as stack:
        api = stack.dev()
        yield stack, api, api.upload(datasets / "receipt.xes.gz")["datasetId"]
        api.close()


def start_quick(api: Tenant, dataset_id: str, name: str, n: int = 1) -> list[str]:
    return [api.start(dataset_id, f"{name} {i}", parameters=QUICK)["operationId"] for i in range(n)]


def flow_run_of(api: Tenant, op_id: str, other_than: str | None = None) -> str:
    """The operation's flow run once the dispatcher has created one (other than `other_than`)."""
    s = api.wait(
        op_id,
        lambda s: run_id_of(s) not in (None, other_than),
        deadline=60,
        every=0.1,
    )
    assert s["status"] == "Initiated", s
    return str(run_id_of(s))


def two_running(api: Tenant, ops: list[str], deadline: float = 120) -> list[dict[str, Any]]:
    """Wait until two of the operations run (claimed by their flow-run processes) and none is
    between being dispatched and its process running (worker limit 2: the rest wait in our
    queue, or in a standby run whose process is up and waits for a slot, or are done); the
    running ones' statuses, least advanced first."""
    end = time.monotonic() + deadline
    while True:
        statuses = [api.status(op_id) for op_id in ops]
        running = [s for s in statuses if s["status"] == "Running"]
        starting = [s for s in statuses if s["status"] == "Initiated" and run_id_of(s)]
        if len(running) == 2 and all(standing_by(api.stack, s) for s in starting):
            return sorted(running, key=lambda s: s["progress"]["percentage"])
        assert time.monotonic() < end, [(s["status"], run_id_of(s)) for s in statuses]
        time.sleep(0.1)


def standing_by(stack: Stack, status: dict[str, Any]) -> bool:
    """A queued operation's run is a standby run (PMOPS_STANDBY_RUNS): Running in Prefect, its
    process started and waiting for a worker slot, so it outlives its runner as a running
    operation's process does."""
    return stack.flow_run(str(run_id_of(status)))["state_type"] == "RUNNING"


def run_id_of(status: dict[str, Any]) -> str | None:
    return (status.get("prefect") or {}).get("flowRunId")


def assert_completed(api: Tenant, op_ids: list[str], deadline: float = 240) -> list[dict]:
    finals = [api.wait(op_id, deadline=deadline) for op_id in op_ids]
    for final in finals:
        assert final["status"] == "Completed", (final["operationId"], final["status"], final)
        assert final["progress"]["percentage"] == 100
        doc = api.results(final["operationId"]).json()
        assert doc["summary"]["recordsAnalyzed"] == RECEIPT_EVENTS, doc
    return finals


def states_of(stack: Stack, op_id: str) -> list[str]:
    """Prefect's state of each flow run of the operation, oldest first."""
    return [run["state_type"] for run in stack.flow_runs_of(op_id)]


def assert_settled(api: Tenant, deadline: float = 60) -> None:
    """Nothing of this stack is still waiting or running."""

    def open_ops() -> list[dict[str, Any]]:
        return [
            op
            for status in ("Initiated", "Running")
            for op in api.get(
                "/async/operations", params={"status": status, "pageSize": 100}
            ).json()["operations"]
        ]

    assert eventually(lambda: not open_ops(), deadline), open_ops()


def test_prefect_server_restart_with_operations_in_flight(durable) -> None:
    """SIGKILL the Prefect server with two operations running and one queued: the API still
    answers (health 503, statuses, new starts, a forced cancel); after the supervisor restarts
    Prefect every operation completes (or stays Cancelled as asked), Prefect's states agree, and
    nothing stays Initiated or Running."""
    stack, api, receipt = durable
    ops = start_quick(api, receipt, "through a Prefect restart", 3)
    live, other = two_running(api, ops)
    stop = live["operationId"]

    server = stack.child(SERVER)
    server.send_signal(signal.SIGKILL)
    server.wait(10)
    # while Prefect is away the API still answers (before, every Prefect call sat in the
    # client's retries, 2 + 4 + 8 + ... s, behind one lock): health says Prefect is unavailable,
    # statuses read, new operations are accepted, and a forced cancel is done in our store (the
    # flow-run process sees it at its next heartbeat)
    r = httpx.get(f"{stack.url}/health", timeout=10)
    if not stack.prefect_healthy():
        assert r.status_code == 503, r.text
        assert r.json()["checks"]["prefect"] == "unavailable"
    assert api.status(other["operationId"])["status"] in ("Running", "Completed")
    late = start_quick(api, receipt, "accepted while Prefect is away")
    stopped = api.delete(
        f"/async/operation/{stop}",
        json={"forceTermination": True, "reason": "stopped while Prefect is away"},
        timeout=30,
    )
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] == "Cancelled"

    stack.restarted(SERVER, server.pid)
    assert eventually(stack.prefect_healthy, 120), stack.logs()
    finals = assert_completed(api, [op for op in ops if op != stop] + late)
    # Prefect agrees: each operation's flow run completed (a flow run whose process could not
    # reach Prefect while it restarted crashed before starting; its operation got a new one)
    for final in finals:
        run_id = final["prefect"]["flowRunId"]
        assert eventually(lambda f=run_id: stack.flow_run(f)["state_type"] == "COMPLETED", 60), (
            stack.flow_run(run_id)
        )
    # the cancelled one stopped by itself and stays Cancelled
    assert eventually(lambda: process_gone(pid_of(live)), 60)
    assert api.status(stop)["status"] == "Cancelled"
    assert eventually(stack.healthy, 30)
    assert_settled(api)


def test_runner_restart_keeps_running_operations(durable) -> None:
    """Only the runner dies: its flow-run processes are on their own and finish their operations;
    what waited in our queue starts on the restarted runner."""
    stack, api, receipt = durable
    ops = start_quick(api, receipt, "through a runner restart", 3)
    running = two_running(api, ops)
    runner = stack.child(RUNNER)
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    stack.restarted(RUNNER, runner.pid)
    finals = {s["operationId"]: s for s in assert_completed(api, ops)}
    # the processes that had claimed them finished them
    for live in running:
        pid = pid_of(live)
        assert pid_of(finals[live["operationId"]]) == pid
        assert eventually(lambda p=pid: process_gone(p), 30)
    assert_settled(api)


def test_runner_and_flow_run_killed_together(durable) -> None:
    """Runner and flow-run process die at once: nobody reports the run to Prefect (it stays
    Running there), so the operation is Failed by its stale heartbeat, within the 60 s a user
    may expect; the others run on the restarted runner."""
    stack, api, receipt = durable
    ops = start_quick(api, receipt, "runner and run killed", 3)
    live, _ = two_running(api, ops)
    killed = live["operationId"]
    runner = stack.child(RUNNER)
    runner.send_signal(signal.SIGKILL)
    os.kill(pid_of(live), signal.SIGKILL)
    runner.wait(10)

    lost = api.wait(killed, deadline=60)
    assert lost["status"] == "Failed", lost
    assert lost["error"]["code"] == "worker_lost"
    assert "heartbeats" in lost["error"]["message"], lost["error"]
    stack.restarted(RUNNER, runner.pid)
    assert_completed(api, [op for op in ops if op != killed])
    assert api.status(killed)["status"] == "Failed"
    assert_settled(api)


def test_runner_killed_between_create_and_start(durable) -> None:
    """The flow run exists (Scheduled) but its runner dies before taking it: the restarted runner
    takes the same flow run; nothing is dispatched twice."""
    stack, api, receipt = durable
    runner = stack.child(RUNNER)
    with frozen(runner):
        (op,) = start_quick(api, receipt, "runner killed before the start")
        flow_run_id = flow_run_of(api, op)
        assert stack.flow_run(flow_run_id)["state_type"] == "SCHEDULED"
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
    stack.restarted(RUNNER, runner.pid)
    (final,) = assert_completed(api, [op])
    assert final["prefect"]["flowRunId"] == flow_run_id
    assert len(stack.flow_runs_of(op)) == 1
    assert_settled(api)


def test_flow_runs_that_end_before_starting(durable) -> None:
    """Prefect says a dispatched operation's flow run Crashed before the flow began (as when its
    process cannot reach a restarting Prefect server): the operation is dispatched once more, as
    a new flow run; when that one does not start it either, it is Failed with the reason."""
    stack, api, receipt = durable
    runner = stack.child(RUNNER)
    with frozen(runner):  # the runner takes nothing: the flow runs stay Scheduled until crashed
        again, never = start_quick(api, receipt, "crashed before the start", 2)
        first = flow_run_of(api, again)
        stack.set_flow_run_state(first, "CRASHED", "Process exited with status code: 1.")
        second = flow_run_of(api, again, other_than=first)

        gone = flow_run_of(api, never)
        stack.set_flow_run_state(gone, "CRASHED", "Process exited with status code: 1.")
        gone_again = flow_run_of(api, never, other_than=gone)
        stack.set_flow_run_state(gone_again, "CANCELLED", "cancelled in the Prefect UI")
        failed = api.wait(never, deadline=60)
        assert failed["status"] == "Failed", failed
        assert failed["error"]["code"] == "run_not_started"
        message = failed["error"]["message"]
        assert "2 flow runs" in message and "Cancelled" in message, message
        assert gone_again in message, message
        assert api.status(again)["status"] == "Initiated"
        # the Failed one no longer holds a worker slot: the next one is dispatched at once
        (nxt,) = start_quick(api, receipt, "after the crashed flow runs")
        flow_run_of(api, nxt)

    # the runner is back: the second flow run starts the operation
    final, _ = assert_completed(api, [again, nxt])
    assert final["prefect"]["flowRunId"] == second
    # (the store says Completed just before the flow run reports its end to Prefect)
    assert eventually(lambda: states_of(stack, again) == ["CRASHED", "COMPLETED"], 60), states_of(
        stack, again
    )
    assert [r["idempotency_key"] for r in stack.flow_runs_of(again)] == [again, f"{again}:2"]
    assert states_of(stack, never) == ["CRASHED", "CANCELLED"]
    assert api.status(never)["status"] == "Failed"
    assert_settled(api)


def test_flow_run_taken_by_a_runner_that_died(durable) -> None:
    """The runner had taken the flow run (Prefect: Pending 'Submitting') and died before starting
    its process: no runner will take a Pending run again. After unclaimed_run_seconds without a
    claim the flow run is given up (Cancelled, so a late process cannot start it) and the
    operation dispatched again."""
    stack, api, receipt = durable
    runner = stack.child(RUNNER)
    with frozen(runner):
        (op,) = start_quick(api, receipt, "taken by a dying runner")
        taken = flow_run_of(api, op)
        stack.set_flow_run_state(taken, "PENDING", "", name="Submitting")
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
    stack.restarted(RUNNER, runner.pid)
    (final,) = assert_completed(api, [op], deadline=UNCLAIMED_RUN_SECONDS + 180)
    assert final["prefect"]["flowRunId"] != taken
    assert eventually(lambda: states_of(stack, op) == ["CANCELLED", "COMPLETED"], 60), states_of(
        stack, op
    )
    given_up = stack.flow_runs_of(op)[0]["state"]["message"]
    assert "Pending (Submitting)" in given_up, given_up
    assert_settled(api)
