"""Swagger UI and ReDoc load only from the API itself (api/docs_ui.py): no CDN, so the docs work
offline and no third party's script runs beside a token typed into "Authorize"."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import Served

URL = re.compile(r"""(?:src|href)=["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_local_urls(served: Served, page: str) -> None:
    r = served.request("GET", page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "//" not in re.sub(r"<!--.*?-->", "", r.text).replace("window.location.origin", "")
    urls = [a or b for a, b in URL.findall(r.text)]
    assert urls, r.text
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        answer = served.request("GET", url)
        assert answer.status_code == 200, url
        assert len(answer.content) > 0


def test_the_assets_are_javascript_and_css(served: Served) -> None:
    js = served.request("GET", "/docs-assets/swagger-ui-bundle.js")
    css = served.request("GET", "/docs-assets/swagger-ui.css")
    redoc = served.request("GET", "/docs-assets/redoc.standalone.js")
    assert "javascript" in js.headers["content-type"] and b"SwaggerUIBundle" in js.content
    assert css.headers["content-type"].startswith("text/css")
    assert "javascript" in redoc.headers["content-type"] and b"Redoc" in redoc.content
    assert served.request("GET", "/docs/oauth2-redirect").status_code == 200
