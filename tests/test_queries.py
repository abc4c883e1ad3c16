import pytest

from score.config import DataConfig
from score.queries import QueryFileError, load_queries, round_queries


def test_shipped_deepconsult_queries_load_with_row_ids():
    qs = load_queries(DataConfig())
    assert len(qs) == 102 and qs[0].id == "q0000" and all(q.text for q in qs)


def test_each_format_with_an_id_column(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"id": "a", "query": "one"}\n{"id": "b", "query": "two"}\n')
    (tmp_path / "q.csv").write_text("id,query\na,one\nb,two\n")
    for name in ("q.jsonl", "q.csv"):
        qs = load_queries(DataConfig(queries=str(tmp_path / name), id_column="id"))
        assert [(q.id, q.text) for q in qs] == [("a", "one"), ("b", "two")]


@pytest.mark.parametrize(
    "content, cfg, message",
    [
        (b"text\nhello\n", {}, "has no column 'query'"),
        (b"id,query\na,hello\nb,   \n", {"id_column": "id"}, "empty or missing query"),
        (b'{"query": "fine"}\n{"query": null}\n', {}, "empty or missing query"),  # read as JSONL below
        (b"id,query\na,x\na,y\n", {"id_column": "id"}, "duplicate id"),
        (b"query\n\xff\xfe bad\n", {}, "not valid UTF-8"),
        (b"query\n", {}, "has no rows"),
        (b'{"query": "fine"}\n\n{"query": "two", }\n', {}, r"q.jsonl, line 3: not JSON \(.* at column 18\)$"),
        (b'{"query": "fine"}\n["a list"]\n', {}, "line 2: a JSON object is needed, not list"),
    ],
)
def test_bad_query_files_say_what_and_how(tmp_path, content, cfg, message):
    path = tmp_path / ("q.jsonl" if content.startswith(b"{") else "q.csv")
    path.write_bytes(content)
    with pytest.raises(QueryFileError, match=message):
        load_queries(DataConfig(queries=str(path), **cfg))


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(QueryFileError, match="does not exist"):
        load_queries(DataConfig(queries=str(tmp_path / "nope.csv")))
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(QueryFileError, match="folder.csv is not a file"):
        load_queries(DataConfig(queries=str(tmp_path / "folder.csv")))
    (tmp_path / "q.txt").write_text("x")
    with pytest.raises(QueryFileError, match="suffix"):
        load_queries(DataConfig(queries=str(tmp_path / "q.txt")))


def test_rounds_walk_through_the_set_without_repeats_until_it_wraps():
    qs = load_queries(DataConfig())
    seen = [q.id for r in range(25) for q in round_queries(qs, 4, r, seed=0)]
    assert len(set(seen)) == 100
