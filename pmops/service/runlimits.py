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
- cgroup v1, where /sys/fs/cgroup/memory is the v1 memory controller (a hybrid host: this
  development machine): the same, in the v1 files: a cgroup `pmops/run-<operationId>` under this
  process's own memory cgroup with `memory.limit_in_bytes` = memoryGB (and
  `memory.memsw.limit_in_bytes`, no swap, where the kernel accounts it), and one under its own
  cpu cgroup with `cpu.cfs_quota_us` = cpuUnits × `cpu.cfs_period_us`; the OOM kill is read
  from `memory.oom_control` (`oom_kill`). The parent `pmops` memory cgroup counts all runs
  together (hierarchical accounting), so its `memory.max_usage_in_bytes` is the runs' peak sum.
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
`prefect_test_harness`) is left alone. PMOPS_RUN_LIMITS picks the mechanism: auto (a cgroup,
v2 or v1, where usable, else rlimit), cgroup, rlimit or off.
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
    cpu_cgroup: Path | None = None  # cgroup v1: the run's cgroup in the cpu controller
    cpu_origin: Path | None = None

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


# -- where the run cgroups go ------------------------------------------------------------------
UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as a page-rounded LONG_MAX


@dataclass(frozen=True)
class Hierarchy:
    """Where the run cgroups go: cgroup v2 (one directory, memory and cpu together) or v1 (the
    memory controller's `pmops` directory and the cpu controller's, each under this process's
    own cgroup of that controller)."""

    version: int
    memory: Path
    cpu: Path | None


def hierarchy(settings: Settings, root: Path = CGROUP_ROOT) -> Hierarchy | None:
    """The usable cgroup hierarchy (v2 first), or None."""
    if cgroup_usable(root):
        return Hierarchy(2, settings.run_cgroup_dir, settings.run_cgroup_dir)
    if not (root / "memory" / "memory.limit_in_bytes").exists():
        return None
    memory = _v1_own(root, "memory")
    if memory is None:
        return None
    cpu = _v1_own(root, "cpu") if (root / "cpu" / "cpu.cfs_quota_us").exists() else None
    return Hierarchy(1, _outside_runs(memory) / "pmops", cpu and _outside_runs(cpu) / "pmops")


def _v1_own(root: Path, controller: str) -> Path | None:
    """This process's cgroup of a v1 controller (/proc/self/cgroup: `4:memory:/a/b`)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return root / controller / path.lstrip("/")
    return None


def _outside_runs(group: Path) -> Path:
    """The cgroup a process in a run's cgroup came from (`…/pmops/run-x` -> `…`)."""
    parts = group.parts
    if len(parts) >= 2 and parts[-2] == "pmops" and parts[-1].startswith("run-"):
        return Path(*parts[:-2])
    return group


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
            found = hierarchy(settings, root)
            if found is None:
                raise OSError(errno.ENOTSUP, f"no cgroup memory controller at {root}")
            if found.version == 2:
                return _apply_cgroup(limits, operation_id, found.memory, root)
            return _apply_cgroup_v1(limits, operation_id, found)
        except OSError as exc:
            if mode == "cgroup":
                log.warning("%s: cgroup limits unavailable (%s); not enforced", operation_id, exc)
                return Applied(limits, "none", f"not enforced (cgroup unavailable: {exc})")
    return _apply_rlimit(limits)


def cgroup_usable(root: Path = CGROUP_ROOT) -> bool:
    """cgroup v2 mounted at `root` with the memory controller."""
    try:
        return "memory" in (root / "cgroup.controllers").read_text().split()
    except OSError:
        return False


def _apply_cgroup(limits: RunLimits, operation_id: str, base: Path, root: Path) -> Applied:
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


