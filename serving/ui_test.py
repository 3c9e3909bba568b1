"""Fast tests of the /ui routes on a bare aiohttp app: the page and nothing else."""

from __future__ import annotations

import asyncio

from aiohttp import test_utils, web

from serving.ui import INDEX_HTML, add_ui_routes


def fetch(method: str, path: str) -> tuple[int, str, bytes]:
    async def go() -> tuple[int, str, bytes]:
        app = web.Application()
        add_ui_routes(app)
        async with test_utils.TestClient(test_utils.TestServer(app)) as client:
            response = await client.request(method, path)
            return response.status, response.headers.get("Content-Type", ""), await response.read()

    return asyncio.run(go())


def test_ui_serves_the_page_with_and_without_slash():
    for path in ("/ui", "/ui/", "/ui?model=other"):
        status, content_type, body = fetch("GET", path)
        assert status == 200, path
        assert content_type == "text/html; charset=utf-8"
        assert body == INDEX_HTML.read_bytes()


def test_ui_answers_head():
    assert fetch("HEAD", "/ui")[0] == 200


def test_nothing_else_from_disk():
    for path in ("/ui/index.html", "/ui/../ui.py", "/ui/ui", "/serving/ui/index.html"):
        assert fetch("GET", path)[0] == 404, path


def test_ui_is_read_only():
    assert fetch("POST", "/ui")[0] == 405
