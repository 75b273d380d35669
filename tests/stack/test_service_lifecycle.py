"""The service end to end: upload, start, poll to Completed, results and artifacts, the other
operation types, and the seed's own client pattern. Runs against a real `pmops up`."""

from __future__ import annotations

import io
import re
import time
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
import httpx
import pytest

from analysis.phases import PHASES
from tests.service_stack import TERMINAL, assert_problem, eventually

pytestmark = pytest.mark.xdist_group("stack")

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
SIZE = re.compile(r"^\d+(\.\d+)? (B|KB|MB|GB|TB)$")
RANGE = re.compile(r"^\d+-\d+ (seconds|minutes|hours)$")
ANALYSIS_PHASES = list(PHASES["ProcessMiningAnalysis"])


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_health_needs_no_auth(stack) -> None:
    r = httpx.get(f"{stack.url}/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert set(r.json()["checks"]) == {"api", "store", "prefect"}


def test_upload_reports_the_log(api, receipt_dataset) -> None:
    ds = receipt_dataset
    assert (ds["cases"], ds["events"], ds["activities"]) == (1434, 8577, 27)
    assert ISO_Z.match(ds["timeRange"]["start"]) and ISO_Z.match(ds["timeRange"]["end"])
    assert ds["url"] == f"{api.base}/datasets/{ds['datasetId']}"
    assert api.get(ds["url"]).json()["datasetId"] == ds["datasetId"]
    listed = api.get("/datasets").json()
    assert ds["datasetId"] in [d["datasetId"] for d in listed["datasets"]]


def test_full_lifecycle(api, stack, receipt_dataset) -> None:
    r = api.post(
        "/async/operation",
        json={
            "operationType": "ProcessMiningAnalysis",
            "operationName": "lifecycle",
            "operationDescription": "receipt end to end",
            "priority": "High",
            "timeout": 900,
            "parameters": {"datasetId": receipt_dataset["datasetId"], "analysisType": "standard"},
        },
    )
    assert r.status_code == 202, r.text
    body = r.json()
    op_id = body["operationId"]
    assert re.fullmatch(r"op-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", op_id)
    url = f"{api.base}/async/operation/{op_id}"
    assert body["operationType"] == "ProcessMiningAnalysis"
    assert body["operationName"] == "lifecycle"
    assert body["status"] == "Initiated"
    assert body["priority"] == "High"
    assert body["trackingUrl"] == url
    assert RANGE.match(body["estimatedDuration"]), body["estimatedDuration"]
    for key in ("estimatedCompletion", "dateCreated", "timeoutAt"):
        assert ISO_Z.match(body[key]), (key, body[key])
    assert ts(body["timeoutAt"]) - ts(body["dateCreated"]) == timedelta(seconds=900)
    assert ts(body["estimatedCompletion"]) >= ts(body["dateCreated"])
    assert body["webhooksRegistered"] == 0
    res = body["resourcesAllocated"]
    assert isinstance(res["cpuUnits"], int) and res["cpuUnits"] >= 1
    assert isinstance(res["memoryGB"], int | float) and res["memoryGB"] > 0
    assert re.fullmatch(r"\$\d+\.\d+", res["estimatedCost"])
    assert r.headers["Location"] == url and r.headers["Operation-Location"] == url
    assert int(r.headers["Retry-After"]) >= 1

    # poll closely: every snapshot must be consistent with the ones before it
    seen: list[dict[str, Any]] = []
    headers: list[httpx.Headers] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        resp = api.get(url)
        assert resp.status_code == 200
        seen.append(resp.json())
        headers.append(resp.headers)
        if seen[-1]["status"] in TERMINAL:
            break
        time.sleep(0.1)
    final = seen[-1]
    assert final["status"] == "Completed", final

    order = ["Initiated", "Running", "Completed"]
    statuses = [s["status"] for s in seen]
    assert statuses == sorted(statuses, key=order.index), statuses
    assert "Running" in statuses
    percentages = [s["progress"]["percentage"] for s in seen]
    assert percentages == sorted(percentages), percentages
    processed = [s["execution"]["processedRecords"] for s in seen]
    assert processed == sorted(processed), processed
    for s in seen:
        pending = {p["phaseName"] for p in s["phases"] if p["status"] == "Pending"}
        assert s["progress"]["currentPhase"] not in pending, s["progress"]
    assert final["progress"]["percentage"] == 100
    for s, h in zip(seen, headers, strict=True):
        names = [p["phaseName"] for p in s["phases"]]
        assert names == ANALYSIS_PHASES
        done = [p["status"] == "Completed" for p in s["phases"]]
        # phases complete in order: the completed ones are always a prefix
        assert done == sorted(done, reverse=True), [p["status"] for p in s["phases"]]
        assert sum(p["status"] == "Running" for p in s["phases"]) <= 1
        assert s["progress"]["phasesCompleted"] == sum(done)
        assert s["progress"]["totalPhases"] == 4
        if s["status"] in TERMINAL:
            assert "Retry-After" not in h
        else:
            assert int(h["Retry-After"]) >= 1
    completed_counts = [s["progress"]["phasesCompleted"] for s in seen]
    assert completed_counts == sorted(completed_counts)
    ends = [ts(p["endTime"]) for p in final["phases"]]
    starts = [ts(p["startTime"]) for p in final["phases"]]
    assert ends == sorted(ends) and starts == sorted(starts)
    assert all(s <= e for s, e in zip(starts, ends, strict=True))

    # a snapshot taken while running shows the running phase and the process's resource use
    running = [
        s
        for s in seen
        if s["status"] == "Running"
        and s["execution"]["resourceUsage"]
        and any(p["status"] == "Running" for p in s["phases"])
    ]
    assert running, "no Running snapshot with resource usage was observed"
    live = running[-1]
    phase = next(p for p in live["phases"] if p["status"] == "Running")
    assert 0 <= phase["progress"] <= 100 and isinstance(phase["currentActivity"], str)
    assert live["progress"]["currentPhase"] == phase["phaseName"]
    assert live["progress"]["estimatedRemaining"] is None or RANGE.match(
        live["progress"]["estimatedRemaining"]
    )
    for s in seen:
        pending = [p for p in s["phases"] if p["status"] == "Pending"]
        if s["status"] in TERMINAL:
            assert all("estimatedStartTime" not in p for p in pending)
            continue
        for p in pending:
            assert ISO_Z.match(p["estimatedStartTime"]) and RANGE.match(p["estimatedDuration"])
        starts = [p["estimatedStartTime"] for p in pending]
        assert starts == sorted(starts)

    # the final status, field by field (contract §2)
    prog = final["progress"]
    assert prog["phasesCompleted"] == 4 and prog["currentPhase"] is None
    assert ISO_Z.match(prog["startTime"]) and ISO_Z.match(prog["estimatedCompletion"])
    assert re.search(r"\d+(\.\d+)? (seconds|minutes|hours)", prog["elapsedTime"])
    assert ts(prog["startTime"]) >= ts(final["dateCreated"])
    ex = final["execution"]
    assert ex["executionId"] and ex["workerNode"]
    host, _, pid = ex["workerNode"].rpartition(":")
    assert host and pid.isdigit()
    usage = ex["resourceUsage"]
    assert isinstance(usage["cpuUsage"], int | float) and usage["cpuUsage"] >= 0
    for key in ("memoryUsage", "diskUsage", "networkIO"):
        assert SIZE.match(usage[key]), (key, usage[key])
    assert ex["totalRecords"] == 8577 and ex["processedRecords"] == 8577
    assert re.fullmatch(r"\d+ records/minute", ex["processingRate"])
    assert set(final["callbacks"]) == {
        "progressCallbacksSent",
        "lastProgressCallback",
        "callbacksSuccessful",
        "callbacksFailed",
    }
    assert final["priority"] == "High"
    assert final["dateCreated"] == body["dateCreated"] and final["timeoutAt"] == body["timeoutAt"]
    for p in final["phases"]:
        assert p["status"] == "Completed"
        assert ISO_Z.match(p["startTime"]) and ISO_Z.match(p["endTime"]) and p["duration"]
        assert isinstance(p["recordsProcessed"], int)
    load = final["phases"][0]
    assert load["recordsProcessed"] == 8577
    assert load["validationResults"] == {
        "validRecords": 8577,
        "errorRecords": 0,
        "dataQualityScore": 100.0,
    }

    # it really ran as a Prefect flow run, and the UI link points at it
    flow_run_id = final["prefect"]["flowRunId"]
    assert final["prefect"]["uiUrl"] == (
        f"http://127.0.0.1:{stack.prefect_port}/runs/flow-run/{flow_run_id}"
    )
    # (the store is written before the flow returns its state to Prefect: give it a moment)
    assert eventually(lambda: stack.flow_run(flow_run_id)["state_type"] == "COMPLETED", 60)
    run = stack.flow_run(flow_run_id)
    assert f"operation:{op_id}" in run["tags"]

    # and the list shows it as completed
    listed = api.get("/async/operations", params={"status": "Completed"}).json()
    item = next(o for o in listed["operations"] if o["operationId"] == op_id)
    assert item["progress"] == 100 and item["status"] == "Completed"
    assert item["recordsProcessed"] == 8577 and item["endTime"] and item["duration"]


def duration_seconds(text: str) -> float:
    """'8.7 seconds', '1 minute 5 seconds', '2 hours 3 minutes' as seconds (seconds_text)."""
    units = {"hour": 3600.0, "minute": 60.0, "second": 1.0}
    found = re.findall(r"(\d+(?:\.\d+)?) (hour|minute|second)s?", text)
    assert found, text
    return sum(float(n) * units[u] for n, u in found)


def test_status_while_running_follows_the_seed(api, datasets: Path) -> None:
    """A comprehensive analysis of a real log (helpdesk), polled closely from start to end:
    processedRecords is a running total that never goes back and ends at the records analysed,
    currentPhase never names a Pending phase, the Machine Learning phase shows its scikit-learn
    models while it trains them, and totalDuration is completion - start."""
    dataset = api.upload(datasets / "helpdesk.xes.gz")
    op = api.start(
        dataset["datasetId"], "seed status", parameters={"analysisType": "comprehensive"}
    )
    op_id = op["operationId"]
    seen: list[dict[str, Any]] = []
    final = api.wait(op_id, deadline=900, every=0.05, seen=seen)
    assert final["status"] == "Completed", final

    processed = [s["execution"]["processedRecords"] for s in seen]
    assert processed == sorted(processed), processed
    for s in seen:
        ex = s["execution"]
        assert isinstance(ex["processedRecords"], int)
        assert 0 <= ex["processedRecords"] <= max(ex["totalRecords"], 0)
        pending = {p["phaseName"] for p in s["phases"] if p["status"] == "Pending"}
        assert s["progress"]["currentPhase"] not in pending, s["progress"]
        running = [p["phaseName"] for p in s["phases"] if p["status"] == "Running"]
        if running:
            assert s["progress"]["currentPhase"] == running[0]
            if running[0] != ANALYSIS_PHASES[0]:
                # past loading, the total counts the phases done so far: not 0 (issue #13)
                assert ex["processedRecords"] > 0, s
    doc = api.results(op_id).json()
    analysed = doc["summary"]["recordsAnalyzed"]
    assert analysed > 0 and final["execution"]["processedRecords"] == analysed

    # the Machine Learning phase, each time it was seen running: its models and their training
    ml = [
        p
        for s in seen
        for p in s["phases"]
        if p["phaseName"] == "Machine Learning Analysis" and p["status"] == "Running"
    ]
    assert ml, "the Machine Learning phase was never seen running"
    for p in ml:
        assert isinstance(p["modelsTraining"], int) and isinstance(p["modelsCompleted"], int)
        # anomaly detection, cycle time and next activity: three scikit-learn models
        assert p["modelsTraining"] == 3 and 0 <= p["modelsCompleted"] <= 3
    trained = [p["modelsCompleted"] for p in ml]
    assert trained == sorted(trained)
    assert all("modelsTraining" not in p for p in final["phases"])
    detailed = api.results(op_id, format="detailed").json()
    assert detailed["phaseResults"][2]["results"]["modelsTrained"] == 3

    # totalDuration: completion - start of the operation (the seed's), not the phases' sum
    start, end = ts(final["progress"]["startTime"]), ts(doc["completionTime"])
    listed = api.get("/async/operations", params={"status": "Completed"}).json()
    item = next(o for o in listed["operations"] if o["operationId"] == op_id)
    assert (
        item["endTime"] == doc["completionTime"]
        and item["startTime"] == final["progress"]["startTime"]
    )
    assert item["recordsProcessed"] == analysed and item["currentPhase"] is None
    # both times are shown to the second; totalDuration to 0.1 s below 10 s, else to the second
    assert abs(duration_seconds(doc["totalDuration"]) - (end - start).total_seconds()) <= 1.5
    assert (
        abs(duration_seconds(final["progress"]["elapsedTime"]) - (end - start).total_seconds())
        <= 1.5
    )


def test_results_summary(api, completed_analysis) -> None:
    op_id = completed_analysis["operationId"]
    r = api.results(op_id)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["operationId"] == op_id and doc["status"] == "Completed"
    assert doc["success"] is True and doc["operationType"] == "ProcessMiningAnalysis"
    assert ISO_Z.match(doc["completionTime"]) and doc["totalDuration"]
    assert {
        "recordsAnalyzed",
        "processVariants",
        "anomaliesDetected",
        "modelsGenerated",
        "reportsCreated",
        "dataQualityScore",
        "overallConfidenceScore",
    } <= set(doc["summary"])
    assert doc["summary"]["recordsAnalyzed"] == 8577
    assert doc["summary"]["processVariants"] == 116
    assert [p["phaseName"] for p in doc["phaseResults"]] == ANALYSIS_PHASES
    load, discovery, ml, _ = (p["results"] for p in doc["phaseResults"])
    assert {"recordsLoaded", "validRecords", "dataQualityScore", "validationErrors"} <= set(load)
    assert set(discovery["processModel"]) == {"activities", "transitions", "variants", "complexity"}
    assert set(discovery["performanceMetrics"]) == {
        "averageCycleTime",
        "medianCycleTime",
        "bottleneckActivities",
        "efficiency",
    }
    assert set(ml["anomalies"]) <= {
        "detected",
        "highSeverity",
        "mediumSeverity",
        "lowSeverity",
        "falsePositiveRate",
    }
    assert {"cycleTimePrediction", "pathPrediction"} <= set(ml["predictions"])
    assert set(ml["patterns"]) == {"frequentPatterns", "rarePatterns", "criticalPaths"}
    perf = doc["performance"]
    assert {"totalExecutionTime", "resourceUtilization", "throughput", "efficiency"} <= set(perf)
    assert {"averageCpuUsage", "peakMemoryUsage", "totalCpuHours", "totalCost"} <= set(
        perf["resourceUtilization"]
    )
    for rec in doc["recommendations"]:
        assert {"category", "priority", "recommendation", "expectedImprovement"} <= set(rec)
    formats = {a["format"] for a in doc["artifacts"]}
    assert {"PDF", "SVG"} <= formats, formats
    for a in doc["artifacts"]:
        assert {"name", "type", "format", "size", "downloadUrl", "description"} <= set(a)
        assert "path" not in a
        assert a["type"] in {"Report", "Visualization", "Dataset", "Model"}
        # absolute and signed (pmops.service.results)
        assert a["downloadUrl"].startswith(
            f"{api.stack.url.rstrip('/')}{api.base}/async/operation/{op_id}/artifacts/"
        )
        assert "expires=" in a["downloadUrl"] and "signature=" in a["downloadUrl"]


def test_results_detailed_phase_and_no_artifacts(api, completed_analysis) -> None:
    op_id = completed_analysis["operationId"]
    summary = api.results(op_id).json()
    detailed = api.results(op_id, format="detailed").json()
    assert detailed["summary"] == summary["summary"]
    # detailed keeps every figure of every phase; summary only the seed's
    for s, d in zip(summary["phaseResults"], detailed["phaseResults"], strict=True):
        assert set(s["results"]) <= set(d["results"])
        assert d["startTime"] and d["endTime"]
    assert len(str(detailed)) > len(str(summary))

    bare = api.results(op_id, includeArtifacts="false").json()
    assert "artifacts" not in bare and bare["summary"] == summary["summary"]

    one = api.results(op_id, phase="Process Discovery", format="detailed").json()
    assert [p["phaseName"] for p in one["phaseResults"]] == ["Process Discovery"]
    assert one["phaseResults"][0]["results"]["processModel"]["activities"] == 27

    assert_problem(api.results(op_id, phase="No Such Phase"), 400, "phase")
    assert_problem(api.results(op_id, format="xml"), 400, "format")


def test_results_download_zip(api, completed_analysis) -> None:
    op_id = completed_analysis["operationId"]
    r = api.results(op_id, format="download")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert f'filename="{op_id}.zip"' in r.headers["content-disposition"]
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    listed = [
        a["downloadUrl"].split("?")[0].rsplit("/", 1)[1]
        for a in api.results(op_id).json()["artifacts"]
    ]
    assert "results.json" in names
    assert set(listed) <= set(names)


def test_artifacts_download(api, completed_analysis) -> None:
    op_id = completed_analysis["operationId"]
    artifacts = api.results(op_id).json()["artifacts"]
    for a in artifacts:
        r = api.get(a["downloadUrl"])
        assert r.status_code == 200, (a, r.text)
        assert len(r.content) > 0
        if a["format"] == "PDF":
            assert r.content.startswith(b"%PDF")
            assert r.headers["content-type"] == "application/pdf"
        elif a["format"] == "SVG":
            root = SafeET.fromstring(r.content)
            assert root.tag.endswith("svg")
            assert r.headers["content-type"].startswith("image/svg+xml")
    # the same file is not reachable by another operation's id
    other = api.get(
        artifacts[0]["downloadUrl"]
        .split("?")[0]
        .replace(op_id, "op-" + "0" * 8 + "-0000-0000-0000-" + "0" * 12)
    )
    assert_problem(other, 404)


def test_artifact_lookups_outside_the_list_are_404(api, completed_analysis) -> None:
    base = f"{api.base}/async/operation/{completed_analysis['operationId']}/artifacts"
    for name in (
        "no-such-file.pdf",
        "results.json",
        "..%2Fresults.json",
        "%2E%2E%2Fresults.json",
        "..%2F..%2F..%2Fpmops.db",
        "%2Fetc%2Fpasswd",
    ):
        r = api.http.get(httpx.URL(api.stack.url + base + "/" + name))
        assert_problem(r, 404)


def test_seed_client_pattern(stack, api, receipt_dataset) -> None:
    """The seed's Python client: POST (with its callbacks), poll trackingUrl honouring
    Retry-After, then GET the results."""
    headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"}
    base = f"{stack.url}/api/{stack.tenant}/{stack.project}"
    payload = {
        "operationType": "ProcessMiningAnalysis",
        "operationName": "seed client",
        "priority": "Normal",
        "parameters": {"datasetId": receipt_dataset["datasetId"], "analysisType": "quick"},
        "timeout": 3600,
        "callbacks": {
            "onProgress": "https://your-app.com/webhooks/progress",
            "onCompletion": "https://your-app.com/webhooks/completion",
            "onError": "https://your-app.com/webhooks/error",
        },
    }
    with httpx.Client(headers=headers, timeout=30) as http:
        op = http.post(f"{base}/async/operation", json=payload).json()
        assert op["webhooksRegistered"] == 3
        polls = 0
        deadline = time.monotonic() + 120
        while True:
            r = http.get(stack.url + op["trackingUrl"])
            status = r.json()
            polls += 1
            if status["status"] in ("Completed", "Failed", "Cancelled", "Timeout"):
                break
            assert time.monotonic() < deadline
            time.sleep(int(r.headers["Retry-After"]))
        assert status["status"] == "Completed"
        results = http.get(f"{stack.url}{op['trackingUrl']}/results").json()
        assert results["success"] is True and results["summary"]["recordsAnalyzed"] == 8577
        listed = http.get(
            f"{base}/async/operations", params={"page": 1, "pageSize": 20, "status": "Completed"}
        ).json()
        assert op["operationId"] in [o["operationId"] for o in listed["operations"]]
    assert polls >= 1


def test_data_enrichment_makes_a_dataset(api, datasets: Path) -> None:
    source = api.upload(datasets / "sepsis.csv")
    assert source["cases"] == 1050
    op = api.start(
        source["datasetId"],
        "sepsis cleaning",
        "DataEnrichment",
        parameters={
            "cleaningRules": ["remove_duplicates", "fix_timestamps", "validate_activities"],
            "outputFormat": "processed_csv",
        },
    )
    final = api.wait(op["operationId"])
    assert final["status"] == "Completed", final
    assert [p["phaseName"] for p in final["phases"]] == list(PHASES["DataEnrichment"])
    doc = api.results(op["operationId"]).json()
    enriched = doc["summary"]["enrichedDataset"]
    new = api.get(f"/datasets/{enriched['datasetId']}").json()
    assert new["sourceOperationId"] == op["operationId"]
    assert new["events"] == doc["summary"]["recordsOut"] > 0
    assert new["cases"] == doc["summary"]["cases"]
    listed = [
        d["datasetId"] for d in api.get("/datasets", params={"pageSize": 100}).json()["datasets"]
    ]
    assert enriched["datasetId"] in listed
    csv = next(a for a in doc["artifacts"] if a["format"] == "CSV")
    r = api.get(csv["downloadUrl"])
    assert r.status_code == 200 and r.text.count("\n") >= new["events"]
    # the enriched dataset is a usable source for an analysis
    again = api.start(
        enriched["datasetId"], "on the enriched log", parameters={"analysisType": "quick"}
    )
    assert api.wait(again["operationId"])["status"] == "Completed"


def test_report_generation_from_an_analysis(api, completed_analysis) -> None:
    op = api.start(
        None,
        "executive summary",
        "ReportGeneration",
        parameters={
            "sourceOperationId": completed_analysis["operationId"],
            "reportType": "executive_summary",
            "includeVisualizations": True,
            "exportFormats": ["PDF", "PowerPoint"],
        },
    )
    final = api.wait(op["operationId"])
    assert final["status"] == "Completed", final
    assert [p["phaseName"] for p in final["phases"]] == list(PHASES["ReportGeneration"])
    doc = api.results(op["operationId"]).json()
    assert doc["summary"]["recordsAnalyzed"] == 8577
    by_format = {a["format"]: a for a in doc["artifacts"]}
    assert {"PDF", "PPTX"} <= set(by_format)
    pdf = api.get(by_format["PDF"]["downloadUrl"])
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    pptx = api.get(by_format["PPTX"]["downloadUrl"])
    assert pptx.status_code == 200
    assert "ppt/presentation.xml" in zipfile.ZipFile(io.BytesIO(pptx.content)).namelist()


def test_report_generation_needs_a_completed_analysis(api, receipt_dataset) -> None:
    for source in ("op-00000000-0000-0000-0000-000000000000", "not-an-id"):
        r = api.post(
            "/async/operation",
            json={
                "operationType": "ReportGeneration",
                "operationName": "bad source",
                "parameters": {"sourceOperationId": source},
            },
        )
        assert_problem(r, 422, "parameters.sourceOperationId")


def test_a_run_that_fails_on_its_data(api, stack, receipt_dataset) -> None:
    op = api.start(
        receipt_dataset["datasetId"],
        "empty window",
        parameters={"timeWindow": {"startDate": "2030-01-01"}},
    )
    final = api.wait(op["operationId"])
    assert final["status"] == "Failed", final
    error = final["error"]
    assert error["code"] == "invalid_parameter" and error["field"] == "parameters.timeWindow"
    assert "2030-01-01" in error["message"]
    assert [p["status"] for p in final["phases"]] == ["Failed", "Pending", "Pending", "Pending"]
    doc = api.results(op["operationId"]).json()
    assert doc["status"] == "Failed" and doc["success"] is False and doc["error"] == error
    # the store is written before the flow returns its state to Prefect: give Prefect a moment
    flow_run_id = final["prefect"]["flowRunId"]
    deadline = time.monotonic() + 60
    run = stack.flow_run(flow_run_id)
    while run["state_type"] in ("RUNNING", "PENDING", "SCHEDULED") and time.monotonic() < deadline:
        time.sleep(0.5)
        run = stack.flow_run(flow_run_id)
    assert run["state_type"] == "FAILED"
