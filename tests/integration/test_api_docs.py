"""/docs works with no internet: Swagger UI's page names only this server's own assets, and the
server serves them; / points a browser at the docs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap.container import Janus
from bootstrap.settings import Settings
from tests.support.api import Api, serve_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    janus = Janus.build(Settings(home=tmp_path / "janus", database_url=None))
    try:
        with serve_api(janus) as served:
            yield served
    finally:
        janus.close()


def test_the_docs_page_loads_swagger_ui_from_this_server_only(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), html
    assets = re.findall(r"""(?:src|href)=["']?(/[^"' >]+)""", html)
    assert {a.rsplit("/", 1)[1] for a in assets} == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon.png",
    }
    for asset in assets:
        served = api.client.get(asset)
        assert served.status_code == 200 and len(served.content) > 1_000, asset
    assert "SwaggerUIBundle" in api.client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "'/openapi.json'" in html or '"/openapi.json"' in html
    assert api.client.get("/openapi.json").json()["info"]["title"] == "Janus"


def test_the_root_redirects_to_the_docs(api: Api) -> None:
    response = api.client.get("/", follow_redirects=False)
    assert response.status_code in (302, 307) and response.headers["location"] == "/docs"
    assert api.client.get("/", follow_redirects=True).url.path == "/docs"
