"""The search interface shared by solver and evaluator: `search(query, k) -> passages with ids`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str
    source: str
    score: float


class SearchBackend(Protocol):
    fingerprint: str  # identifies the corpus and index, part of every stage fingerprint that searches

    def search(self, query: str, k: int) -> list[Passage]: ...

    def search_many(self, queries: Sequence[str], k: int) -> list[list[Passage]]: ...
