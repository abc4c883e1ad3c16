"""What the stages of one process share: the config, the store, and lazily built search and model backends.

Building a backend or an index is the slow part of a stage; a campaign that runs several stages in one
process builds each once. Nothing here is global: a Workspace is made from a config and passed in.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from score.checkpoints import Policy, base_policy
from score.config import RunConfig
from score.memory_plan import check_memory
from score.models import Backend, check_target_modules, linear_layers, load_backend, model_folder
from score.models.base import free_memory
from score.models.embedded import EMBEDDED_NAME, cache_root
from score.queries import Query, QuerySet, check_gold_ids, load_query_set, queries_path
from score.search.base import SearchBackend
from score.store.store import Store, file_sha256

log = logging.getLogger(__name__)
_SAID_NO_GOLD: set[Path] = set()


class Workspace:
    def __init__(
        self,
        cfg: RunConfig,
        cache: Path | None = None,
        make_backend: Callable[..., Backend] = load_backend,  # tests pass a toy backend here
    ):
        self.cfg = cfg
        self.store = Store(cfg.store)
        self.cache = cache or cache_root()
        self._make_backend = make_backend
        self._backends: dict[str | None, Backend] = {}

    @cached_property
    def query_set(self) -> QuerySet:
        """The query file's train and held-out rows; with the bm25 corpus, every gold passage id checked in it."""
        queries = load_query_set(self.cfg.data)
        if self.cfg.search.backend == "bm25" and queries.has_gold:
            import pyarrow.parquet as pq

            self.preflight_corpus()  # a missing or malformed corpus file is named as such first
            ids = set(pq.read_table(self.corpus_path, columns=["id"]).column("id").to_pylist())
            check_gold_ids(queries, ids, queries_path(self.cfg.data))
        if not queries.has_gold and (path := queries_path(self.cfg.data)) not in _SAID_NO_GOLD:
            _SAID_NO_GOLD.add(path)  # once a process, not once a stage
            log.info("%s has no gold columns: gold measures are absent", path)
        return queries

    @property
    def queries(self) -> list[Query]:
        """The queries trained on."""
        return self.query_set.train

    @property
    def heldout_queries(self) -> list[Query]:
        """The held-out queries every checkpoint is measured on (data.heldout of them; score.gold)."""
        return self.query_set.heldout[: self.cfg.data.heldout]

    @cached_property
    def queries_fingerprint(self) -> str:
        return file_sha256(queries_path(self.cfg.data))[:16]

    @property
    def corpus_path(self) -> Path:
        """The Parquet corpus bm25 searches: search.corpus, or the shipped 'wiki' one (built once into the cache)."""
        from score.search.corpus import ensure_wiki_corpus

        return ensure_wiki_corpus(self.cache) if self.cfg.search.corpus == "wiki" else Path(self.cfg.search.corpus)

    @cached_property
    def search(self) -> SearchBackend:
        from score.search.bm25 import BM25Search

        if self.cfg.search.backend == "searxng":
            from score.search.searxng import SearxngSearch

            return SearxngSearch(str(self.cfg.search.url), self.cfg.search.timeout_s)
        return BM25Search(self.corpus_path, self.cache)

    def backend(self, policy: Policy | None = None) -> Backend:
        """The policy model: the base weights, or the base with a trained checkpoint (an adapter, or full weights)."""
        policy = policy or base_policy(self.cfg.model)
        if policy.name not in self._backends:
            self.release()  # one policy in memory at a time
            if policy.kind == "full":
                backend = self._make_backend(self.cfg.model.model_copy(update={"path": policy.path}), None)
            else:
                backend = self._make_backend(self.cfg.model, policy.path)
            backend.checkpoint = policy.name
            self._backends[policy.name] = backend
        return self._backends[policy.name]

    def restricted(self, cfg) -> Workspace:
        """This workspace seen through `cfg` (a stage's declared config view): the same store, caches and
        backends, so a stage that reads undeclared config fails while sharing what is already built."""
        view = copy.copy(self)
        view.cfg = cfg
        return view

    def preflight_corpus(self) -> None:
        """Check a corpus file (the shipped 'wiki' is built, not checked); a failure names the fix."""
        if self.cfg.search.corpus != "wiki":
            check_corpus(Path(self.cfg.search.corpus))

    def preflight_search(self) -> None:
        """One query to the search service (SearXNG), so a dead address fails before any work, naming the fix."""
        from score.config import ConfigError
        from score.search.searxng import SearchError, SearxngSearch

        try:
            SearxngSearch(self.cfg.search.url, timeout=5).search("preflight", 1)
        except SearchError as e:
            raise ConfigError(
                f"{e}; start it there (`score search-serve --port PORT` serves a corpus), or set search.url to yours "
                "or search.backend=bm25"
            ) from None

    def release(self) -> None:
        """Close the sampling backends and hand their memory back (`free_memory`): the train stage needs it for its
        own copy, and the next round's engine for its start-up. A vLLM engine is shut down, not left to the garbage
        collector (its start-up check wants model.vllm.gpu_memory_utilization of the device free)."""
        for backend in self._backends.values():
            close = getattr(backend, "close", None)
            if close is not None:
                close()
        self._backends.clear()
        free_memory()

    def preflight(self) -> None:
        """Check queries, model, corpus or search service, trackers and store before any work starts; each failure
        names the fix."""
        from score.config import ConfigError

        if self.cfg.data.queries_per_round > len(self.queries):
            raise ConfigError(
                f"data.queries_per_round {self.cfg.data.queries_per_round} is more than the {len(self.queries)} "
                f"queries of {queries_path(self.cfg.data)}; set data.queries_per_round to at most {len(self.queries)}"
            )
        check_model(self.cfg.model)
        check_context(self.cfg, self.cache)
        if self.cfg.train.method == "lora" and (
            linear := linear_layers(model_folder(self.cfg.model, self.cache), self.cache)
        ):
            check_target_modules(linear, self.cfg.train.target_modules)
        check_memory(self.cfg, model_folder(self.cfg.model, self.cache))  # on a GPU: the memory plan fits it
        if self.cfg.search.backend == "bm25":
            self.preflight_corpus()
        else:
            self.preflight_search()
        from score.tracking import check_tracking

        check_tracking(self.cfg)
        self.store.check()  # last: the only check that touches the store


