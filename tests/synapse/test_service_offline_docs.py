"""Issue 10: the service works in an air-gapped plant. Every page it serves loads its scripts, styles and
icons from the service itself (the assets ship in a package), never from another host. Against the real
server: each HTML page it serves is parsed, every src/href must stay on the server, and every asset it
names must be served."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from tests.service_support import Plant, Server, write_config

pytestmark = pytest.mark.slow

DOC_PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")
URL_ATTRIBUTES = {"src", "href", "spec-url", "action", "data", "poster", "srcset"}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in URL_ATTRIBUTES and value]


def links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    plant = Plant(tmp_path_factory.mktemp("offline"))
    config = write_config(plant.dir / "service.toml", {
        "ledger": {"path": plant.ledger_path},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / "store"},
        "decision_log": {"path": plant.dir / "decisions"},
        "auth": {"open_evaluate": True},
    })
    srv = Server(plant.dir, config).wait_ready()
    yield srv
    srv.stop()


def served_pages(server) -> dict[str, str]:
    """Every HTML page the server answers a GET with: the docs pages, and each parameterless GET route."""
    paths = set(DOC_PAGES)
    for path, operations in server.client.get("/openapi.json").json()["paths"].items():
        if "get" in operations and "{" not in path:
            paths.add(path)
    pages = {}
    for path in sorted(paths):
        response = server.client.get(path)
        if response.headers.get("content-type", "").startswith("text/html"):
            assert response.status_code == 200, (path, response.status_code)
            pages[path] = response.text
    return pages


def test_no_served_page_references_another_host(server):
    pages = served_pages(server)
    assert set(DOC_PAGES) <= set(pages)  # the docs are there, and are pages
    here = urlsplit(server.base)
    outside = {}
    for path, html in pages.items():
        for url in links(html):
            target = urlsplit(urljoin(server.base + path, url))
            on_this_server = target.scheme in ("http", "https") and target.netloc == here.netloc
            if not on_this_server and target.scheme != "data":
                outside.setdefault(path, []).append(url)
    assert outside == {}


def test_every_asset_a_page_names_is_served_by_the_service(server):
    pages = served_pages(server)
    assets = {urlsplit(urljoin(server.base + path, url)).path
              for path, html in pages.items() for url in links(html) if not url.startswith("data:")}
    assert {a.rsplit(".", 1)[-1] for a in assets} >= {"js", "css", "png"}
    for asset in sorted(assets):
        response = server.client.get(asset)
        assert response.status_code == 200 and response.content, asset
    swagger = pages["/docs"]
    assert "validatorUrl" in swagger and "validator.swagger.io" not in swagger
