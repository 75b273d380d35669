from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path

import pytest

# The shared datasets sit beside the repository (../shared/datasets), as laid for developers and CI.
DATASETS = Path(
    os.environ.get("PMOPS_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


@pytest.fixture(scope="session")
def datasets() -> Path:
    if not DATASETS.is_dir():
        pytest.fail(f"shared datasets not found at {DATASETS}")
    return DATASETS


# -- the running service (tests/stack/) ---------------------------------------------
# One `pmops up` per session for most service tests; modules needing other settings start their
# own. Service tests carry @pytest.mark.xdist_group("stack"): one xdist worker runs them all.
@pytest.fixture(scope="session")
def prefect_template(tmp_path_factory: pytest.TempPathFactory, worker_id: str):
    """A migrated Prefect database, made once per run (xdist workers share it)."""
    from tests.service_stack import migrate_prefect_template

    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    with (shared / "prefect-template.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "prefect-template" / "prefect.db"
        return done if done.exists() else migrate_prefect_template(done.parent)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, prefect_template: Path):
    from tests.service_stack import running_stack

    with running_stack(
        tmp_path_factory.mktemp("stack"),
        prefect_template,
        fault_injection=True,
        monthly_timezone="Europe/Amsterdam",
        stream_keepalive_seconds=1,
    ) as s:
        yield s


@pytest.fixture(scope="session")
def api(stack):
    """The dev tenant's client on the shared stack."""
    tenant = stack.dev()
    yield tenant
    tenant.close()


@pytest.fixture(scope="session")
def receipt_dataset(api, datasets: Path) -> dict:
    return api.upload(datasets / "receipt.xes.gz")


@pytest.fixture(scope="session")
def bpic_dataset(api, datasets: Path) -> dict:
    return api.upload(datasets / "bpic2012.xes.gz")


@pytest.fixture(scope="session")
def completed_analysis(api, receipt_dataset: dict) -> dict:
    """A comprehensive analysis of receipt, run to completion; returns its final status."""
    op = api.start(
        receipt_dataset["datasetId"],
        "receipt comprehensive",
        parameters={"analysisType": "comprehensive"},
    )
    final = api.wait(op["operationId"])
    assert final["status"] == "Completed", final
    return final


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep `--dist loadgroup` grouping on pytest 9.2.

    pytest-xdist 3.8 puts an item in its group by appending "@<group>" to `item._nodeid`, which
    pytest 9.2 no longer reads (node ids are structured now: pytest-dev/pytest-xdist#1386), so
    every xdist_group was silently ignored and each worker booted its own service stack. Here the
    same suffix goes into the structured id. Nothing happens when xdist's own code worked.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            item._id = type(item._id).parse(item.nodeid + suffix)


# PostgreSQL on 127.0.0.1:5432 with trust auth (these machines have it): a fresh database per module
ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@contextlib.contextmanager
def fresh_database(prefix: str = "pmops_test"):
    """A new, uniquely named PostgreSQL database (its SQLAlchemy URL), dropped after."""
    psycopg = pytest.importorskip("psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {ADMIN_DSN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def pg_url():
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def s3():
    """A real S3-compatible server on loopback (moto's), with a bucket: tests/s3server.py."""
    from tests.s3server import s3_server

    with s3_server() as server:
        yield server
