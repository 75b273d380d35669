"""Run every benchmark of the project and regenerate BENCHMARKS.md (`make bench`).

  .venv/bin/python bench/run_all.py [--runs 3] [--only webhooks,list] [--no-wait]
      [--render-only] [--list]

Waits once for a quiet machine, then runs each script of SCRIPTS (its exact command line, with
--no-wait where the script waits by itself) --runs times, interleaved (round 1 of every script,
then round 2 ...) so slow drift of the machine hits every script alike; a script's `max_runs`
caps its count (see SCRIPTS for why). After each run it reads the script's result JSON, whose
"metrics" list (bench/_stack.py `metric`) holds the headline figures with the issues' goals, and
aggregates min / median / max and a verdict per goal into bench/results/benchmarks.json, from
which BENCHMARKS.md is written (after every run, so an interrupted `make bench` leaves a
consistent document). With --only, the other scripts' sections are kept from the previous
benchmarks.json, each with its own date. A script that exits non-zero, times out or reports no
metrics is shown as failed, never dropped. --render-only rewrites BENCHMARKS.md from
benchmarks.json without running anything.

Per run: stderr in bench/results/logs/<key>-<n>.log, the printed report in <key>-<n>.out.md,
the result JSON copied to bench/results/runs/<key>-<n>.json.
Prose per script (what it measures, caveats, history): bench/notes/<key>.md.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stack import DATASETS, RESULTS, ROOT, template_row, wait_quiet

DOC = ROOT / "BENCHMARKS.md"
DATA = RESULTS / "benchmarks.json"
NOTES = ROOT / "bench" / "notes"
SHOWN_PY = ".venv/bin/python"  # how commands are written in the document
WAIT_LIMIT = 600.0  # seconds to wait for a quiet machine before measuring anyway


@dataclass(frozen=True)
class Script:
    key: str
    title: str
    argv: tuple[str, ...]  # after the interpreter
    result: str  # bench/results/<result>.json
    max_runs: int | None = None  # None: --runs; else at most this many (unless --uncapped)
    why_capped: str = ""  # said in the document next to the run count
    timeout: float = 1800.0  # seconds per run; longer counts as failed
    seeds_template: bool = False  # needs bench/results/template_row.json

    @property
    def script(self) -> Path:
        return ROOT / self.argv[0]

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in (SHOWN_PY, *self.argv))


# The run list: one place, in document order. Each command is exactly what runs (with this
# interpreter); --no-wait because run_all waits for a quiet machine once at the start.
SCRIPTS: tuple[Script, ...] = (
    Script("analysis", "Analysis engine (issue #2)", ("bench/bench_analysis.py",), "analysis"),
    Script("progress", "Progress cadence (issue #2)", ("bench/bench_progress.py",), "progress"),
    Script(
        "memory",
        "Wide and large logs: bounded memory (issue #14)",
        ("bench/bench_memory.py", "--no-wait"),
        "memory",
    ),
    Script(
        "submit_to_running",
        "Submit → Running (issue #3)",
        ("bench/bench_submit_to_running.py", "--no-wait"),
        "submit_to_running",
        max_runs=2,
        why_capped="a run is 30 sequential analyses plus 5 runs of the 10 s-polling baseline "
        "(about 4–5 min); two runs give 60 samples.",
    ),
    Script(
        "api_latency",
        "API latency, 50 polling clients, 10,000 stored operations (issue #3)",
        (
            "bench/bench_api_latency.py",
            "--modes",
            "no-runner,runner",
            "--clients",
            "50",
            "--think",
            "1.0",
            "--gets",
            "2000",
            "--posts",
            "300",
            "--no-wait",
        ),
        "api_latency",
        max_runs=2,
        why_capped="a run seeds two stacks and measures 2,300 requests in each at a client's "
        "pace (about 3 min).",
        seeds_template=True,
    ),
    Script(
        "api_capacity",
        "API capacity, 50 saturating clients (issue #3, no goal)",
        (
            "bench/bench_api_latency.py",
            "--modes",
            "no-runner",
            "--clients",
            "50",
            "--think",
            "0",
            "--gets",
            "2000",
            "--posts",
            "300",
            "--no-wait",
        ),
        "api_latency",
        max_runs=1,
        why_capped="capacity, no goal.",
        seeds_template=True,
    ),
    Script(
        "list",
        "List with 100,000 operations, SQLite and PostgreSQL (issue #3)",
        ("bench/bench_list.py", "--no-wait"),
        "list",
        max_runs=1,
        why_capped="a run seeds 100,000 operations (2 GB) into SQLite and into PostgreSQL (about "
        "5 min); its figures come from 50 requests per query and backend.",
        seeds_template=True,
    ),
    Script(
        "webhooks",
        "Webhook delivery (issue #4)",
        ("bench/bench_webhooks.py", "--no-wait"),
        "webhooks",
    ),
    Script(
        "cluster_delivery",
        "Webhook delivery, two deliverers on one PostgreSQL store (issue #15)",
        ("bench/bench_cluster_delivery.py", "--no-wait"),
        "cluster_delivery",
        max_runs=2,
        why_capped="each run measures the one-deliverer baseline and the two-deliverer cluster "
        "(200,000 deliveries, about 2 min).",
    ),
    Script(
        "cluster_dispatch",
        "Submit → Running, three API processes on one PostgreSQL store (issue #15)",
        ("bench/bench_cluster_dispatch.py", "--no-wait"),
        "cluster_dispatch",
        max_runs=2,
        why_capped="each run submits 1,000 operations to the one-API baseline and 1,000 to the "
        "three-API cluster (about 4 min).",
    ),
    Script(
        "httpsend",
        "The webhook HTTP client (issue #4, no goal)",
        ("bench/bench_httpsend.py", "--no-wait"),
        "httpsend",
        max_runs=1,
        why_capped="no goal; the script itself alternates two rounds per client.",
    ),
    Script(
        "load",
        "Load: 50 clients on mixed endpoints, 1,000 queued operations (issue #7)",
        ("bench/bench_load.py", "--no-wait"),
        "load",
        max_runs=1,
        why_capped="a run queues 1,000 operations and waits until the runner has done them all "
        "(the longest script by far).",
        timeout=3 * 3600.0,
    ),
)
BY_KEY = {s.key: s for s in SCRIPTS}

# Figures of accuracy rather than speed (what the engine computes on real logs): they do not
# depend on the machine's load, take long, and are kept with their exact command in
# bench/notes/<key>.md; the document shows those notes as they are.
NOTE_ONLY: tuple[tuple[str, str], ...] = (
    ("dates", "Dates and headers of real exports (issue #14)"),
    ("anomaly", "Planted anomalies in real logs (issue #14)"),
    ("predict", "Predictions beside their baselines (issue #14)"),
    ("quality", "Model quality: fitness, precision, F-score (issue #14)"),
    ("speed", "bpic2012 comprehensive after issue #14: A/B and the final check"),
    ("memory", "Wide and large logs (issue #14): the figures kept by hand"),
    ("fair", "Fair dispatch across projects (issue #16)"),
    ("fuzz", "Loader fuzzing (issue #16)"),
    ("api_memory", "API memory under abuse (issue #16)"),
    ("delivery_flood", "Fair delivery: a webhook flood and a hanging DNS host (issue #16)"),
)


# -- machine ------------------------------------------------------------------------------------
def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    import importlib.metadata as md
    import sqlite3

    import psutil

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    os_name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    packages = {}
    for name in (
        "pm4py",
        "scikit-learn",
        "pandas",
        "numpy",
        "prefect",
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "httpx",
        "psycopg",
        "uvloop",
    ):
        with contextlib.suppress(md.PackageNotFoundError):
            packages[name] = md.version(name)
    postgres = ""
    try:
        import psycopg

        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3
        ) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            postgres = str(row[0]).split()[0] if row else ""
    except Exception:  # no server: bench_list.py will fail and say so
        postgres = "not reachable on 127.0.0.1:5432"
    dirty = _git("status", "--porcelain", "--", "api", "flows", "pmops", "deployments", "analysis")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": os_name,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres,
        "packages": packages,
        "commit": _git("rev-parse", "--short=10", "HEAD"),
        "dirty": bool(dirty),
    }


def same_machine(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("cpu", "cores", "ram_gib", "kernel", "python", "packages")
    return all(a.get(k) == b.get(k) for k in keys)


# -- running ------------------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_once(s: Script, n: int) -> dict[str, Any]:
    """One run of one script: exit code, seconds, its metrics (or why there are none)."""
    logs, runs = RESULTS / "logs", RESULTS / "runs"
    logs.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{s.key}-{n}.log"
    result = RESULTS / f"{s.result}.json"
    rec: dict[str, Any] = {"run": n, "started": now_iso(), "log": str(log.relative_to(ROOT))}
    if not s.script.exists():
        rec.update(rc=None, seconds=0.0, error=f"{s.argv[0]} does not exist")
        return rec
    before = result.stat().st_mtime if result.exists() else None
    t0 = time.monotonic()
    report = logs / f"{s.key}-{n}.out.md"
    with log.open("wb") as err, report.open("wb") as fh:
        # own session: a run that overstays its timeout is stopped with its whole process group
        # (its pmops up, receivers, runners), not just the script
        proc = subprocess.Popen(
            [sys.executable, *s.argv],
            cwd=ROOT,
            stdout=fh,
            stderr=err,
            start_new_session=True,
        )
        try:
            rc = proc.wait(s.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = None
            rec["error"] = f"timed out after {s.timeout:.0f} s"
    rec["seconds"] = round(time.monotonic() - t0, 1)
    rec["rc"] = rc
    text = log.read_text(errors="replace")
    rec["tail"] = "\n".join(text.rstrip().splitlines()[-15:])
    rec["output"] = report.read_text(errors="replace").strip()
    if rc != 0:
        rec.setdefault("error", f"exit code {rc}")
        return rec
    if result.exists() and result.stat().st_mtime != before:
        copy = runs / f"{s.key}-{n}.json"
        shutil.copyfile(result, copy)
        try:
            doc = json.loads(result.read_text())
        except json.JSONDecodeError as exc:
            rec["error"] = f"{result.name} is not JSON: {exc}"
            return rec
        rec["metrics"] = doc.get("metrics") or []
        if not rec["metrics"]:
            rec["error"] = f"{result.name} has no metrics"
    else:
        rec["error"] = f"exit 0 but bench/results/{result.name} was not written"
    return rec


# -- aggregation --------------------------------------------------------------------------------
def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for r in runs:
        for m in r.get("metrics") or []:
            row = rows.setdefault(
                m["name"], {"name": m["name"], "unit": m.get("unit", ""), "values": [], "met": []}
            )
            row["goal"] = m.get("goal")
            row["values"].append(m.get("value"))
            if m.get("goal") is not None:
                row["met"].append(m.get("met"))
    out = []
    for row in rows.values():
        xs = [v for v in row["values"] if v is not None]
        row["min"] = min(xs) if xs else None
        row["median"] = statistics.median(xs) if xs else None
        row["max"] = max(xs) if xs else None
        row["verdict"] = verdict(row)
        out.append(row)
    return out


def verdict(row: dict[str, Any]) -> str:
    if row.get("goal") is None:
        return ""
    met = row["met"]
    missed = sum(1 for m in met if m is not True)
    if not met:
        return "not measured"
    if missed == 0:
        return "met"
    if missed == len(met):
        return "**missed in every run**" if len(met) > 1 else "**missed**"
    return f"**missed in {missed} of {len(met)} runs**"


def section_of(s: Script, runs: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    ok = [r for r in runs if not r.get("error")]
    return {
        "key": s.key,
        "title": s.title,
        "command": s.command,
        "runs": runs,
        "runs_ok": len(ok),
        "started": runs[0]["started"] if runs else now_iso(),
        "seconds": round(sum(r.get("seconds", 0.0) for r in runs), 1),
        "machine": info,
        "metrics": aggregate(runs),
        "output": next(
            (r["output"] for r in reversed(runs) if r.get("output") and not r.get("error")), ""
        ),
    }


# -- rendering ----------------------------------------------------------------------------------
def num(v: float | None) -> str:
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 1000 or float(v).is_integer():
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def with_unit(v: float | None, unit: str) -> str:
    text = num(v)
    if v is None or not unit:
        return text
    if unit == "x":
        return f"{text}×"
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def goal_text(goal: str | None) -> str:
    return "" if goal is None else goal.replace("<=", "≤").replace(">=", "≥")


def when(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def describe_machine(m: dict[str, Any]) -> str:
    pk = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items())
    phys = m.get("physical_cores")
    cores = f"{m.get('cores')} logical cores" + (f" ({phys} physical)" if phys else "")
    return (
        f"{m.get('cpu')}, {cores}, {m.get('ram_gib')} GiB RAM; {m.get('os')}, Linux "
        f"{m.get('kernel')} ({m.get('arch')}); Python {m.get('python')}, SQLite "
        f"{m.get('sqlite')}, PostgreSQL {m.get('postgresql') or '?'}; {pk}"
    )


def note_of(s: Script) -> str:
    path = NOTES / f"{s.key}.md"
    if path.exists():
        return path.read_text().strip()
    if s.script.exists():  # no note yet: the script's own docstring, first paragraph
        doc = ast.get_docstring(ast.parse(s.script.read_text())) or ""
        return doc.split("\n\n")[0].strip()
    return ""


def busy_note(sec: dict[str, Any]) -> str:
    """Other processes' CPU while the section measured, when it was enough to matter."""
    shares = [
        m["max"]
        for m in sec["metrics"]
        if m["name"].startswith("other processes' CPU") and m["max"] is not None
    ]
    if not shares or max(shares) < 10:
        return ""
    return f" Other processes used up to {max(shares):.0f} % of the machine meanwhile."


