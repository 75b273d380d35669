"""Several API processes on one PostgreSQL store (issue #15): the dispatcher's leader, the worker
limit across dispatchers, monthly submissions taken once, event streams on every process.

Each "process" is an engine of its own (its own connections, as another process would have);
the fail-over test kills a real subprocess that holds the lead."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from api.stream import EventFeed
from flows.monthly_pipeline import monthly_batch
from pmops.service.batches import take_submissions
from pmops.service.dispatcher import Dispatcher
from pmops.service.events import emit
from pmops.service.leader import Leadership
from pmops.service.lifecycle import submission_outcome, submit_batch
from pmops.service.orchestrator import BatchRunSpec, OperationRunSpec, Orchestrator
from pmops.settings import Settings
from pmops.store.datasets import insert_dataset
from pmops.store.engine import make_engine, transaction, utc_now
from pmops.store.locks import leader_pid
from pmops.store.operations import update_operation
from pmops.store.tables import batch_submissions, batches, standby_runs
from tests.api.conftest import FakeOrchestrator
from tests.conftest import fresh_database
from tests.store.helpers import add_operation, scope, slots_held
from tests.store.test_fair_dispatch import queue_many

ROOT = Path(__file__).resolve().parents[2]
FAIL_OVER_SECONDS = 10.0


# -- the worker limit across two dispatchers -------------------------------------------------------
def _standing(engine: Engine) -> set[str]:
    """Operations whose run stands by for a slot (PMOPS_STANDBY_RUNS): not holding one."""
    with engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(select(standby_runs.c.operation_id))}


class SharedRuns:
    """One orchestrator both dispatchers call (one Prefect): it checks, at each run it is asked
    to create, that the worker limit still holds (a standby run's does not take a slot) and that
    no more runs stand by than PMOPS_STANDBY_RUNS."""

    def __init__(self, engine: Engine, limit: int, standby: int) -> None:
        self.engine, self.limit, self.standby = engine, limit, standby
        self.lock = threading.Lock()
        self.holding: list[str] = []  # operations with a run, oldest first
        self.most = self.most_standing = 0
        self.over: list[int] = []
        self.standing_over: list[int] = []

    def create_run(
        self, operation: OperationRunSpec, attempt: int = 1, parent_run_id: str | None = None
    ) -> str:
        with self.lock:
            standing = _standing(self.engine)
            # the slots held in the store, and this run's unless it stands by
            now = slots_held(self.engine) + (0 if operation.operation_id in standing else 1)
            self.most = max(self.most, now)
            self.most_standing = max(self.most_standing, len(standing))
            if now > self.limit:
                self.over.append(now)
            if len(standing) > self.standby:
                self.standing_over.append(len(standing))
            self.holding.append(operation.operation_id)
        time.sleep(0.002)  # a call to Prefect takes a while: the other dispatcher may run
        return str(uuid.uuid4())

    def create_batch_run(self, batch: BatchRunSpec) -> str:
        return str(uuid.uuid4())

    def finish_one(self) -> bool:
        """The oldest run holding a slot ends (its operation Completed): its slot frees."""
        with self.lock:
            standing = _standing(self.engine)
            granted = [op for op in self.holding if op not in standing]
            if not granted:
                return False
            op_id = granted[0]
            with transaction(self.engine) as conn:
                update_operation(conn, op_id, {"status": "Completed", "ended_at": utc_now()})
            self.holding.remove(op_id)
            return True


def test_two_dispatchers_never_exceed_the_worker_limit(engines: tuple[Engine, Engine]) -> None:
    limit, n = 3, 60
    queue_many(engines[0], scope(), n // 2)
    queue_many(engines[0], scope(), n // 2)
    runs = SharedRuns(engines[0], limit, standby=1)
    settings = Settings(worker_limit=limit, standby_runs=1)
    dispatchers = [Dispatcher(e, settings, cast(Orchestrator, runs)) for e in engines]
    done = threading.Event()
    errors: list[BaseException] = []

    def dispatch(d: Dispatcher) -> None:
        try:
            while not done.is_set():
                d.dispatch_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=dispatch, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    finished = 0
    while finished < n and time.monotonic() < deadline and not errors:
        time.sleep(0.02)  # the dispatchers fill the free slots meanwhile
        assert slots_held(engines[1]) <= limit
        if runs.finish_one():
            finished += 1
    done.set()
    for t in threads:
        t.join(30)
    print(
        f"\n{n} operations, worker limit {limit}, two dispatchers: at most {runs.most} at once, "
        f"{runs.most_standing} standing by"
    )
    assert not errors, errors
    assert finished == n, "not every operation got a run"
    assert runs.over == [] and runs.standing_over == []


# -- monthly submissions ---------------------------------------------------------------------------
def _dataset(engine: Engine, tenant: str, project: str, tmp: Path) -> str:
    dataset_id = str(uuid.uuid4())
    path = tmp / f"{dataset_id}.csv"
    path.write_text("case,activity,timestamp\n1,a,2024-01-01T00:00:00\n")
    with transaction(engine) as conn:
        insert_dataset(
            conn,
            {
                "dataset_id": dataset_id,
                "tenant_id": tenant,
                "project_id": project,
                "file_name": "log.csv",
                "path": str(path),
                "size_bytes": path.stat().st_size,
                "format": "csv",
                "summary": {"events": 1, "cases": 1, "activities": 1},
                "created_at": utc_now(),
            },
        )
    return dataset_id


def _take_together(engines: tuple[Engine, Engine], settings: Settings) -> list[BaseException]:
    """Both processes take the open submissions at once; what they raised."""
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def take(engine: Engine) -> None:
        start.wait()
        try:
            take_submissions(engine, settings)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_two_processes_take_a_submission_once(
    engines: tuple[Engine, Engine], tmp_path: Path
) -> None:
    tenant, project = scope()
    settings = Settings(data_dir=tmp_path)
    dataset_id = _dataset(engines[0], tenant, project, tmp_path)
    trials = 5
    for _ in range(trials):
        body = monthly_batch([dataset_id], "2026-11", "standard")
        submission = submit_batch(engines[0], tenant, project, body, None)
        errors = _take_together(engines, settings)
        assert not errors, errors  # the loser skipped the claimed row, no failed insert
        batch_id, error = submission_outcome(engines[0], submission)
        assert error is None and batch_id is not None
    with engines[0].connect() as conn:
        made = conn.execute(select(func.count()).select_from(batches)).scalar_one()
    print(f"\n{trials} submissions, each taken by two processes at once: {made} batches")
    assert made == trials


def test_a_submission_taken_again_after_a_crash_keeps_its_batch(
    engines: tuple[Engine, Engine], tmp_path: Path
) -> None:
    """The batch was made but its submission not marked (the process stopped between): the next
    take hands the same batch (the submission id is its Idempotency-Key)."""
    tenant, project = scope()
    settings = Settings(data_dir=tmp_path)
    dataset_id = _dataset(engines[0], tenant, project, tmp_path)
    submission = submit_batch(
        engines[0], tenant, project, monthly_batch([dataset_id], "2026-11", "standard"), None
    )
    take_submissions(engines[0], settings)
    first, _ = submission_outcome(engines[0], submission)
    with transaction(engines[0]) as conn:  # as if the outcome had never been written
        conn.execute(batch_submissions.update().values(batch_id=None))
    take_submissions(engines[1], settings)
    again, _ = submission_outcome(engines[0], submission)
    with engines[0].connect() as conn:
        made = conn.execute(select(func.count()).select_from(batches)).scalar_one()
    assert again == first and made == 1


# -- the leader ----------------------------------------------------------------------------------
def _leaders(parts: list[Leadership]) -> list[int]:
    return [i for i, p in enumerate(parts) if p.leading]


def test_one_leader_and_a_clean_hand_over(engines: tuple[Engine, Engine]) -> None:
    parts = [Leadership(e, retry_seconds=0.2) for e in engines]
    try:
        for p in parts:
            p.start()
        assert parts[0].wait_leading(FAIL_OVER_SECONDS) or parts[1].wait_leading(1)
        for _ in range(10):  # a few rounds of both: still exactly one
            time.sleep(0.1)
            assert len(_leaders(parts)) == 1
        (leader,) = _leaders(parts)
        assert leader_pid(engines[0]) is not None
        clock = time.monotonic()
        parts[leader].stop()
        assert parts[1 - leader].wait_leading(FAIL_OVER_SECONDS)
        print(f"\nhand-over after a clean stop: {time.monotonic() - clock:.2f} s")
    finally:
        for p in parts:
            p.stop()


def test_the_leader_is_read_from_this_databases_lock_only(
    engines: tuple[Engine, Engine],
) -> None:
    """Advisory locks are per database: a leader of another database on the same server (another
    store on it; other test runs) is not this store's leader (found by the two-node suite)."""
    with fresh_database("pmops_other_store") as other_url:
        other = make_engine(other_url)
        elsewhere = Leadership(other, retry_seconds=0.2)
        try:
            elsewhere.start()
            assert elsewhere.wait_leading(FAIL_OVER_SECONDS)
            assert leader_pid(other) is not None
            assert leader_pid(engines[0]) is None  # nobody leads this store
            here = Leadership(engines[0], retry_seconds=0.2)
            here.start()
            try:  # the same key, another database: no contest
                assert here.wait_leading(FAIL_OVER_SECONDS)
                assert leader_pid(engines[1]) not in (None, leader_pid(other))
            finally:
                here.stop()
        finally:
            elsewhere.stop()
            other.dispose()


def test_a_stuck_leader_gives_the_lead_up(engines: tuple[Engine, Engine]) -> None:
    stuck = threading.Event()
    first = Leadership(engines[0], lambda: not stuck.is_set(), retry_seconds=0.2)
    second = Leadership(engines[1], retry_seconds=0.2)
    try:
        first.start()
        assert first.wait_leading(FAIL_OVER_SECONDS)
        second.start()
        time.sleep(0.5)
        assert not second.leading
        stuck.set()  # its dispatcher stops making progress
        assert second.wait_leading(FAIL_OVER_SECONDS)
        assert not first.leading
    finally:
        first.stop()
        second.stop()


LEADER_SCRIPT = """
import sys, time
from pmops.store.engine import make_engine
from pmops.service.leader import Leadership
lead = Leadership(make_engine(sys.argv[1]), retry_seconds=0.2, dead_seconds=int(sys.argv[2]))
lead.start()
assert lead.wait_leading(30)
print("leading", flush=True)
time.sleep(600)
"""


def _fail_over(url: str, kill: signal.Signals, dead_seconds: int) -> float:
    """Seconds from `kill` of the leading subprocess until this process leads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", LEADER_SCRIPT, url, str(dead_seconds)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    engine = make_engine(url)
    follower = Leadership(engine, retry_seconds=1.0)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"leading"
        follower.start()
        time.sleep(2.5)  # two tries at least: the lock is held
        assert not follower.leading
        clock = time.monotonic()
        child.send_signal(kill)
        assert follower.wait_leading(FAIL_OVER_SECONDS), "no fail-over within 10 s"
        return time.monotonic() - clock
    finally:
        child.kill()
        child.wait(10)
        follower.stop()
        engine.dispose()


def test_the_leader_killed_another_process_leads_within_10_s(cluster_url: str) -> None:
    took = _fail_over(cluster_url, signal.SIGKILL, 8)
    print(f"\nleader SIGKILLed: the other process leads after {took:.2f} s")


def test_a_frozen_leader_loses_its_session(cluster_url: str) -> None:
    """A leader that stops (SIGSTOP: alive, its socket open, silent) is ended by PostgreSQL's
    idle-session timeout (here 4 s), and another process leads."""
    took = _fail_over(cluster_url, signal.SIGSTOP, 4)
    print(f"\nleader SIGSTOPped: the other process leads after {took:.2f} s")


def test_only_the_leader_dispatches(engines: tuple[Engine, Engine]) -> None:
    runs = FakeOrchestrator()
    settings = Settings(worker_limit=1000, dispatch_interval_seconds=0.05)
    ds = [Dispatcher(e, settings, cast(Orchestrator, runs)) for e in engines]
    for d in ds:
        d.leadership.retry_seconds = 0.2
    try:
        for d in ds:
            d.start()
        queued = queue_many(engines[0], scope(), 5)
        deadline = time.monotonic() + 30
        while len(runs.created()) < len(queued) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # both dispatchers go round a few more times
        assert sorted(runs.created()) == sorted(queued)  # each once, by the leader
        assert sum(d.leading for d in ds) == 1
    finally:
        for d in ds:
            d.stop()


# -- event streams -------------------------------------------------------------------------------
def test_a_follower_process_streams_events(engines: tuple[Engine, Engine]) -> None:
    """The event feed reads the events table: a process that does not dispatch streams the events
    the leader (or a flow run) wrote."""
    leader_engine, follower_engine = engines
    tenant, project = scope()
    op_id = add_operation(leader_engine, tenant, project)

    async def follow() -> list[str]:
        feed = EventFeed(follower_engine, 0.05)
        await feed.start()
        queue = feed.subscribe(op_id)
        try:
            for event_type in ("operation.started", "operation.progress"):
                with transaction(leader_engine) as conn:
                    emit(conn, op_id, event_type)
            got = [await asyncio.wait_for(queue.get(), 10) for _ in range(2)]
        finally:
            await feed.stop()
        return [e.event_type for e in got]

    assert asyncio.run(follow()) == ["operation.started", "operation.progress"]


def test_sqlite_every_process_leads(tmp_path: Path) -> None:
    lead = Leadership(make_engine(f"sqlite:///{tmp_path / 'store.db'}"))
    lead.start()
    assert lead.leading
    lead.stop()
    assert lead.leading