def _apply_cgroup_v1(limits: RunLimits, operation_id: str, found: Hierarchy) -> Applied:
    """The v1 files: memory (no swap) in the memory controller, the quota in the cpu one."""
    group = run_cgroup(found.memory, operation_id)
    group.mkdir(parents=True, exist_ok=True)
    swap = group / "memory.memsw.limit_in_bytes"
    with contextlib.suppress(OSError):
        swap.write_text("-1")  # memsw >= limit at every step: lift it, set the limit, then it
    (group / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
    with contextlib.suppress(OSError):
        swap.write_text(str(limits.memory_bytes))
    with contextlib.suppress(OSError):
        (group / "memory.swappiness").write_text("0")
    detail = f"cgroup v1 {group}: memory.limit_in_bytes {limits.memory_bytes}"
    (group / "cgroup.procs").write_text(str(os.getpid()))
    applied = Applied(limits, "cgroup", detail, cgroup=group, origin=found.memory.parent)
    if found.cpu is not None:
        try:
            cpu = run_cgroup(found.cpu, operation_id)
            cpu.mkdir(parents=True, exist_ok=True)
            quota = max(1000, round(limits.cpu_units * CPU_PERIOD_US))
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))
            (cpu / "cgroup.procs").write_text(str(os.getpid()))
            applied.cpu_cgroup, applied.cpu_origin = cpu, found.cpu.parent
            applied.detail += f", cpu.cfs_quota_us {quota} per {CPU_PERIOD_US}"
        except OSError as exc:
            applied.detail += f" (cpu quota not applied: {exc})"
    return applied


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
    for group, origin in (
        (applied.cgroup, applied.origin),
        (applied.cpu_cgroup, applied.cpu_origin),
    ):
        if group is not None and origin is not None:
            with contextlib.suppress(OSError):
                (origin / "cgroup.procs").write_text(str(os.getpid()))
                _drop(group)


def _drop(group: Path) -> None:
    """Remove a run's cgroup, reclaiming first what is still charged to it (the page cache of
    the files it wrote): a removed cgroup's charges move to its parent, which would then count
    finished runs' cache beside the running ones."""
    with contextlib.suppress(OSError):
        (group / "memory.force_empty").write_text("0")  # v1
    with contextlib.suppress(OSError):
        (group / "memory.reclaim").write_text(str(1 << 40))  # v2 (5.19+): as much as it can
    group.rmdir()


def cgroup_peak_bytes(applied: Applied) -> int | None:
    """The run cgroup's peak memory as the kernel counted it (v1 `memory.max_usage_in_bytes`,
    v2 `memory.peak`), its children included; None without one."""
    if applied.cgroup is None:
        return None
    for name in ("memory.max_usage_in_bytes", "memory.peak"):
        with contextlib.suppress(OSError, ValueError):
            return int((applied.cgroup / name).read_text().split()[0])
    return None


# -- what a run that ran out looks like -------------------------------------------------------
def oom_kills(found: Hierarchy, operation_id: str) -> int:
    """How often the OOM killer acted in the operation's cgroup (0: never, or no cgroup):
    `oom_kill` in v2's memory.events or v1's memory.oom_control."""
    group = run_cgroup(found.memory, operation_id)
    for name in ("memory.events", "memory.oom_control"):
        try:
            text = (group / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return 0


def cgroup_limit_gb(found: Hierarchy, operation_id: str) -> float | None:
    """The run cgroup's memory limit in GB (None: no cgroup, or no limit)."""
    group = run_cgroup(found.memory, operation_id)
    for name in ("memory.max", "memory.limit_in_bytes"):
        try:
            text = (group / name).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < UNLIMITED_V1:
            return round(int(text) / GIB, 3)
        return None
    return None


def remove_cgroup(found: Hierarchy, operation_id: str) -> None:
    """Remove a run's cgroups once its process is gone (rmdir refuses a cgroup still in use)."""
    for base in {found.memory, found.cpu}:
        if base is not None:
            with contextlib.suppress(OSError):
                _drop(run_cgroup(base, operation_id))


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