def missed_goals(data: dict[str, Any]) -> list[str]:
    lines = []
    for s in SCRIPTS:
        sec = data["sections"].get(s.key)
        if sec is None:
            lines.append(f"- {s.title}: not measured (`make bench ONLY={s.key}`).")
            continue
        failed = [r for r in sec["runs"] if r.get("error")]
        if failed:
            why = "; ".join(sorted({r["error"] for r in failed}))
            lines.append(
                f"- {s.title}: **failed in {len(failed)} of {len(sec['runs'])} runs** ({why})."
            )
        for m in sec["metrics"]:
            if m["verdict"] and m["verdict"] != "met":
                lines.append(
                    f"- {s.title}: {m['name']}: goal {goal_text(m['goal'])}, measured "
                    f"{with_unit(m['min'], m['unit'])} / {with_unit(m['median'], m['unit'])} / "
                    f"{with_unit(m['max'], m['unit'])} (min / median / max): {m['verdict']}."
                    + busy_note(sec)
                )
    return lines


def waited_text(waited: float) -> str:
    if waited >= WAIT_LIMIT - 1:
        return (
            f" after waiting {minutes(waited)} for a quiet machine in vain (others kept the "
            "CPUs busy: see each script's \"other processes' CPU\")"
        )
    return f" after waiting {minutes(waited)} for a quiet machine" if waited >= 1 else ""


