"""Uploads being read at once per project (PMOPS_UPLOADS_PER_PROJECT): with the project's slots
held, one more upload is 429 naming `file` with Retry-After and leaves no dataset; another
project uploads meanwhile; once a slot is free the upload goes through. The upload itself is
read in a worker process, not the API's (pmops.service.inspection)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pmops.service.limits import Limits
from tests.api.conftest import Served, served_app
from tests.service_stack import assert_problem


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_app(tmp_path_factory.mktemp("uploadlimit"), uploads_per_project=1) as served:
        yield served


def test_a_project_past_its_uploads_is_429_and_others_go_on(
    limited: Served, datasets: Path
) -> None:
    a, b = limited.tenant(), limited.tenant()
    limits: Limits = limited.app.state.limits
    key = f"{a.tenant}/{a.project}"
    assert limits.uploads.acquire(key)  # as if one of A's uploads were being read
    try:
        content = (datasets / "running-example.xes").read_bytes()
        r = a.post("/datasets", files={"file": ("busy.xes", content)})
        body = assert_problem(r, 429, "file")
        assert "PMOPS_UPLOADS_PER_PROJECT" in str(body) and int(r.headers["Retry-After"]) >= 1
        assert a.get("/datasets").json()["datasets"] == []
        assert b.upload(datasets / "running-example.xes")["cases"] == 6
    finally:
        limits.uploads.release(key)
    assert a.upload(datasets / "running-example.xes")["cases"] == 6
    assert limits.uploads.held(key) == 0  # the slot was given back


def test_uploads_are_read_in_a_worker_process(limited: Served, datasets: Path) -> None:
    inspector = limited.app.state.inspector
    assert inspector._executor().submit(os.getpid).result() != os.getpid()
    assert limited.tenant().upload(datasets / "sepsis.csv")["cases"] == 1050
