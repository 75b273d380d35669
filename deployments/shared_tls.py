"""One CA store for the Prefect clients of a flow run, when Prefect's API is plain http (a preload
module of the runner's forkserver, deployments/warmstart.py).

Prefect 3.9.1 builds a new `ssl.create_default_context(cafile=...)` (PREFECT_API_SSL_CERT_FILE,
else certifi's bundle) for every client it makes (SyncPrefectClient, PrefectClient, its version
check): each parses ~150 certificates, 19.5 ms of CPU. A flow run makes six such clients, so
about 0.12 CPU-s of a quick analysis went to certificate stores that an http:// API URL never
uses (py-spy, 4.6 % of flow-run samples; bench/notes/load.md).

Importing this module, when PREFECT_API_URL is http://, makes those calls (from Prefect's own
modules, with a `cafile` and nothing else) return one context built once in the forkserver, so
every flow run forked from it has it already. Anything else (another caller, other arguments,
an https API URL) gets a new context as before: a shared context is never handed to code that
might change it for its own connections."""

from __future__ import annotations

import os
import ssl
import sys
from typing import Any

_create = ssl.create_default_context
_shared: dict[str, ssl.SSLContext] = {}


def _from_prefect(depth: int) -> bool:
    caller = sys._getframe(depth).f_globals.get("__name__", "")
    return isinstance(caller, str) and (caller == "prefect" or caller.startswith("prefect."))


def create_default_context(
    purpose: Any = ssl.Purpose.SERVER_AUTH,
    *,
    cafile: str | None = None,
    capath: str | None = None,
    cadata: Any = None,
) -> ssl.SSLContext:
    """`ssl.create_default_context`, with the context of a Prefect client built once per CA file."""
    if (
        cafile is not None
        and capath is None
        and cadata is None
        and purpose is ssl.Purpose.SERVER_AUTH
        and _from_prefect(2)
    ):
        ctx = _shared.get(cafile)
        if ctx is None:
            ctx = _shared[cafile] = _create(purpose, cafile=cafile)
        return ctx
    return _create(purpose, cafile=cafile, capath=capath, cadata=cadata)


def install(api_url: str | None) -> bool:
    """Share the Prefect clients' CA store when their API is plain http; whether it is."""
    if not (api_url or "").lower().startswith("http://"):
        return False
    if ssl.create_default_context is not create_default_context:
        import certifi
        from prefect.settings import PREFECT_API_SSL_CERT_FILE

        ssl.create_default_context = create_default_context  # type: ignore[assignment]
        cafile = PREFECT_API_SSL_CERT_FILE.value() or certifi.where()  # as Prefect's clients
        _shared.setdefault(cafile, _create(cafile=cafile))  # built now, in the forkserver
    return True


install(os.environ.get("PREFECT_API_URL"))