def render(data: dict[str, Any]) -> str:
    inv, head = data["invocation"], data["machine"]
    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/run_all.py (`make bench`): edit bench/notes/<script>.md or the",
        "     run list in bench/run_all.py, not this file. -->",
        "",
        f"Last regenerated {when(inv['started'])} by `{inv['make']}` "
        f"(`{inv['command']}`), total run time {minutes(inv['seconds'])}"
        + waited_text(inv["waited"])
        + ".",
        (
            f"Sections rerun then: {', '.join(inv['keys'])}; the others keep the date they say."
            if inv.get("only")
            else "Every section below was rerun then."
        )
        + " Runs per script: "
        + ", ".join(f"{k} {v}" for k, v in inv.get("plan", {}).items())
        + (
            " (fewer than RUNS where a single run is long and already a large sample: each "
            "section says why)."
            if any(v < inv["runs"] for v in inv.get("plan", {}).values())
            else "."
        ),
        "",
        f"**Machine:** {describe_machine(head)}.",
        f"**Commit:** {head.get('commit')}"
        + (" with uncommitted changes to the service's code" if head.get("dirty") else "")
        + ".",
        "",
        "Tests never assert on time; speed lives here. Each script runs its exact command "
        "several times (interleaved with the other scripts); each table gives min / median / max "
        "over those runs, and a goal's verdict is *met* when every run met it, **missed** when "
        "every run missed it, and **missed in k of n runs** otherwise. Each script reports the "
        "CPU share other processes used while it measured. Raw per-run figures: "
        "`bench/results/runs/`, logs: `bench/results/logs/` (git-ignored); aggregates: "
        "`bench/results/benchmarks.json`.",
        "",
        "## Goals missed",
        "",
    ]
    missed = missed_goals(data)
    out += missed or ["None: every goal was met in every run, and every script ran."]
    out.append("")
    for s in SCRIPTS:
        sec = data["sections"].get(s.key)
        out += [f"## {s.title}", ""]
        if sec is None:
            out += [f"Not measured yet: `make bench ONLY={s.key}`.", "", f"`{s.command}`", ""]
            continue
        n, ok = len(sec["runs"]), sec["runs_ok"]
        per_run = statistics.median([r.get("seconds", 0.0) for r in sec["runs"]]) if n else 0
        line = (
            f"Measured {when(sec['started'])} at commit {sec['machine'].get('commit')}"
            + (" (uncommitted service changes)" if sec["machine"].get("dirty") else "")
            + f": {n} run{'s' if n != 1 else ''}"
            + (f", {n - ok} failed" if ok < n else "")
            + (f", {minutes(per_run)} each (median)." if n > 1 else f", {minutes(per_run)}.")
        )
        if sec.get("capped"):
            line += f" {sec['capped']}"
        if not same_machine(sec["machine"], head):
            line += f" Machine then: {describe_machine(sec['machine'])}."
        out += [line, "", f"`{sec['command']}`", ""]
        note = note_of(s)
        if sec["metrics"]:
            out += ["| figure | min | median | max | goal | verdict |", "|---|---|---|---|---|---|"]
            for m in sec["metrics"]:
                out.append(
                    f"| {m['name']} | {with_unit(m['min'], m['unit'])} | "
                    f"{with_unit(m['median'], m['unit'])} | {with_unit(m['max'], m['unit'])} | "
                    f"{goal_text(m['goal'])} | {m['verdict']} |"
                )
            out.append("")
        failed = [r for r in sec["runs"] if r.get("error")]
        for r in failed:
            out.append(f"- **Run {r['run']} failed:** {r['error']}.")
        if failed:
            out.append("")
            last = failed[-1]
            if tail := last.get("tail", "").strip():
                out += [f"Last lines of run {last['run']}'s log (`{last['log']}`):", ""]
                out += ["```text", tail.replace("```", "'''"), "```", ""]
        if note:
            out += [note, ""]
        if sec.get("output"):
            out += [
                "<details><summary>The script's own report (last successful run)</summary>",
                "",
                sec["output"],
                "",
                "</details>",
                "",
            ]
    for key, title in NOTE_ONLY:
        path = NOTES / f"{key}.md"
        if path.exists():
            out += [
                f"## {title}",
                "",
                "Kept by hand from the command it names (not rerun by `make bench`).",
                "",
            ]
            body = path.read_text().strip().splitlines()
            out += [("##" + line if line.startswith("#") else line) for line in body] + [""]
    return "\n".join(out).rstrip() + "\n"


