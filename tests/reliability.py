"""`make reliability`: run the fault and security suites and write RELIABILITY.md from what ran.

As a pytest plugin (`-p tests.reliability --reliability-log FILE`) it appends one JSON line per
`fault`/`security` test to FILE: its docstring (what was tried), outcome, how many cases it tried
(`record_property("tried", n)`), what it observed and how long it took. Works under xdist: the
docstring and markers travel in the report's user_properties.

As a script (`python -m tests.reliability FILE RELIABILITY.md --command "..."`) it renders those
lines, one or more runs of the suites, into the document.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

KINDS = ("fault", "security")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-log", default=None, help="append fault/security results here")
    parser.addoption("--reliability-run", default="1", help="the run number in the log")


def _kind(item: pytest.Item) -> str | None:
    return next((k for k in KINDS if item.get_closest_marker(k)), None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    kind = _kind(item)
    if kind is None:
        return
    doc = inspect.getdoc(getattr(item, "obj", None)) or ""
    item.user_properties.append(("reliability.kind", kind))
    item.user_properties.append(("reliability.doc", doc))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _CONFIG.get("config")
    if config is None or not config.getoption("--reliability-log"):
        return
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller gets the same report and writes it once
    props = dict(report.user_properties)
    if "reliability.kind" not in props:
        return
    # one line per test: its call, or the phase that failed or skipped it before or after
    if report.when == "call" or (report.when != "call" and report.outcome != "passed"):
        line = {
            "run": config.getoption("--reliability-run"),
            "test": report.nodeid.split("@")[0],
            "kind": props["reliability.kind"],
            "doc": props.get("reliability.doc", ""),
            "when": report.when,
            "outcome": report.outcome,
            "tried": int(props.get("tried", 1) or 1),
            "observed": props.get("observed"),
            "seconds": round(report.duration, 2),
            "error": _short_error(report) if report.outcome != "passed" else None,
        }
        path = Path(config.getoption("--reliability-log"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(json.dumps(line) + "\n")


_CONFIG: dict[str, pytest.Config] = {}


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG["config"] = config


def _short_error(report: pytest.TestReport) -> str:
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    text = str(report.longrepr or "")
    lines = [ln for ln in text.splitlines() if ln.startswith("E ")]
    return " ".join(ln[1:].strip() for ln in lines[:3])[:400] or text[-400:]


# -- the document -------------------------------------------------------------------------------
AREAS = {
    "fault": "Faults injected into the running service",
    "security": "Bad input, tenancy and security",
}

LIMITS = """\
What these suites do not show (read them before relying on the figures):
- Faults are injected one at a time, on one machine, with SQLite stores; two simultaneous
  faults (e.g. the API and the Prefect server killed together) are not tried.
- A full or read-only disk is tried for the results directory and the uploads directory; the
  app store's own disk (SQLite) and Prefect's database filling up are not.
- The fuzzing is as good as the OpenAPI document: behaviour it does not describe (the `/ui`
  pages, the event stream's body) is covered by the security matrix and the UI tests instead.
- Network faults between the parts (latency, partitions) are not injected; every part talks to
  the others over loopback here.
"""


def _machine() -> str:
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}"
    )


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(lines: list[dict[str, Any]], command: str) -> str:
    runs = sorted({ln["run"] for ln in lines}, key=lambda r: int(r))
    by_test: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ln in lines:
        by_test[ln["test"]].append(ln)
    total_cases = sum(ln["tried"] for ln in lines)
    passed = [t for t, rs in by_test.items() if all(r["outcome"] == "passed" for r in rs)]
    failed = {t: rs for t, rs in by_test.items() if any(r["outcome"] == "failed" for r in rs)}
    skipped = {
        t: rs
        for t, rs in by_test.items()
        if t not in failed and any(r["outcome"] == "skipped" for r in rs)
    }
    out = [
        "# Reliability",
        "",
        "Generated by `make reliability` (tests/reliability.py) from the fault and security "
        "suites; rerun it to check every line below. Nothing here is written by hand except the "
        "tests' own descriptions of what they try.",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; commit `{_commit()}`",
        f"- Machine: {_machine()}",
        f"- Command: `{command}`",
        f"- Runs of the suites: {len(runs)}; tests: {len(by_test)}; cases tried in all: "
        f"{total_cases:,}",
        f"- Result: **{len(passed)} passed in every run, {len(failed)} failed in some run, "
        f"{len(skipped)} skipped**",
        "",
        "## Where it falls short",
        "",
    ]
    if not failed and not skipped:
        out.append("Every test passed in every run.")
    for test, rs in {**failed, **skipped}.items():
        bad = [r for r in rs if r["outcome"] != "passed"]
        out.append(
            f"- **{test}**: {bad[0]['outcome']} in {len(bad)} of {len(rs)} runs: "
            f"{_cell(bad[0]['error'] or '')}"
        )
    out += ["", LIMITS]
    for kind, title in AREAS.items():
        tests = {t: rs for t, rs in by_test.items() if rs[0]["kind"] == kind}
        if not tests:
            continue
        cases = sum(r["tried"] for rs in tests.values() for r in rs)
        out += [
            f"## {title}",
            "",
            f"{len(tests)} tests, {cases:,} cases in all.",
            "",
            "| test | what was tried | cases × runs | result | observed (last run) |",
            "|---|---|---|---|---|",
        ]
        for test, rs in sorted(tests.items()):
            ok = sum(r["outcome"] == "passed" for r in rs)
            result = f"passed {ok}/{len(rs)}" if ok == len(rs) else f"**{ok}/{len(rs)} passed**"
            observed = next((r["observed"] for r in reversed(rs) if r["observed"]), "")
            out.append(
                f"| `{test.split('::')[-1]}` ({test.split('::')[0].removeprefix('tests/')}) "
                f"| {_cell(rs[-1]['doc']) or '—'} | {rs[-1]['tried']:,} × {len(rs)} "
                f"| {result} | {_cell(observed or '')} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("log", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--command", default="make reliability")
    args = ap.parse_args(argv)
    lines = [json.loads(ln) for ln in args.log.read_text().splitlines() if ln.strip()]
    if not lines:
        print(f"no results in {args.log}", file=sys.stderr)
        return 1
    args.out.write_text(render(lines, args.command) + "\n")
    print(f"wrote {args.out} ({len(lines)} results)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
