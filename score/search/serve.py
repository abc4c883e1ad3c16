"""`score search-serve`: any configured corpus over the SearXNG JSON API, so many workers share one index.

`GET /search?q=...&format=json` answers as SearXNG does (`query`, `number_of_results`, `results` with `url`, `title`,
`content`, `engine`, `score`, and the empty lists SearXNG always sends), plus each result's passage `id`, which
`score.search.searxng` keeps so that citations and evidence name the same passage in every worker. `GET /healthz`
answers OK. Searches run one at a time (the index is not shared across threads).
"""

from __future__ import annotations

import threading

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse

from score.search.base import SearchBackend


def make_search_app(search: SearchBackend, results: int = 10) -> FastAPI:
    app = FastAPI(title="score search-serve", description="a corpus over the SearXNG JSON API")
    lock = threading.Lock()

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "OK"

    @app.get("/search")
    def search_(q: str = Query(..., description="the query"), format: str = Query("html")) -> dict:
        if format != "json":
            raise HTTPException(400, f"format={format!r}: this server answers format=json only (the SearXNG JSON API)")
        with lock:
            hits = search.search(q, results)
        return {
            "query": q,
            "number_of_results": len(hits),
            "results": [
                {
                    "id": p.id,
                    "url": p.source or f"score://passage/{p.id}",
                    "title": p.title,
                    "content": p.text,
                    "engine": search.fingerprint.split(":")[0],
                    "engines": [search.fingerprint.split(":")[0]],
                    "score": p.score,
                    "category": "general",
                }
                for p in hits
            ],
            "answers": [],
            "corrections": [],
            "infoboxes": [],
            "suggestions": [],
            "unresponsive_engines": [],
        }

    return app
