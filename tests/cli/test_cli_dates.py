"""`pmops analyze` on an ambiguous date column: exit 2 with one line naming the column; the
--timestamp-format option (or the timestampFormat parameter) makes it run. In process (the
command's own function), so no interpreter start-up per call."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pmops.cli.commands import analyze

AMBIGUOUS = (
    "Fall;Aktivität;Zeitstempel\n"
    "c1;A;07.10.2011 10:15:00\n"
    "c1;B;07.10.2011 10:17:00\n"
    "c1;C;11.10.2011 09:00:00\n"
    "c2;A;03.11.2011 08:00:00\n"
    "c2;C;04.12.2011 12:30:00\n"
)
QUICK = '{"analysisType": "quick", "outputOptions": {"generateReports": false}}'


def run(tmp_path: Path, params: str | None = QUICK, **options: str | None) -> int:
    path = tmp_path / "ambiguous.csv"
    path.write_text(AMBIGUOUS, encoding="utf-8")
    args = argparse.Namespace(
        path=str(path),
        out=str(tmp_path / "out"),
        type="ProcessMiningAnalysis",
        params=params,
        name=None,
        case_column=None,
        activity_column=None,
        timestamp_column=None,
        resource_column=None,
        timestamp_format=options.get("timestamp_format"),
        timezone=options.get("timezone"),
        quiet=True,
    )
    return analyze(args)


def test_ambiguous_dates_exit_2_then_run_with_a_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path) == 2
    err = capsys.readouterr().err
    assert "'Zeitstempel'" in err and "timestampFormat" in err
    assert run(tmp_path, timezone="Mars/Olympus") == 2
    assert "timezone" in capsys.readouterr().err
    assert run(tmp_path, '{"timezone": "Mars/Olympus"}') == 2
    assert "parameters.timezone" in capsys.readouterr().err
    assert run(tmp_path, timestamp_format="%d.%m.%Y %H:%M:%S") == 0
    assert (tmp_path / "out" / "results.json").exists()
