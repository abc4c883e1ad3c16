import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from score.config import DataConfig
from score.datasets import wiki_queries
from score.queries import QueryFileError, check_gold_ids, load_queries, load_query_set, round_queries
from score.search.corpus import CORPUS_SCHEMA


def test_shipped_deepconsult_queries_load_with_row_ids():
    qs = load_queries(DataConfig(queries="deepconsult"))
    assert len(qs) == 102 and qs[0].id == "q0000" and all(q.text for q in qs)


def test_the_default_queries_are_split_by_title_with_gold_on_every_row():
    qs = load_query_set(DataConfig())
    assert len(qs.train) > 1000 and len(qs.heldout) > 100
    assert all(len(q.gold_ids) == 2 for q in qs.train + qs.heldout)
    train_gold = {i for q in qs.train for i in q.gold_ids}
    assert not train_gold & {i for q in qs.heldout for i in q.gold_ids}  # no gold passage in both splits
    answered = [q for q in qs.train + qs.heldout if q.gold_answer]
    assert len(answered) > 300 and all(q.gold_answer.isdigit() and "____" in q.text for q in answered)
    assert qs.heldout[0].gold_answer  # the held-out rows measured first are those with an answer


def _corpus(path, texts: dict[str, str]) -> None:
    rows = [{"id": f"w{i}", "title": t, "text": x, "source": ""} for i, (t, x) in enumerate(texts.items())]
    pq.write_table(pa.Table.from_pylist(rows, schema=CORPUS_SCHEMA), path)


def test_the_query_builder_is_deterministic_and_never_crosses_splits(tmp_path):
    titles = [f"Place {chr(65 + i)}{chr(65 + j)}" for i in range(8) for j in range(8)]
    texts = {
        t: f"{t} lies beside {titles[(k + 1) % len(titles)]}. It was founded in {1100 + k} by monks of the valley."
        for k, t in enumerate(titles)
    }
    _corpus(tmp_path / "c.parquet", texts)
    rows = wiki_queries.build(tmp_path / "c.parquet")
    assert rows == wiki_queries.build(tmp_path / "c.parquet") and rows
    split = {f"w{i}": wiki_queries.split_of(t) for i, t in enumerate(texts)}
    for r in rows:
        assert {split[i] for i in r["gold_passage_ids"]} == {r["split"]}  # both passages in the row's split
        assert r["gold_answer"] in texts[r["gold_titles"][1]] and "____" in r["query"]
    used = [i for r in rows for i in r["gold_passage_ids"]]
    assert len(used) == len(set(used))  # each passage in one question at most
    assert {r["split"] for r in rows} == {"train", "heldout"}


def test_the_shipped_file_is_what_the_builder_makes_of_the_corpus(tmp_path):
    from score.models.embedded import cache_root
    from score.search.corpus import ensure_wiki_corpus

    out = tmp_path / "q.jsonl"
    wiki_queries.write(wiki_queries.build(ensure_wiki_corpus(cache_root())), out)
    assert out.read_bytes() == wiki_queries.OUT.read_bytes()


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_gold_columns_are_optional_and_checked(tmp_path):
    plain = _jsonl(tmp_path / "plain.jsonl", [{"id": "a", "query": "one"}])
    qs = load_query_set(DataConfig(queries=plain))
    assert not qs.has_gold and qs.heldout == [] and qs.train[0].gold_ids == ()
    gold = [
        {"id": "a", "query": "one", "split": "train", "gold_passage_ids": ["w1"], "gold_answer": "1948"},
        {"id": "b", "query": "two", "split": "heldout", "gold_passage_ids": ["w9"], "gold_answer": None},
    ]
    qs = load_query_set(DataConfig(queries=_jsonl(tmp_path / "gold.jsonl", gold)))
    assert qs.train[0].gold_answer == "1948" and qs.heldout[0].gold_ids == ("w9",)
    with pytest.raises(QueryFileError, match="query b has gold passage id 'w9', which the corpus does not hold"):
        check_gold_ids(qs, {"w1"}, tmp_path / "gold.jsonl")


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"query": "a", "split": "train"}, {"query": "a", "split": "heldout"}], "held-out quer.* also in training"),
        ([{"query": "a", "split": "test"}], r"split value\(s\) \['test'\]; use train or heldout"),
        ([{"query": "a", "split": "heldout"}], "no row with split train"),
    ],
)
def test_bad_splits_are_refused(tmp_path, rows, message):
    with pytest.raises(QueryFileError, match=message):
        load_query_set(DataConfig(queries=_jsonl(tmp_path / "q.jsonl", rows)))


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