# -- main ---------------------------------------------------------------------------------------
def load_data() -> dict[str, Any]:
    if DATA.exists():
        try:
            return dict(json.loads(DATA.read_text()))
        except json.JSONDecodeError:
            pass
    return {"sections": {}}


def save(data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(data, indent=2, default=str))
    DOC.write_text(render(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per script (RUNS)")
    ap.add_argument("--only", default="", help="comma-separated keys (ONLY); see --list")
    ap.add_argument("--skip", default="", help="comma-separated keys not to run (SKIP)")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    ap.add_argument("--uncapped", action="store_true", help="RUNS runs of every script")
    ap.add_argument("--render-only", action="store_true", help="rewrite BENCHMARKS.md only")
    ap.add_argument("--list", action="store_true", help="print the run list and exit")
    args = ap.parse_args()
    if args.list:
        for s in SCRIPTS:
            cap = f"  [at most {s.max_runs}: {s.why_capped}]" if s.max_runs else ""
            print(f"{s.key:18} {s.command}{cap}")
        return
    data = load_data()
    if args.render_only:
        if "invocation" not in data:
            raise SystemExit(f"{DATA.relative_to(ROOT)} has nothing to render yet")
        DOC.write_text(render(data))
        return
    keys = [k.strip() for k in args.only.split(",") if k.strip()] or [s.key for s in SCRIPTS]
    skip = [k.strip() for k in args.skip.split(",") if k.strip()]
    if unknown := [k for k in keys + skip if k not in BY_KEY]:
        raise SystemExit(f"unknown script(s) {', '.join(unknown)}; known: {', '.join(BY_KEY)}")
    chosen = [s for s in SCRIPTS if s.key in keys and s.key not in skip]
    plan = {
        s.key: args.runs if args.uncapped else min(args.runs, s.max_runs or args.runs)
        for s in chosen
    }

    t0 = time.monotonic()
    started = now_iso()
    waited = 0.0 if args.no_wait else wait_quiet(WAIT_LIMIT)
    if any(s.seeds_template for s in chosen):
        # made once, outside the timed runs (a throw-away stack runs one real analysis)
        try:
            template_row(DATASETS / "running-example.xes")
        except Exception as exc:  # each script tries again and fails visibly in its section
            print(f"[run_all] template row: {type(exc).__name__}: {exc}", file=sys.stderr)
    info = machine()
    make = (
        f"make bench RUNS={args.runs}"
        + (f" ONLY={args.only}" if args.only else "")
        + (f" SKIP={args.skip}" if args.skip else "")
    )
    cmd = " ".join([SHOWN_PY, "bench/run_all.py", *map(shlex.quote, sys.argv[1:])])
    data["machine"] = info
    data["invocation"] = {
        "started": started,
        "make": make,
        "command": cmd,
        "runs": args.runs,
        "only": bool(args.only or args.skip),
        "keys": [s.key for s in chosen],
        "plan": plan,
        "waited": round(waited, 1),
        "seconds": 0.0,
    }
    runs: dict[str, list[dict[str, Any]]] = {s.key: [] for s in chosen}
    for n in range(1, max(plan.values(), default=0) + 1):
        for s in chosen:
            if n > plan[s.key]:
                continue
            print(f"[run_all] {s.key} run {n}/{plan[s.key]}: {s.command}", file=sys.stderr)
            rec = run_once(s, n)
            runs[s.key].append(rec)
            print(
                f"[run_all] {s.key} run {n}: {rec.get('error') or 'ok'} in {rec['seconds']} s",
                file=sys.stderr,
            )
            sec = section_of(s, runs[s.key], info)
            if plan[s.key] < args.runs:
                sec["capped"] = f"At most {s.max_runs} run{'s' if s.max_runs != 1 else ''} "
                sec["capped"] += f"with RUNS={args.runs}: {s.why_capped}"
            data["sections"][s.key] = sec
            data["invocation"]["seconds"] = round(time.monotonic() - t0, 1)
            save(data)
    data["invocation"]["seconds"] = round(time.monotonic() - t0, 1)
    save(data)
    missed = missed_goals(data)
    print(
        f"[run_all] BENCHMARKS.md regenerated in {minutes(data['invocation']['seconds'])}; "
        + (f"{len(missed)} goal(s) missed or scripts failed" if missed else "every goal met"),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