def check_model(model) -> None:
    """The model is the embedded one, a local model folder (config.json inside), or a hub id (`org/name`, never a
    path that does not exist); a CUDA device is there when one is named. Raises ConfigError naming the fix."""
    from score.config import ConfigError

    if model.path != EMBEDDED_NAME:
        p = Path(model.path).expanduser()
        looks_like_hub_id = model.path.count("/") == 1 and not model.path.startswith(("/", ".", "~")) and not p.exists()
        if not looks_like_hub_id and not (p / "config.json").is_file():
            what = "has no config.json" if p.is_dir() else "is not a folder" if p.exists() else "does not exist"
            raise ConfigError(
                f"model.path {model.path} {what}; set it to a local model folder (config.json and weights) or to "
                f"'{EMBEDDED_NAME}'"
            )
    if model.backend == "transformers" and model.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"model.device {model.device}: this machine has no CUDA device; set model.device=cpu")


def check_context(cfg: RunConfig, cache: Path) -> None:
    """generate.max_context_tokens fits the model's context window (its config.json's max_position_embeddings;
    the embedded model's once converted). Raises ConfigError naming the fix."""
    import json

    from score.config import ConfigError

    folder = model_folder(cfg.model, cache)
    if not (folder / "config.json").is_file():
        return  # a hub id, or the embedded model before its conversion: its loader says
    window = json.loads((folder / "config.json").read_text()).get("max_position_embeddings")
    if isinstance(window, int) and cfg.generate.max_context_tokens > window:
        raise ConfigError(
            f"generate.max_context_tokens {cfg.generate.max_context_tokens} is more than the model's context window "
            f"({window} tokens, {folder / 'config.json'}); set generate.max_context_tokens to at most {window}"
        )


def check_corpus(path: Path) -> None:
    """A corpus file a run can search: a Parquet file with the corpus columns, rows and unique ids; raises
    ConfigError naming the problem and the fix, before any work or server starts (a few ms for 10k passages)."""
    from collections import Counter

    import pyarrow.parquet as pq

    from score.config import ConfigError
    from score.search.corpus import CORPUS_SCHEMA

    fix = f"set search.corpus to a Parquet file with columns {CORPUS_SCHEMA.names}, or to 'wiki'"
    if not path.is_file():
        raise ConfigError(f"corpus {path} {'is not a file' if path.exists() else 'does not exist'}; {fix}")
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several kinds for a file that is not Parquet
        raise ConfigError(f"corpus {path} is not a Parquet file ({type(e).__name__}); {fix}") from None
    missing = [n for n in CORPUS_SCHEMA.names if n not in schema.names]
    if missing:
        raise ConfigError(f"corpus {path} has no column(s) {missing} (it has {schema.names}); {fix}")
    ids = Counter(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    if not ids:
        raise ConfigError(f"corpus {path} has no rows; a search needs passages to find")
    dupes = sorted(str(i) for i, n in ids.items() if n > 1)
    if dupes:
        raise ConfigError(f"corpus {path} has duplicate ids {dupes[:5]}; every passage needs a unique id")
