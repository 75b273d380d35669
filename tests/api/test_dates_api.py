"""Issue #14/#16 input rules through the API, in process: an ambiguous timestamp column is a 422
naming it and asking for timestampFormat, which (with timezone) is accepted at upload and stored
with the dataset; bad values of the new parameters, a far endDate and an XES with an empty
<event/> are 4xx problems, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.eventlog import ColumnMapping
from analysis.runs import ProcessMiningRun
from pmops.service.lifecycle import dataset_source
from pmops.service.storage import storage_for
from tests.api.conftest import Client, Served
from tests.service_stack import assert_problem

# receipt's first events, written day-first with every day and month <= 12
AMBIGUOUS = (
    "Fall;Aktivität;Zeitstempel\n"
    "case-1;Confirmation of receipt;07.10.2011 10:15:00\n"
    "case-1;T02 Check confirmation of receipt;07.10.2011 10:17:00\n"
    "case-1;T04 Determine confirmation of receipt;11.10.2011 09:00:00\n"
    "case-2;Confirmation of receipt;03.11.2011 08:00:00\n"
    "case-2;T06 Determine necessity of stop advice;04.12.2011 12:30:00\n"
)


def _upload(api: Client, name: str, content: bytes, **fields: str):
    return api.post("/datasets", files={"file": (name, content)}, data=fields or None)


def test_ambiguous_column_is_422_naming_it(api: Client) -> None:
    r = _upload(api, "ambiguous.csv", AMBIGUOUS.encode())
    problem = assert_problem(r, 422, "timestampFormat")
    assert "'Zeitstempel'" in problem["detail"] and "timestampFormat" in problem["detail"]
    assert "%d.%m.%Y %H:%M:%S" in problem["detail"]


def test_timestamp_format_and_timezone_at_upload_are_stored(
    served: Served, api: Client, tmp_path: Path
) -> None:
    r = _upload(
        api,
        "ambiguous.csv",
        AMBIGUOUS.encode(),
        timestampFormat="%d.%m.%Y %H:%M:%S",
        timezone="Europe/Berlin",
    )
    assert r.status_code == 201, r.text
    dataset = r.json()
    assert dataset["events"] == 5 and dataset["cases"] == 2
    # day first, Berlin summer time (UTC+2) in October, winter (UTC+1) in December
    assert dataset["timeRange"] == {"start": "2011-10-07T08:15:00Z", "end": "2011-12-04T11:30:00Z"}
    mapping = dataset["columnMapping"]
    assert mapping["timestampColumn"] == "Zeitstempel" and mapping["caseColumn"] == "Fall"
    assert (mapping["timestampFormat"], mapping["timezone"]) == (
        "%d.%m.%Y %H:%M:%S",
        "Europe/Berlin",
    )
    # what later analyses of the dataset read it with (pmops.service.lifecycle.dataset_source)
    stored = api.get(f"/datasets/{dataset['datasetId']}").json()["columnMapping"]
    again = ColumnMapping.from_dict(stored)
    assert (again.timestamp_format, again.timezone) == ("%d.%m.%Y %H:%M:%S", "Europe/Berlin")
    # the run of an operation on the dataset reads it so, with no parameter repeating it
    row = {"dataset_id": dataset["datasetId"], "request": {"parameters": {}}}
    source, mapping = dataset_source(served.engine, row)
    assert mapping is not None and mapping.timestamp_format == "%d.%m.%Y %H:%M:%S"
    local = storage_for(served.settings).local_path(source)  # a key; file:// by default
    assert local is not None and not source.startswith("/")
    run = ProcessMiningRun(local, tmp_path / "out", {"analysisType": "quick"}, mapping)
    run.sink = None
    run.run_load()
    assert run.load is not None and run.load.to_dict()["timeRange"] == dataset["timeRange"]


def test_bad_upload_settings_name_the_field(api: Client) -> None:
    content = AMBIGUOUS.encode()
    assert_problem(_upload(api, "a.csv", content, timezone="Mars/Olympus"), 422, "timezone")
    assert_problem(
        _upload(api, "a.csv", content, timestampFormat="day first"), 422, "timestampFormat"
    )


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"timezone": "Nowhere/Land"}, "parameters.timezone"),
        ({"timezone": 9}, "parameters.timezone"),
        ({"timestampFormat": "dd.mm.yyyy"}, "parameters.timestampFormat"),
        ({"removeDuplicates": "yes"}, "parameters.removeDuplicates"),
        ({"reportLanguage": "fr"}, "parameters.reportLanguage"),
        ({"reportLanguage": "JA"}, "parameters.reportLanguage"),
        ({"timeWindow": {"endDate": "9999-12-31"}}, "parameters.timeWindow.endDate"),
        (
            {"timeWindow": {"startDate": "0001-01-01T00:00:00+05:00"}},
            "parameters.timeWindow.startDate",
        ),
    ],
)
def test_bad_new_parameters_are_422(api: Client, receipt_dataset, parameters, field) -> None:
    body = {
        "operationType": "ProcessMiningAnalysis",
        "operationName": "dates",
        "parameters": {"datasetId": receipt_dataset["datasetId"], **parameters},
    }
    assert_problem(api.post("/async/operation", json=body), 422, field)


def test_enrichment_accepts_the_new_parameters(api: Client, receipt_dataset) -> None:
    body = {
        "operationType": "DataEnrichment",
        "operationName": "dates",
        "parameters": {
            "datasetId": receipt_dataset["datasetId"],
            "cleaningRules": ["remove_duplicates"],
            "timestampFormat": "%Y-%m-%dT%H:%M:%S.%f%z",
            "timezone": "Asia/Tokyo",
        },
    }
    r = api.post("/async/operation", json=body)
    assert r.status_code in (200, 201, 202), r.text
    body["parameters"]["timezone"] = "Tokyo"
    assert_problem(api.post("/async/operation", json=body), 422, "parameters.timezone")


XES = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0">
<trace><string key="concept:name" value="c1"/>
{events}
</trace>
</log>
"""
GOOD_EVENT = (
    '<event><string key="concept:name" value="A"/>'
    '<date key="time:timestamp" value="2020-01-01T10:00:00.000+00:00"/></event>'
)


def test_xes_with_an_empty_event_is_never_a_500(api: Client) -> None:
    only_empty = XES.format(events="<event/>").encode()
    problem = assert_problem(_upload(api, "empty-event.xes", only_empty), 422, "file")
    assert "empty (<event/>)" in problem["detail"]
    # beside a good event, the empty one is a record with no activity and no timestamp
    mixed = XES.format(events=GOOD_EVENT + "\n<event/>").encode()
    r = _upload(api, "one-empty-event.xes", mixed)
    assert r.status_code == 201, r.text
    assert r.json()["events"] == 1


def test_csv_export_of_a_real_log_with_japanese_headers(api: Client, datasets: Path) -> None:
    text = (datasets / "sepsis.csv").read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    names = {
        "Case ID": "ケースID",
        "Activity": "アクティビティ",
        "Complete Timestamp": "タイムスタンプ",
    }
    header = ";".join(names.get(h, h) for h in header.split(";"))
    r = _upload(api, "sepsis-ja.csv", (header + "\n" + rest).encode())
    assert r.status_code == 201, r.text
    dataset = r.json()
    assert (dataset["events"], dataset["cases"]) == (15_214, 1_050)
    assert dataset["columnMapping"]["caseColumn"] == "ケースID"
