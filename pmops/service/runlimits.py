"""Bounded resources per flow run (issue #16): the memory and CPU an operation is allowed.

An operation is allowed `memoryGB` and `cpuUnits` (PMOPS_MEMORY_GB, PMOPS_CPU_UNITS; a retry's
`updatedParameters.resourceAllocation` overrides them, pmops.service.lineage.allocated_settings).
The flow-run process applies them to itself when the flow starts, before any phase:

- cgroup v2, where /sys/fs/cgroup is one (its `cgroup.controllers` lists `memory`) and this
  process may write it (root): a cgroup per operation, `<PMOPS_RUN_CGROUP_DIR>/run-<operationId>`,
  with `memory.max` = memoryGB, `memory.swap.max` = 0, `memory.oom.group` = 1 (the process and
  its graphviz/rsvg children are killed together) and `cpu.max` = cpuUnits × the period; the
  process moves itself in. Past the limit the kernel first reclaims, then the OOM killer ends the
  run; the dispatcher reads `memory.events` (`oom_kill`) when the heartbeats stop and fails the
  operation `resource_exhausted` instead of `worker_lost`.
- else `RLIMIT_AS` (address space): memoryGB plus PMOPS_RUN_ADDRESS_SPACE_EXTRA_GB, the address
  space a flow-run process reserves without touching it (thread stacks, malloc arenas, BLAS
  buffers, mapped libraries; measured, see docs/limits.md). An allocation past it raises
  MemoryError in the phase, and the operation ends Failed `resource_exhausted`
  (exhausted_error). glibc's malloc arenas are capped at MALLOC_ARENAS and pyarrow uses the
  system allocator (its mimalloc pool reserves 1 GiB at once) so the reserve stays small. CPU
  units become a CPU affinity (`sched_setaffinity`, ceil(cpuUnits) CPUs: those the fewest
  other flow runs are pinned to).

Limits apply only in a process of its own (a flow-run child of the runner:
`multiprocessing.parent_process()` is set); a flow run in the caller's process (tests,
`prefect_test_harness`) is left alone. PMOPS_RUN_LIMITS picks the mechanism: auto (cgroup v2
where usable, else rlimit), cgroup, rlimit or off.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import math
import multiprocessing
import os
import resource
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pmops.service.lineage import allocated_settings
from pmops.settings import Settings

log = logging.getLogger("pmops.runlimits")

GIB = 1024**3
CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc mallopt parameter


@dataclass(frozen=True)
class RunLimits:
    """What one operation's flow run is allowed."""

    memory_gb: float
    cpu_units: float
    # the address space a process reserves beyond what it touches (RLIMIT_AS only)
    address_space_extra_gb: float = 1.25

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * GIB)

    @property
    def address_space_bytes(self) -> int:
        """RLIMIT_AS for this memory: memoryGB plus the fixed reserve (measured)."""
        return int((self.memory_gb + self.address_space_extra_gb) * GIB)

    @property
    def cpu_max(self) -> str:
        """cgroup v2 `cpu.max`: cpuUnits × the period, per period."""
        return f"{max(1000, round(self.cpu_units * CPU_PERIOD_US))} {CPU_PERIOD_US}"

    def describe(self) -> str:
        return f"{gb(self.memory_gb)} GB"


@dataclass
class Applied:
    """How the limits were applied to this process (mechanism "none": they were not)."""

    limits: RunLimits
    mechanism: str
    detail: str
    cgroup: Path | None = None
    origin: Path | None = None  # the cgroup the process came from (moved back at the end)
    previous_rlimit: tuple[int, int] | None = None
    cpus: list[int] = field(default_factory=list)

    @property
    def enforced(self) -> bool:
        return self.mechanism != "none"


def gb(value: float) -> str:
    return f"{value:g}"


def limits_for(settings: Settings, request: dict[str, Any] | None) -> RunLimits:
    """The operation's limits: the settings, or its own resourceAllocation (a retry's)."""
    own = allocated_settings(settings, request or {})
    return RunLimits(
        memory_gb=float(own.memory_gb),
        cpu_units=float(own.cpu_units),
        address_space_extra_gb=settings.run_address_space_extra_gb,
    )


def own_process() -> bool:
    """True in a flow-run process of its own (the runner's child), not in the caller's."""
    return multiprocessing.parent_process() is not None


def run_cgroup(base: Path, operation_id: str) -> Path:
    return base / f"run-{operation_id}"


