"""The SearXNG HTTP backend against `score search-serve` on loopback (a real server), and its failures."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from score.config import ConfigError, load_config
from score.search.bm25 import BM25Search
from score.search.searxng import SearchError, SearxngSearch
from tests.servers import ROOT, free_port, stop, wait_healthy


@pytest.fixture
def search_serve(toy_corpus: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    args = ["search-serve", "--port", str(port), "--results", "3", "--set", f"search.corpus={toy_corpus}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "score.cli", *args],
        cwd=ROOT,
        env={**__import__("os").environ, "SCORE_CACHE": str(tmp_path / "cache")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/healthz", proc, "score search-serve", timeout=120)
        yield url
    finally:
        stop(proc)


def test_search_serve_answers_as_the_local_index_does(search_serve: str, toy_corpus: Path, tmp_path: Path):
    local = BM25Search(toy_corpus, tmp_path / "local-cache")
    remote = SearxngSearch(search_serve, timeout=10)
    for query in ("wind power output", "solar electricity", "battery grid storage"):
        want = [(p.id, p.title, p.text, p.source) for p in local.search(query, 2)]
        got = [(p.id, p.title, p.text, p.source) for p in remote.search(query, 2)]
        assert got == want and got, query
    assert remote.search_many(["wind", "opera"], 1)[1][0].id == "p4"
    assert remote.fingerprint == f"searxng:{search_serve}"


def test_search_serve_speaks_searxng_json(search_serve: str):
    import json
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(f"{search_serve}/search?q=wind+turbine&format=json") as r:
        body = json.loads(r.read())
    assert body["query"] == "wind turbine" and body["number_of_results"] == len(body["results"]) <= 3
    assert {"url", "title", "content", "engine", "score"} <= set(body["results"][0])
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{search_serve}/search?q=wind")  # SearXNG's default format is html
    assert e.value.code == 400 and "format=json" in e.value.read().decode()


@contextmanager
def fake_service(body: bytes, delay: float = 0.0, status: int = 200) -> Iterator[str]:
    """A stand-in for a misbehaving search service: fixed body, status and delay."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            time.sleep(delay)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "body, delay, status, message",
    [
        (b"{}", 2.0, 200, "too slow"),
        (b"<html>", 0.0, 200, "not JSON"),
        (b'{"answers": []}', 0.0, 200, "without a 'results' list"),
        (b"busy", 0.0, 503, "HTTP 503"),
    ],
)
def test_a_failing_service_is_one_search_error(body, delay, status, message):
    with fake_service(body, delay, status) as url:
        with pytest.raises(SearchError, match=message):
            SearxngSearch(url, timeout=0.5).search("wind", 2)


def test_a_service_that_is_down_is_a_search_error():
    with pytest.raises(SearchError, match="unreachable"):
        SearxngSearch(f"http://127.0.0.1:{free_port()}", timeout=2).search("wind", 2)


def test_searxng_without_an_address_is_a_config_error():
    with pytest.raises(ConfigError, match="search.url"):
        load_config(None, ["search.backend=searxng"])
    cfg = load_config(None, ["search.backend=searxng", "search.url=http://127.0.0.1:8888"])
    assert cfg.search.url == "http://127.0.0.1:8888"
