import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from score.search.bm25 import BM25Search


def test_bm25_finds_the_matching_passage_and_caches_its_index(toy_corpus, tmp_path):
    search = BM25Search(toy_corpus, tmp_path)
    hits = search.search("wind energy turbine", 2)
    assert hits[0].id == "p2" and hits[0].score > 0
    assert search.search("zzzz qqqq", 3) == []  # nothing in common: no hits, not random ones
    again = BM25Search(toy_corpus, tmp_path)  # loads the cached index
    assert [h.id for h in again.search("battery grid", 1)] == ["p3"]
    assert again.fingerprint == search.fingerprint


def test_bad_corpora(tmp_path):
    with pytest.raises(FileNotFoundError, match="set search.corpus"):
        BM25Search(tmp_path / "missing.parquet", tmp_path)
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), tmp_path / "c.parquet")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['title', 'source'\]"):
        BM25Search(tmp_path / "c.parquet", tmp_path)
