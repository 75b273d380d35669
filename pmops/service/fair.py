"""Fair dispatch: which queued operations take the worker slots that are free.

The unit is a project (a tenant/project pair). Priority orders work within a project only;
across projects the slots are shared round robin:

1. among the projects with queued work, the one holding the fewest worker slots goes next
   (Initiated or Running operations with a run);
2. between projects holding as many, the one whose last dispatch is oldest (a project never
   dispatched, or not since the dispatcher started, goes first; then tenant/project id order);
3. within the chosen project, its highest priority operation, then its oldest.

Each pick counts as one more slot held and a fresh turn for its project, so the free slots of
one round are dealt out one project at a time. A flood in one project therefore delays another
project's operation by at most one slot turn: the next slot that frees goes to the project that
holds fewer slots (with `worker_limit` 2 and project A holding both, B's operation is the next
to start, whatever A's backlog and its priorities).

The turns live in the dispatcher's memory (one dispatcher per store: on PostgreSQL the leader's,
pmops/service/leader.py); after a restart or a change of leader every project starts even
again. The reads are index-bound: the status counters for the projects with Initiated work,
ix_ops_active_runs for the held slots (less the standby runs, pmops/store/standby.py),
ix_ops_project_queue for a project's head (only the projects in turn are read, in order, until
one has an operation waiting).
"""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.engine import Connection

from pmops.store import operations as op_store
from pmops.store import queue
from pmops.store.queue import Project


class FairQueue:
    """The dispatcher's turns per project and the selection over them."""

    def __init__(self) -> None:
        self._clock = itertools.count(1)
        self.turns: dict[Project, int] = {}  # project -> its last dispatch's turn number

    def select(
        self,
        conn: Connection,
        active: dict[Project, int],
        free: int,
        standing: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Up to `free` queued operations in dispatch order (rule in the module's docstring).
        `active` is the slots held per project (queue.count_active_runs_by_project, less the
        standby runs). `standing`: standby operations (pmops.store.standby), whose runs wait
        for a slot; each is a candidate in its project's order like a queued one, so a higher
        priority queued after it still goes first."""
        if free <= 0:
            return []
        by_project: dict[Project, list[dict[str, Any]]] = {}
        for row in standing or ():
            by_project.setdefault((row["tenant_id"], row["project_id"]), []).append(row)
        candidates = queue.list_projects_with_initiated(conn)
        # projects without queued work give their turn up: their next operation goes first
        queued = set(candidates)
        self.turns = {p: t for p, t in self.turns.items() if p in queued}
        held = dict(active)
        turns = dict(self.turns)
        heads: dict[Project, list[dict[str, Any]]] = {}
        picked: list[dict[str, Any]] = []
        while len(picked) < free and candidates:
            candidates.sort(key=lambda p: (held.get(p, 0), turns.get(p, 0)))
            project = candidates[0]
            if project not in heads:
                head = queue.list_project_queue(conn, *project, free)
                heads[project] = sorted([*by_project.get(project, ()), *head], key=dispatch_order)
            if not heads[project]:
                candidates.pop(0)  # Initiated, but all dispatched already
                continue
            picked.append(heads[project].pop(0))
            held[project] = held.get(project, 0) + 1
            turns[project] = next(self._clock)
        return picked

    def dispatched(self, row: dict[str, Any]) -> None:
        """Record the turn of an operation whose run was created."""
        self.turns[(row["tenant_id"], row["project_id"])] = next(self._clock)


def dispatch_order(row: dict[str, Any]) -> tuple[int, Any]:
    """Within a project: highest priority first, then oldest (ix_ops_project_queue's order)."""
    return (-int(row["priority_rank"]), row["created_at"])


def seconds_ahead(conn: Connection, tenant_id: str, project_id: str, min_rank: int) -> float:
    """Estimated seconds of queued work a new operation of this project and priority rank waits
    for under the rule above: its own project's operations of equal or higher priority, and
    from each other project at most as many operations as it has ahead plus one (one per slot
    turn), at that project's average estimate."""
    own, own_seconds = op_store.queued_in_project_ahead(conn, tenant_id, project_id, min_rank)
    turns = own + 1
    others = 0.0
    for project, (n, seconds) in op_store.queued_per_project(conn).items():
        if project != (tenant_id, project_id) and n:
            others += seconds * min(n, turns) / n
    return own_seconds + others
