"""BM25 (bm25s) over a Parquet corpus; the index is built once per corpus content and cached on disk."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s

from score.search.base import Passage
from score.search.corpus import read_corpus
from score.store.store import file_sha256

log = logging.getLogger(__name__)


class BM25Search:
    def __init__(self, corpus: Path, cache: Path):
        table = read_corpus(corpus)
        self.fingerprint = "bm25:" + file_sha256(Path(corpus))[:16]
        self.ids = table.column("id").to_pylist()
        self.titles = table.column("title").to_pylist()
        self.texts = table.column("text").to_pylist()
        self.sources = table.column("source").to_pylist()
        index_dir = cache / "bm25" / self.fingerprint.split(":")[1]
        if (index_dir / "params.index.json").exists():
            self.retriever = bm25s.BM25.load(str(index_dir))
        else:
            log.info("building the BM25 index over %d passages (once)", len(self.ids))
            docs = [f"{t}\n{x}" for t, x in zip(self.titles, self.texts)]
            self.retriever = bm25s.BM25()
            self.retriever.index(bm25s.tokenize(docs, stopwords="en", show_progress=False), show_progress=False)
            tmp = index_dir.with_name(index_dir.name + ".tmp")
            self.retriever.save(str(tmp))
            tmp.rename(index_dir)

    def search(self, query: str, k: int) -> list[Passage]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        if not queries:
            return []
        k = min(k, len(self.ids))
        tokens = bm25s.tokenize(list(queries), stopwords="en", show_progress=False, return_ids=False)
        asked = [i for i, t in enumerate(tokens) if t]  # a query of stopwords only matches nothing: no call
        out: list[list[Passage]] = [[] for _ in queries]
        if not asked:
            return out
        docs, scores = self.retriever.retrieve(
            [tokens[i] for i in asked], k=k, show_progress=False, n_threads=1
        )  # (Q, k)
        for i, row_docs, row_scores in zip(asked, docs, scores):
            out[i] = [
                Passage(self.ids[d], self.titles[d], self.texts[d], self.sources[d], float(s))
                for d, s in zip(row_docs, row_scores)
                if s > 0  # a zero score shares no term with the query: not a hit
            ]
        return out