def choose_cpus(
    cpu_units: float, available: list[int], seed: int, taken: Mapping[int, int] | None = None
) -> list[int]:
    """ceil(cpuUnits) of the available CPUs: those the fewest other flow runs are pinned to
    (`taken`: CPU -> runs), ties broken starting at `seed` (the pid) so that concurrent runs
    spread over the machine; all of them when it asks for at least as many."""
    want = max(1, math.ceil(cpu_units))
    cpus = sorted(available)
    if want >= len(cpus):
        return cpus
    taken = taken or {}
    start = seed % len(cpus)
    order = sorted(range(len(cpus)), key=lambda i: (taken.get(cpus[i], 0), (i - start) % len(cpus)))
    return sorted(cpus[i] for i in order[:want])


def pinned_siblings(available: list[int]) -> dict[int, int]:
    """CPU -> how many other flow runs (this process's siblings: the runner's or forkserver's
    other children) are pinned to it; a sibling allowed every CPU is not counted."""
    taken: dict[int, int] = {}
    try:
        me = psutil.Process()
        parent = me.parent()
        siblings = parent.children() if parent is not None else []
    except psutil.Error:
        return taken
    for sibling in siblings:
        if sibling.pid == me.pid:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            cpus = sibling.cpu_affinity() or []
            if 0 < len(cpus) < len(available):
                for cpu in cpus:
                    taken[cpu] = taken.get(cpu, 0) + 1
    return taken


# -- applying -----------------------------------------------------------------------------------
def apply(
    limits: RunLimits, operation_id: str, settings: Settings, root: Path = CGROUP_ROOT
) -> Applied:
    """Apply the limits to this process (see the module doc); never raises."""
    mode = settings.run_limits
    if mode == "off" or not own_process():
        why = "PMOPS_RUN_LIMITS=off" if mode == "off" else "the flow runs in its caller's process"
        return Applied(limits, "none", f"not enforced ({why})")
    if mode in ("auto", "cgroup"):
        try:
            return _apply_cgroup(limits, operation_id, settings.run_cgroup_dir, root)
        except OSError as exc:
            if mode == "cgroup":
                log.warning("%s: cgroup limits unavailable (%s); not enforced", operation_id, exc)
                return Applied(limits, "none", f"not enforced (cgroup v2 unavailable: {exc})")
    return _apply_rlimit(limits)


def cgroup_usable(root: Path = CGROUP_ROOT) -> bool:
    """cgroup v2 mounted at `root` with the memory controller."""
    try:
        return "memory" in (root / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def _apply_cgroup(limits: RunLimits, operation_id: str, base: Path, root: Path) -> Applied:
    if not cgroup_usable(root):
        raise OSError(errno.ENOTSUP, f"no cgroup v2 memory controller at {root}")
    _prepare_base(base)
    group = run_cgroup(base, operation_id)
    group.mkdir(exist_ok=True)
    (group / "memory.max").write_text(str(limits.memory_bytes))
    for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
        with contextlib.suppress(OSError):
            (group / name).write_text(value)
    detail = f"cgroup {group}: memory.max {limits.memory_bytes}"
    if (group / "cpu.max").exists():
        (group / "cpu.max").write_text(limits.cpu_max)
        detail += f", cpu.max {limits.cpu_max}"
    origin = _own_cgroup(root)
    (group / "cgroup.procs").write_text(str(os.getpid()))
    return Applied(limits, "cgroup", detail, cgroup=group, origin=origin)


def _prepare_base(base: Path) -> None:
    """The directory the run cgroups go in, with memory (and cpu) delegated to them."""
    base.mkdir(exist_ok=True)
    for parent in (base.parent, base):
        available = (parent / "cgroup.controllers").read_text().split()
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        wanted = [c for c in ("memory", "cpu") if c in available and c not in enabled]
        if wanted:
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))


def _own_cgroup(root: Path) -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return root / line[3:].lstrip("/")
    except OSError:
        pass
    return None


def _apply_rlimit(limits: RunLimits) -> Applied:
    _small_reserves()
    previous = resource.getrlimit(resource.RLIMIT_AS)
    soft = limits.address_space_bytes
    hard = previous[1]
    if hard != resource.RLIM_INFINITY and soft > hard:
        soft = hard
    try:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (OSError, ValueError) as exc:
        return Applied(limits, "none", f"not enforced (RLIMIT_AS refused: {exc})")
    detail = f"RLIMIT_AS {soft / GIB:.2f} GiB (memoryGB + {limits.address_space_extra_gb:g})"
    cpus = _apply_affinity(limits.cpu_units)
    if cpus:
        detail += f", CPUs {','.join(map(str, cpus))}"
    return Applied(limits, "rlimit", detail, previous_rlimit=previous, cpus=cpus)


