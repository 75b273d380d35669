"""Signed download links: made, checked, refused when altered or expired (403 problem+json),
and the installation key they are signed with. In-process: a store on SQLite and the real
download dependency on a small app (FastAPI's TestClient)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.deps import DownloadScopeDep, engine_dep, settings_dep
from api.problems import install
from pmops.service.errors import Problem
from pmops.service.results import (
    LINK_EXPIRED,
    LINK_INVALID,
    DownloadLinks,
    check_link,
    link_key,
    link_resource,
    link_signature,
)
from pmops.service.scope import Principal, Scope
from pmops.settings import Settings
from pmops.store.keys import read_or_create_secret
from pmops.store.tables import create_token, make_engine

TENANT = "11111111-1111-1111-1111-111111111111"
PROJECT = "22222222-2222-2222-2222-222222222222"
SCOPE = Scope(TENANT, PROJECT, Principal(TENANT, PROJECT, "test"))
KEY = b"k" * 32


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    yield made
    made.dispose()


def test_a_link_is_absolute_and_checks_out() -> None:
    links = DownloadLinks("https://pmops.example.com", KEY, 3600)
    before = int(time.time())
    url = links.artifact(SCOPE, "op-1", "report.pdf")
    after = int(time.time()) + 1
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "https://pmops.example.com"
    assert parts.path == f"/api/{TENANT}/{PROJECT}/async/operation/op-1/artifacts/report.pdf"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert set(query) == {"expires", "signature"}
    assert before + 3600 <= int(query["expires"]) <= after + 3600  # made now, valid an hour
    resource = link_resource(TENANT, PROJECT, "op-1", "report.pdf")
    check_link(KEY, resource, query["expires"], query["signature"], time.time())


def test_the_zip_link_covers_the_download_format_only() -> None:
    url = DownloadLinks("http://h", KEY, 60).results_zip(SCOPE, "op-1")
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path.endswith("/async/operation/op-1/results") and query["format"] == "download"
    zipped = link_resource(TENANT, PROJECT, "op-1", None, "download")
    check_link(KEY, zipped, query["expires"], query["signature"], time.time())
    detailed = link_resource(TENANT, PROJECT, "op-1", None, "detailed")
    with pytest.raises(Problem) as caught:
        check_link(KEY, detailed, query["expires"], query["signature"], time.time())
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("resource", "expires", "signature", "detail"),
    [
        ("other.pdf", "2000000000", None, LINK_INVALID),  # another file
        ("report.pdf", "2000000001", None, LINK_INVALID),  # a later expiry
        ("report.pdf", "2000000000", "0" * 64, LINK_INVALID),  # a made-up signature
        ("report.pdf", "soon", None, LINK_INVALID),
        ("report.pdf", "1000", "expired", LINK_EXPIRED),  # genuine, but past its time
    ],
)
def test_altered_or_expired_links_are_403(
    resource: str, expires: str, signature: str | None, detail: str
) -> None:
    genuine = link_signature(KEY, link_resource(TENANT, PROJECT, "op-1", "report.pdf"), 2000000000)
    if signature == "expired":
        signature = link_signature(KEY, link_resource(TENANT, PROJECT, "op-1", resource), 1000)
    with pytest.raises(Problem) as caught:
        check_link(
            KEY,
            link_resource(TENANT, PROJECT, "op-1", resource),
            expires,
            signature or genuine,
            time.time(),
        )
    assert caught.value.status == 403 and caught.value.detail == detail


def test_the_key_is_made_once_per_installation(engine: Engine) -> None:
    first = read_or_create_secret(engine, "download-links")
    assert len(bytes.fromhex(first)) == 32
    assert read_or_create_secret(engine, "download-links") == first
    assert link_key(engine) == bytes.fromhex(first)
    assert read_or_create_secret(engine, "something-else") != first


def app_for(engine: Engine, settings: Settings) -> FastAPI:
    app = FastAPI()
    install(app)

    async def _engine() -> Engine:
        return engine

    async def _settings() -> Settings:
        return settings

    app.dependency_overrides[engine_dep] = _engine
    app.dependency_overrides[settings_dep] = _settings

    @app.get("/api/{tenantId}/{projectId}/async/operation/{operationId}/artifacts/{name}")
    async def artifact(operationId: str, name: str, scope: DownloadScopeDep) -> dict[str, str]:
        return {"principal": scope.principal.name, "operationId": operationId, "name": name}

    return app


def test_the_download_dependency_takes_a_link_or_a_token(engine: Engine) -> None:
    settings = Settings(public_url="https://pmops.example.com")
    links = DownloadLinks("http://test", link_key(engine), settings.download_link_seconds)
    url = links.artifact(SCOPE, "op-1", "report.pdf")
    token = create_token(engine, TENANT, PROJECT, "developer")
    with TestClient(app_for(engine, settings), base_url="http://test") as client:
        # a plain GET, no Authorization header
        ok = client.get(url)
        assert ok.status_code == 200, ok.text
        assert ok.json()["principal"] == "signed download link"
        tampered = client.get(url.replace("report.pdf", "other.pdf"))
        assert tampered.status_code == 403
        assert tampered.headers["content-type"].startswith("application/problem+json")
        assert tampered.json()["detail"] == LINK_INVALID
        assert tampered.json()["title"] == "Forbidden"
        # a tampered link is refused even with a token beside it
        bearer = {"Authorization": f"Bearer {token}"}
        assert (client.get(url.replace("op-1", "op-2"), headers=bearer)).status_code == 403
        # the bearer token path still works, and without either it is 401
        bare = url.split("?")[0]
        assert (client.get(bare, headers=bearer)).status_code == 200
        assert (client.get(bare)).status_code == 401
    expired = DownloadLinks("http://test", link_key(engine), 1)._signed(
        link_resource(TENANT, PROJECT, "op-1", "report.pdf"), now=time.time() - 10
    )
    with TestClient(app_for(engine, settings), base_url="http://test") as client:
        gone = client.get(expired)
        assert gone.status_code == 403 and gone.json()["detail"] == LINK_EXPIRED
