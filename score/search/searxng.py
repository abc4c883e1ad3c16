"""An HTTP search backend speaking the SearXNG JSON API (`GET /search?q=...&format=json`).

Point `search.url` at a SearXNG instance of your own, or at `score search-serve`, which serves any configured corpus
over the same API so that many workers share one index. A result's passage id is its `id` field when the server sends
one (`score search-serve` does) and its URL otherwise; its text is the `content` snippet.

Failures (a refused connection, a timeout, an HTTP error, a body that is not SearXNG JSON) raise `SearchError` with
the cause in one line; the solver's tool loop turns it into a tool output the model sees, and counts it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from score.search.base import Passage


class SearchError(RuntimeError):
    """A search call that returned no usable answer (the message says why, in one line)."""


class SearxngSearch:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        # results of a live service are not reproducible: the fingerprint names the service, not its content
        self.fingerprint = "searxng:" + self.url

    def search(self, query: str, k: int) -> list[Passage]:
        address = f"{self.url}/search?" + urllib.parse.urlencode({"q": query, "format": "json"})
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise SearchError(f"search service {self.url} answered HTTP {e.code} ({e.reason})") from None
        except (TimeoutError, OSError) as e:  # URLError is an OSError; a read timeout is a TimeoutError
            reason = getattr(e, "reason", e)
            raise SearchError(f"search service {self.url} unreachable or too slow ({reason})") from None
        except ValueError:
            raise SearchError(f"search service {self.url} answered something that is not JSON") from None
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise SearchError(f"search service {self.url} answered JSON without a 'results' list (not SearXNG)")
        return [_passage(r) for r in results if isinstance(r, dict) and r.get("url")][:k]

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        return [self.search(q, k) for q in queries]


def _passage(result: dict) -> Passage:
    url = str(result["url"])
    return Passage(
        id=str(result.get("id") or url),
        title=str(result.get("title") or ""),
        text=str(result.get("content") or ""),
        source=url,
        score=float(result.get("score") or 0.0),
    )