def _small_reserves() -> None:
    """Allocators that reserve address space they may never use, made to reserve less: glibc's
    malloc arenas (64 MB each per thread that uses one) capped, and pyarrow's pool (mimalloc /
    jemalloc reserve 1 GiB on first use) replaced by the system allocator."""
    _cap_malloc_arenas()
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # where pyarrow is imported later
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        with contextlib.suppress(Exception):
            arrow.set_memory_pool(arrow.system_memory_pool())


def _cap_malloc_arenas() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS)  # glibc: in the process already


def _apply_affinity(cpu_units: float) -> list[int]:
    if not hasattr(os, "sched_setaffinity"):
        return []
    try:
        available = sorted(os.sched_getaffinity(0))
        taken = pinned_siblings(available)
        cpus = choose_cpus(cpu_units, available, os.getpid(), taken)
        os.sched_setaffinity(0, cpus)
    except OSError:
        return []
    return cpus


def memory_peaks() -> str:
    """This process's peak address space and peak resident memory (VmPeak, VmHWM)."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
        peak, hwm = (int(fields[k].split()[0]) * 1024 / GIB for k in ("VmPeak", "VmHWM"))
    except (OSError, KeyError, ValueError):
        return "peaks unknown"
    return f"peak address space {peak:.2f} GiB, peak resident {hwm:.2f} GiB"


def release(applied: Applied) -> None:
    """Undo the limits at the end of the run (the process may be reused): the address-space
    limit back, the process back in its own cgroup and the run's cgroup removed."""
    if applied.previous_rlimit is not None:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_AS, applied.previous_rlimit)
    if applied.cgroup is not None and applied.origin is not None:
        with contextlib.suppress(OSError):
            (applied.origin / "cgroup.procs").write_text(str(os.getpid()))
            applied.cgroup.rmdir()


# -- what a run that ran out looks like -------------------------------------------------------
def oom_kills(base: Path, operation_id: str) -> int:
    """How often the OOM killer acted in the operation's cgroup (0: never, or no cgroup)."""
    try:
        text = (run_cgroup(base, operation_id) / "memory.events").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def cgroup_limit_gb(base: Path, operation_id: str) -> float | None:
    """The run cgroup's memory.max in GB (None: no cgroup, or no limit)."""
    try:
        text = (run_cgroup(base, operation_id) / "memory.max").read_text().strip()
    except OSError:
        return None
    return round(int(text) / GIB, 3) if text.isdigit() else None


def remove_cgroup(base: Path, operation_id: str) -> None:
    """Remove a run's cgroup once its process is gone (rmdir refuses a cgroup still in use)."""
    with contextlib.suppress(OSError):
        run_cgroup(base, operation_id).rmdir()


def exhausted(exc: BaseException) -> bool:
    """The exception, or one it was raised from or during, says memory ran out: MemoryError,
    a thread, process or shared library that could not start or load for want of memory."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, MemoryError):
            return True
        if isinstance(e, OSError) and e.errno == errno.ENOMEM:
            return True
        if isinstance(e, RuntimeError) and "can't start new thread" in str(e):
            return True
        if isinstance(e, ImportError) and "failed to map segment" in str(e):
            return True  # a library loaded late (matplotlib's backend) found no address space
        todo += [e.__cause__, e.__context__]
    return False


def exhausted_error(limits: RunLimits, enforced: bool, *, killed: bool = False) -> dict[str, Any]:
    """The operation's error when its run ran out of memory."""
    size = limits.describe()
    if enforced:
        how = "was stopped by the kernel's OOM killer at" if killed else "needed more than"
        message = (
            f"the analysis {how} the {size} memory limit (memoryGB); retry with a larger "
            "updatedParameters.resourceAllocation.memoryGB"
        )
    else:
        message = (
            "the analysis ran out of memory (the machine's; no per-run limit was enforced, "
            f"memoryGB {size}); retry when the machine is less busy, or on a smaller log"
        )
    return {"code": "resource_exhausted", "message": message, "field": None}
