"""Bounded resources per flow run (pmops/service/runlimits.py): the mapping from memoryGB and
cpuUnits to the limits, the out-of-memory classification, the cgroup v2 files (on a directory
laid out as cgroup v2 is: this machine has cgroup v1 only) and the RLIMIT_AS path for real, in
a process of its own."""

from __future__ import annotations

import errno
import multiprocessing
import os
import resource
from pathlib import Path
from typing import Any

import pytest

from analysis.errors import EventLogError
from pmops.service import runlimits
from pmops.service.dispatcher import Dispatcher
from pmops.service.runlimits import GIB, RunLimits
from pmops.settings import Settings


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path, **kw)


def test_limits_come_from_the_settings_or_the_retrys_resource_allocation(tmp_path) -> None:
    settings = _settings(tmp_path, memory_gb=2.0, cpu_units=1, run_address_space_extra_gb=1.5)
    plain = runlimits.limits_for(settings, {"parameters": {}})
    assert (plain.memory_gb, plain.cpu_units) == (2.0, 1.0)
    assert plain.memory_bytes == 2 * GIB
    assert plain.address_space_bytes == int(3.5 * GIB)  # memoryGB + the reserve
    retried = runlimits.limits_for(
        settings, {"resourceAllocation": {"memoryGB": 0.5, "cpuUnits": 2}}
    )
    assert (retried.memory_gb, retried.cpu_units) == (0.5, 2.0)
    assert retried.address_space_bytes == 2 * GIB


def test_cpu_units_map_to_cpu_max_and_an_affinity() -> None:
    assert RunLimits(2, 1).cpu_max == "100000 100000"
    assert RunLimits(2, 1.5).cpu_max == "150000 100000"
    assert RunLimits(2, 0.25).cpu_max == "25000 100000"
    assert runlimits.choose_cpus(1, [0, 1, 2, 3], seed=6) == [2]
    assert runlimits.choose_cpus(1.5, [0, 1, 2, 3], seed=3) == [0, 3]
    assert runlimits.choose_cpus(8, [0, 1], seed=5) == [0, 1]
    # another flow run is pinned to CPU 0: this one takes 1, whatever its pid
    assert runlimits.choose_cpus(1, [0, 1], seed=4, taken={0: 1}) == [1]
    assert runlimits.choose_cpus(2, [0, 1, 2, 3], seed=0, taken={0: 1, 1: 2}) == [2, 3]


def test_siblings_pinned_to_a_cpu_are_counted() -> None:
    """Flow runs are siblings (children of the forkserver): one pinned to CPU 0 is seen by the
    next."""
    ctx = multiprocessing.get_context("forkserver")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    go, ready, out = ctx.Event(), ctx.Event(), ctx.Queue()
    pinned = ctx.Process(target=_pinned_until, args=([0], ready, go))
    pinned.start()
    try:
        assert ready.wait(120)
        looker = ctx.Process(target=_look, args=(out,))
        looker.start()
        assert out.get(timeout=120) == {0: 1}
        looker.join(30)
    finally:
        go.set()
        pinned.join(30)


def _look(out: Any) -> None:
    """Report the pinned siblings seen (the pinned one has pinned itself before this starts)."""
    out.put(runlimits.pinned_siblings(sorted(os.sched_getaffinity(0))))


def _pinned_until(cpus: list[int], pinned: Any, go: Any) -> None:
    os.sched_setaffinity(0, cpus)
    pinned.set()
    go.wait(60)


def _raised(make: Any) -> BaseException:
    try:
        make()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing raised")


def _too_large() -> None:
    try:
        raise MemoryError
    except MemoryError:
        raise EventLogError("too large to read", code="too_large") from None


