"""Webhooks per project (PMOPS_WEBHOOKS_PER_PROJECT): one more than the limit is 422 naming
`webhooks` (waiting does not help, deleting one does); concurrent registrations do not pass it;
another project has its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.conftest import Served, served_app
from tests.service_stack import assert_problem

LIMIT = 3
BODY = {
    "webhookUrl": "http://127.0.0.1:9/hook",
    "webhookName": "limited",
    "events": ["operation.completed"],
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("webhooklimit")
    with served_app(
        data_dir, webhooks_per_project=LIMIT, webhook_allow_networks="127.0.0.0/8"
    ) as served:
        yield served


def test_webhooks_per_project(limited: Served) -> None:
    a = limited.tenant()
    made = [a.post("/async/webhooks", json=BODY) for _ in range(LIMIT)]
    assert [r.status_code for r in made] == [201] * LIMIT
    r = a.post("/async/webhooks", json=BODY)
    body = assert_problem(r, 422, "webhooks")
    assert body["limit"] == "PMOPS_WEBHOOKS_PER_PROJECT"
    assert body["registeredWebhooks"] == LIMIT and body["maxWebhooks"] == LIMIT
    assert len(a.get("/async/webhooks").json()["webhooks"]) == LIMIT

    other = limited.tenant(a.tenant)  # another project of the same tenant
    assert other.post("/async/webhooks", json=BODY).status_code == 201

    hook_id = made[0].json()["webhookId"]
    assert a.delete(f"/async/webhooks/{hook_id}").status_code == 204
    assert a.post("/async/webhooks", json=BODY).status_code == 201
    assert_problem(a.post("/async/webhooks", json=BODY), 422, "webhooks")


def test_concurrent_registrations_stop_at_the_limit(limited: Served) -> None:
    a = limited.tenant()
    answers = a.concurrently(10, "POST", "/async/webhooks", json=BODY)
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * LIMIT + [422] * (10 - LIMIT)
