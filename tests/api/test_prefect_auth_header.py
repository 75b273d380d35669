"""The API's Prefect orchestrator signs every request with the auth string: the one it is given
(pmops's PMOPS_PREFECT_AUTH_STRING or DATA_DIR/prefect-auth), else Prefect's own
PREFECT_API_AUTH_STRING. Its plain requests (create_flow_run, task runs) carry the same header
as Prefect's client (the stack test, tests/stack/test_prefect_auth.py, runs them for real)."""

from __future__ import annotations

from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

from api.prefect_orchestrator import PrefectOrchestrator
from pmops.prefect_auth import basic_auth_header


def test_given_string_is_sent() -> None:
    orchestrator = PrefectOrchestrator("http://127.0.0.1:9/api", auth_string="pmops:given")
    try:
        assert orchestrator.auth_string == "pmops:given"
        sent = orchestrator._http.headers["Authorization"]
        assert {"Authorization": sent} == basic_auth_header("pmops:given")
    finally:
        orchestrator.close()


def test_prefects_own_setting_is_the_fallback() -> None:
    with temporary_settings(updates={PREFECT_API_AUTH_STRING: "ops:from-prefect"}):
        orchestrator = PrefectOrchestrator("http://127.0.0.1:9/api")
    try:
        assert orchestrator.auth_string == "ops:from-prefect"
        sent = orchestrator._http.headers["Authorization"]
        assert {"Authorization": sent} == basic_auth_header("ops:from-prefect")
    finally:
        orchestrator.close()


def test_no_string_no_header() -> None:
    with temporary_settings(restore_defaults={PREFECT_API_AUTH_STRING}):
        orchestrator = PrefectOrchestrator("http://127.0.0.1:9/api")
    try:
        assert orchestrator.auth_string is None
        assert "Authorization" not in orchestrator._http.headers
    finally:
        orchestrator.close()