def test_out_of_memory_is_recognised_through_wrapping() -> None:
    assert runlimits.exhausted(MemoryError())
    assert runlimits.exhausted(_raised(_too_large))  # the reader's too_large, from a MemoryError
    assert runlimits.exhausted(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert runlimits.exhausted(RuntimeError("can't start new thread"))
    assert runlimits.exhausted(ImportError("x.so: failed to map segment from shared object"))
    assert not runlimits.exhausted(ImportError("No module named 'x'"))
    assert not runlimits.exhausted(OSError(errno.ENOSPC, "No space left on device"))
    assert not runlimits.exhausted(ValueError("bad"))
    assert not runlimits.exhausted(EventLogError("corrupt", code="corrupt_file"))


def test_the_error_names_the_limit_and_the_way_out() -> None:
    error = runlimits.exhausted_error(RunLimits(2.0, 1), True)
    assert error["code"] == "resource_exhausted"
    assert "more than the 2 GB memory limit (memoryGB)" in error["message"]
    assert "resourceAllocation.memoryGB" in error["message"]
    killed = runlimits.exhausted_error(RunLimits(0.5, 1), True, killed=True)
    assert "OOM killer" in killed["message"] and "0.5 GB" in killed["message"]
    free = runlimits.exhausted_error(RunLimits(2.0, 1), False)
    assert free["code"] == "resource_exhausted" and "no per-run limit" in free["message"]


def _fake_cgroup2(root: Path) -> Path:
    """A directory laid out as a cgroup v2 root with a delegated pmops directory."""
    for d in (root, root / "pmops"):
        d.mkdir(exist_ok=True)
        (d / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        (d / "cgroup.subtree_control").write_text("")
    return root / "pmops"


def test_cgroup_v2_limits_are_written_and_the_process_moved(tmp_path, monkeypatch) -> None:
    root = tmp_path / "cg"
    base = _fake_cgroup2(root)
    settings = _settings(tmp_path, run_limits="cgroup", run_cgroup_dir=base)
    monkeypatch.setattr(runlimits, "own_process", lambda: True)
    limits = RunLimits(0.5, 1.5)
    group = runlimits.run_cgroup(base, "op-1")
    group.mkdir()
    (group / "cpu.max").write_text("max 100000")  # the kernel makes it; a plain dir does not
    applied = runlimits.apply(limits, "op-1", settings, root=root)
    assert applied.mechanism == "cgroup" and applied.enforced
    assert (group / "memory.max").read_text() == str(GIB // 2)
    assert (group / "memory.swap.max").read_text() == "0"
    assert (group / "memory.oom.group").read_text() == "1"
    assert (group / "cpu.max").read_text() == "150000 100000"
    assert (group / "cgroup.procs").read_text() == str(os.getpid())
    assert (root / "cgroup.subtree_control").read_text() == "+memory +cpu"
    # the kernel's count after an OOM kill: the dispatcher's sweep reads it
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    found = runlimits.hierarchy(settings, root)
    assert found == runlimits.Hierarchy(2, base, base)
    assert runlimits.oom_kills(found, "op-1") == 1
    assert runlimits.cgroup_limit_gb(found, "op-1") == 0.5
    assert runlimits.oom_kills(found, "op-2") == 0


def _fake_cgroup1(root: Path) -> tuple[Path, Path]:
    """A directory laid out as a v1 hybrid host: memory and cpu controllers, each with this
    process's own cgroup (as /proc/self/cgroup names it) in it."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(","):
            own[name] = path.lstrip("/")
    memory, cpu = root / "memory" / own.get("memory", ""), root / "cpu" / own.get("cpu", "")
    for d, files in ((memory, ["memory.limit_in_bytes"]), (cpu, ["cpu.cfs_quota_us"])):
        d.mkdir(parents=True, exist_ok=True)
        for name in files:
            (root / d.relative_to(root).parts[0] / name).write_text("-1")
    return memory, cpu


def test_cgroup_v1_limits_are_written_and_the_process_moved(tmp_path, monkeypatch) -> None:
    """A hybrid host (cgroup v1 controllers): run cgroups under the process's own memory and
    cpu cgroups, the memory limit without swap, the CPU quota, the kernel's OOM count read."""
    root = tmp_path / "cg"
    memory, cpu = _fake_cgroup1(root)
    settings = _settings(tmp_path, run_limits="cgroup")
    monkeypatch.setattr(runlimits, "own_process", lambda: True)
    found = runlimits.hierarchy(settings, root)
    assert found == runlimits.Hierarchy(1, memory / "pmops", cpu / "pmops")
    applied = runlimits.apply(RunLimits(0.5, 1.5), "op-1", settings, root=root)
    assert applied.mechanism == "cgroup" and "cgroup v1" in applied.detail, applied.detail
    group = memory / "pmops" / "run-op-1"
    assert (group / "memory.limit_in_bytes").read_text() == str(GIB // 2)
    assert (group / "memory.memsw.limit_in_bytes").read_text() == str(GIB // 2)
    assert (group / "cgroup.procs").read_text() == str(os.getpid())
    quota = cpu / "pmops" / "run-op-1"
    assert (quota / "cpu.cfs_quota_us").read_text() == "150000"
    assert (quota / "cpu.cfs_period_us").read_text() == "100000"
    assert (quota / "cgroup.procs").read_text() == str(os.getpid())
    (group / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert runlimits.oom_kills(found, "op-1") == 1
    assert runlimits.cgroup_limit_gb(found, "op-1") == 0.5
    (group / "memory.limit_in_bytes").write_text("9223372036854771712")  # v1's "no limit"
    assert runlimits.cgroup_limit_gb(found, "op-1") is None
    # a process already in a run cgroup finds the same place (the dispatcher, the next run)
    assert runlimits._outside_runs(group) == memory


def test_auto_falls_back_to_rlimit_without_cgroup_v2(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(runlimits, "own_process", lambda: True)
    settings = _settings(tmp_path, run_limits="cgroup", run_cgroup_dir=tmp_path / "x")
    applied = runlimits.apply(RunLimits(1, 1), "op-1", settings, root=tmp_path / "none")
    assert applied.mechanism == "none" and "cgroup unavailable" in applied.detail
    off = _settings(tmp_path, run_limits="off")
    assert runlimits.apply(RunLimits(1, 1), "op-1", off).mechanism == "none"


def test_limits_stay_off_in_the_callers_process(tmp_path) -> None:
    """pytest (a flow run in prefect_test_harness) is not a flow-run process of its own."""
    before = resource.getrlimit(resource.RLIMIT_AS)
    applied = runlimits.apply(RunLimits(0.1, 1), "op-1", _settings(tmp_path))
    assert applied.mechanism == "none" and not applied.enforced
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_the_sweep_tells_an_oom_kill_from_a_lost_worker(tmp_path) -> None:
    base = _fake_cgroup2(tmp_path / "cg")
    settings = _settings(tmp_path, run_limits="auto", run_cgroup_dir=base)
    dispatcher = Dispatcher.__new__(Dispatcher)
    dispatcher.settings = settings
    dispatcher.cgroup_root = tmp_path / "cg"
    group = runlimits.run_cgroup(base, "op-killed")
    group.mkdir()
    (group / "memory.max").write_text(str(GIB))
    (group / "memory.events").write_text("oom 2\noom_kill 1\n")
    killed = dispatcher.lost_error("op-killed", 31)
    assert killed["code"] == "resource_exhausted"
    assert "OOM killer at the 1 GB memory limit" in killed["message"]
    assert dispatcher.lost_error("op-other", 31)["code"] == "worker_lost"


def _child(memory_gb: float, sizes: list[int], out: Any) -> None:
    """In a process of its own: apply the rlimit path (the reserve: what the process has
    mapped already, plus 0.1 GB), then allocate each size."""
    import numpy as np

    extra_gb = _vm_size_gb() + 0.1
    settings = Settings(run_limits="rlimit", run_address_space_extra_gb=extra_gb)
    applied = runlimits.apply(RunLimits(memory_gb, 1, extra_gb), "op-child", settings)
    seen: list[str] = []
    for size in sizes:
        try:
            block = np.ones(size, dtype=np.uint8)
            seen.append(f"ok {block.nbytes}")
            del block
        except MemoryError as exc:
            seen.append(f"exhausted {runlimits.exhausted(exc)}")
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    out.put((applied.mechanism, applied.detail, soft == int((memory_gb + extra_gb) * GIB), seen))


def _vm_size_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024 / GIB
    raise AssertionError("no VmSize")


def test_rlimit_path_for_real_in_a_process_of_its_own() -> None:
    """A spawned child (as a flow-run process is) under memoryGB 0.25: a 100 MB array fits,
    a 1 GB one raises MemoryError, recognised as out of memory, and the run goes on."""
    ctx = multiprocessing.get_context("forkserver")
    out = ctx.Queue()
    proc = ctx.Process(target=_child, args=(0.25, [100 << 20, 1 << 30, 50 << 20], out))
    proc.start()
    mechanism, detail, soft_as_mapped, seen = out.get(timeout=120)
    proc.join(30)
    assert mechanism == "rlimit", detail
    assert soft_as_mapped
    assert seen == [f"ok {100 << 20}", "exhausted True", f"ok {50 << 20}"]


@pytest.mark.parametrize("memory_gb", [2.0])
def test_release_gives_the_address_space_back(memory_gb: float, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(runlimits, "own_process", lambda: True)
    before = resource.getrlimit(resource.RLIMIT_AS)
    settings = _settings(tmp_path, run_limits="rlimit")
    applied = runlimits.apply(RunLimits(memory_gb, 64, 64.0), "op-1", settings)
    try:
        assert applied.mechanism == "rlimit"
        assert resource.getrlimit(resource.RLIMIT_AS)[0] == int((memory_gb + 64) * GIB)
    finally:
        runlimits.release(applied)
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def _real_cgroup_or_skip(tmp_path: Path) -> runlimits.Hierarchy:
    found = runlimits.hierarchy(_settings(tmp_path, run_limits="cgroup"))
    if found is None or not os.access(found.memory.parent, os.W_OK):
        pytest.skip("no writable cgroup memory controller on this machine")
    return found


def _allocate_in_cgroup(memory_gb: float, sizes: list[int], out: Any) -> None:
    """In a process of its own: apply the cgroup path, then touch each size (report before each
    allocation: the kernel kills the process, nothing raises)."""
    import numpy as np

    settings = Settings(run_limits="cgroup")
    applied = runlimits.apply(RunLimits(memory_gb, 1), "op-kernel", settings)
    out.put(("applied", applied.mechanism, applied.detail))
    for size in sizes:
        out.put(("allocating", size))
        block = np.ones(size, dtype=np.uint8)  # ones: every page touched
        out.put(("ok", block.nbytes, runlimits.cgroup_peak_bytes(applied)))
        del block
    runlimits.release(applied)
    out.put(("released", applied.cgroup is not None and not applied.cgroup.exists()))


def test_the_kernel_holds_a_run_to_its_cgroup_limit(tmp_path) -> None:
    """For real, where this machine has a writable cgroup memory controller (v1 or v2): a run
    under memoryGB 0.25 allocates 100 MB, then 1 GB: the kernel's OOM killer ends it (SIGKILL)
    in its own cgroup, whose peak never passed the limit; the dispatcher's readers see the kill
    and the limit; the cgroup is removed after. A run that fits releases its cgroup itself."""
    found = _real_cgroup_or_skip(tmp_path)
    ctx = multiprocessing.get_context("forkserver")
    out = ctx.Queue()
    proc = ctx.Process(target=_allocate_in_cgroup, args=(0.25, [100 << 20, 1 << 30], out))
    proc.start()
    proc.join(120)
    seen = []
    while not out.empty():
        seen.append(out.get(timeout=5))
    assert proc.exitcode == -9, (proc.exitcode, seen)
    assert seen[0][:2] == ("applied", "cgroup"), seen
    assert seen[1:3] == [("allocating", 100 << 20), ("ok", 100 << 20, seen[2][2])], seen
    assert seen[2][2] is not None and seen[2][2] <= GIB // 4
    assert seen[3:] == [("allocating", 1 << 30)], seen  # killed inside the 1 GB allocation
    try:
        assert runlimits.oom_kills(found, "op-kernel") >= 1
        assert runlimits.cgroup_limit_gb(found, "op-kernel") == 0.25
        group = runlimits.run_cgroup(found.memory, "op-kernel")
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            if (group / name).exists():
                assert int((group / name).read_text().split()[0]) <= GIB // 4
    finally:
        runlimits.remove_cgroup(found, "op-kernel")
    assert not runlimits.run_cgroup(found.memory, "op-kernel").exists()

    fits = ctx.Process(target=_allocate_in_cgroup, args=(0.25, [50 << 20], out))
    fits.start()
    fits.join(120)
    assert fits.exitcode == 0
    seen = [out.get(timeout=5) for _ in range(4)]
    assert seen[-1] == ("released", True), seen
