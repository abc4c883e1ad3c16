"""`benchmarks/evaluator_items.py` on a toy corpus: deterministic, split by title, and every item's claim, anchor,
mirrored passage and neighbour hold the support they are labelled with."""

from __future__ import annotations

import doctest
import importlib.util
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("evaluator_items", ROOT / "benchmarks" / "evaluator_items.py")
items_mod = importlib.util.module_from_spec(_spec)  # benchmarks/ is scripts, not a package
_spec.loader.exec_module(items_mod)

TEXTS = [  # (title, text); two titles with two passages each, and one passage with nothing to swap
    ("Ada Lovelace", "Ada Lovelace was a mathematician born in London in 1815. She worked with Charles Babbage."),
    ("Ada Lovelace", "Her notes on the engine were published in 1843 in a journal. They hold the first program."),
    ("Eiffel Tower", "The tower was completed in Paris in 1889 for a fair. It is 330 metres tall today."),
    ("Danube", "The river flows through Germany and Austria before it reaches the sea. It is 2850 km long."),
    ("Marie Curie", "Marie Curie moved from Warsaw to Paris in 1891 to study physics. She won two Nobel prizes."),
    ("Marie Curie", "Her laboratory in Paris opened in 1914 shortly before the war. It trained many researchers."),
    ("Beethoven", "The composer was born in Bonn in 1770 and later settled in Vienna. He wrote nine symphonies."),
    ("Goethe", "The poet was born in Frankfurt in 1749 and spent most of his life in Weimar in Germany."),
    ("Magna Carta", "The charter was sealed by King John at Runnymede near London in 1215 after a revolt."),
    ("Rhine", "The river rises in the Alps and flows through Germany into the North Sea at Rotterdam."),
    ("Louvre", "The museum in Paris opened to the public in 1793 during the revolution in France."),
    ("Big Ben", "The great bell in London was cast in 1858 and weighs more than thirteen tonnes today."),
    ("Mozart", "The composer was born in Salzburg in 1756 and moved to Vienna as a young man."),
    ("Brandenburg Gate", "The gate in Berlin was built in 1791 on the orders of the king of Prussia."),
    ("Sorbonne", "The university in Paris traces its origins to a college founded in 1257 by a chaplain."),
    ("Tower Bridge", "The bridge over the river in London was opened in 1894 after eight years of work."),
    ("Notre Dame", "The cathedral in Paris was begun in 1163 and finished almost two centuries later."),
    ("Cologne Cathedral", "The cathedral in Germany was begun in 1248 and completed only in 1880 by Prussia."),
    ("Newton", "The physicist was born in Woolsthorpe in 1643 and later taught at Cambridge for years."),
    ("Darwin", "The naturalist sailed on the Beagle from Plymouth in 1831 on a voyage around the world."),
    ("Shakespeare", "The playwright was born in Stratford in 1564 and wrote most of his plays in London."),
    ("Kant", "The philosopher was born in Konigsberg in 1724 and rarely travelled far from Prussia."),
    ("Napoleon", "The general was crowned emperor in Paris in 1804 in the cathedral of France."),
    ("Gutenberg", "The printer in Mainz produced his famous bible around 1455 using movable metal type."),
    ("Vermeer", "The painter lived in Delft and was admired in France and Germany long after his death."),
    ("Galileo", "The astronomer was tried in Rome in 1633 for his support of the views of Copernicus."),
    ("Chopin", "The pianist left Warsaw in 1830 and spent the rest of his life mostly in Paris in France."),
    ("Dickens", "The novelist was born in Portsmouth in 1812 and wrote many of his books in London."),
    ("Haydn", "The composer served a noble family in Austria for nearly thirty years near Vienna in Germany."),
    ("Stub", "Short. Tiny."),
]
PASSAGES = [{"id": f"p{i:02d}", "title": t, "text": x, "source": "toy"} for i, (t, x) in enumerate(TEXTS)]


def _token(value: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None


@pytest.fixture(scope="module")
def built():
    return items_mod.build_items(PASSAGES, n_train=12, n_heldout=8, seed=3)


def test_doctests_of_the_module_pass():
    assert doctest.testmod(items_mod).failed == 0  # benchmarks/ is outside pytest's --doctest-modules paths


def test_build_is_deterministic_and_sized(built):
    again = items_mod.build_items(list(reversed(PASSAGES)), n_train=12, n_heldout=8, seed=3)
    assert again == built
    assert [len(s) for s in built] == [12, 8]
    assert items_mod.build_items(PASSAGES, n_train=12, n_heldout=8, seed=4) != built


def test_splits_share_no_title_or_passage(built):
    train, heldout = built
    assert not {r["title"] for r in train} & {r["title"] for r in heldout}
    assert not {r["passage_id"] for r in train} & {r["passage_id"] for r in heldout}
    assert {r["split"] for r in train} == {"train"} and {r["split"] for r in heldout} == {"heldout"}
    assert "p29" not in {r["passage_id"] for r in train + heldout}  # the stub has no usable sentence


def test_anchor_differs_from_claim_only_at_the_value(built):
    for r in built[0] + built[1]:
        assert (
            r["claim"] in r["passage"] and 40 <= len(r["claim"]) <= 220 and len(r["passage"]) <= items_mod.MAX_PASSAGE
        )
        assert r["anchor"] == r["claim"].replace(r["value"], r["anchor_value"]) != r["claim"]
        assert r["kind"] == ("number" if r["value"].isdigit() else "name")
        if r["kind"] == "number":
            assert len(r["anchor_value"]) == len(r["value"])


def test_claim_supported_by_passage_and_anchor_by_mirrored_passage(built):
    for r in built[0] + built[1]:
        assert _token(r["value"], r["passage"]) and r["anchor_value"] not in r["passage"]
        assert r["anchor"] in r["mirrored_passage"] and r["claim"] not in r["mirrored_passage"]
        assert r["anchor_value"] in r["mirrored_passage"] and r["value"] not in r["mirrored_passage"]


def test_neighbour_is_another_title_of_the_same_split(built):
    for split in built:
        by_id = {r["passage_id"]: r for r in split}
        for r in split:
            neighbour = by_id[r["neighbour_passage_id"]]
            assert neighbour["title"] != r["title"] and neighbour["passage"] == r["neighbour_passage"]
            assert r["value"] not in r["neighbour_passage"]


def test_write_read_round_trip(built, tmp_path):
    rows = built[0] + built[1]
    items_mod.write_items(tmp_path / "items.parquet", rows)
    assert items_mod.read_items(tmp_path / "items.parquet") == rows
    assert pq.read_schema(tmp_path / "items.parquet").names == items_mod.ITEM_SCHEMA.names


def test_malformed_or_missing_file_names_the_problem(built, tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(built[0]).drop_columns(["anchor"]), path)
    with pytest.raises(ValueError, match=r"bad\.parquet: column 'anchor' is missing"):
        items_mod.read_items(path)
    pq.write_table(pa.Table.from_pylist(built[0]).set_column(0, "item_id", pa.array(range(12))), path)
    with pytest.raises(ValueError, match=r"column 'item_id' has type int64"):
        items_mod.read_items(path)
    with pytest.raises(FileNotFoundError, match=r"none\.parquet do not exist; build them with `python benchmarks"):
        items_mod.read_items(tmp_path / "none.parquet")
