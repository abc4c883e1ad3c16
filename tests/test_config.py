from pathlib import Path

import pytest

from score.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.generate.samples_per_query >= 2


def test_there_is_a_default_a_ci_and_a_gpu_config():
    names = {p.name for p in CONFIGS}
    assert {"default.yaml", "ci.yaml"} <= names
    assert any(load_config(p).model.backend == "vllm" for p in CONFIGS)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["generate.max_context_tokens=2048"], "report_tokens 3072 .* leaves no room in generate.max_context_tokens "
         "2048 .* cut before its first turn .* raise generate.max_context_tokens to at least 3328"),
        (["generate.max_context_tokens=20000"], "more than model.vllm.max_model_len 16384"),
    ],
)  # fmt: skip
def test_length_budgets_that_would_train_nothing_are_refused(overrides, words):
    """The 7B config as it was (report_tokens 3072, the react default's 2048-token context) cut every trajectory
    before its first turn: refused now, the fix named."""
    with pytest.raises(ConfigError, match=words):
        load_config(CONFIGS[0].parent / "qwen2.5-7b-vllm.yaml", overrides)


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(None, ["generate.samples_per_query=6", "generate.temperature=0.5", "model.threads=null"])
    assert cfg.generate.samples_per_query == 6 and cfg.generate.temperature == 0.5 and cfg.model.threads is None


@pytest.mark.parametrize(
    "override, words",
    [
        (
            ["generate.sample_per_query=3"],
            ["unknown config key 'generate.sample_per_query'", "did you mean 'samples_per_query'"],
        ),
        (["generate.samples_per_query=1"], ["'generate.samples_per_query'", "set generate.samples_per_query"]),
        (["generate.temperature=0"], ["'generate.temperature'"]),
        (["run=../escape"], ["run name", "no '..' or '/'"]),
        (["run=a/b"], ["run name"]),
        (["store.root=ftp://host/x"], ["unknown store scheme 'ftp'"]),
        (["model.backend=tpu"], ["'model.backend'"]),
        (["nonsense"], ["must look like section.key=value"]),
        (["store.root=memory://x"], ["unknown store scheme 'memory'"]),
        (["store.root="], ["names no folder"]),
        (["store.root=s3://"], ["names no folder"]),
        (["train.lr=.inf"], ["'train.lr'"]),
        (["train.lr=1.0e30"], ["'train.lr'", "less than or equal to 1"]),  # finite, but weights would not be
        (["generate.temperature=1.0e-300"], ["'generate.temperature'", "0.01"]),  # 0 in float32: NaN log-probs
        (["evaluate.judge_temperature=1.0e-9"], ["'evaluate.judge_temperature'"]),
        (["seed=-1"], ["'seed'"]),
        (["seed=99999999999999999999999"], ["'seed'", "less than 4294967296"]),
        (["data.query_column="], ["'data.query_column'"]),
        (["store.root=s3:/bucket/runs"], ["missing a '/'", "s3://bucket/prefix"]),  # else a local folder "s3:"
        (["store.lease_seconds=1e300"], ["'store.lease_seconds'"]),  # the lease's renewing thread died on it
        (["generate.samples_per_query=10000"], ["samples_per_query must be <= 64"]),
        (
            ["data.queries_per_round=2", "generate.shards=64"],
            ["generate.shards 64 is more than data.queries_per_round 2"],
        ),
        (["model.batch_size=yes"], ["'model.batch_size'", "a yes/no value where a number is wanted"]),  # else 1
        (["train.lr=off"], ["'train.lr'", "a yes/no value"]),
        (["store.storage_options={endpoint_url: 'http://x'}"], ["store.storage_options is for a store on S3"]),
        (
            ["store.root=s3://b/r", "store.storage_options={key: AKIA1234, secret: hunter22}"],
            ["store.storage_options ['key', 'secret'] would write a secret", "AWS_SECRET_ACCESS_KEY"],
        ),
        (["tracking.mlflow_uri=http://bob:hunter22@x:5000"], ["a URL with a password in it", "'http://***@x:5000'"]),
        (["campaign.train_launcher=acclerate launch"], ["'acclerate launch': its program is not found", "torchrun"]),
    ],
)
def test_bad_values_name_the_key_and_the_fix(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, override)
    for w in words:
        assert w in str(e.value)
    assert "hunter22" not in str(e.value)  # a secret is never echoed


def test_an_empty_config_file_is_an_error(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="is empty; write the sections you change"):
        load_config(tmp_path / "empty.yaml")


def test_bad_corpora_fail_in_preflight(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from score.workspace import check_corpus

    good = {"id": ["a", "b"], "title": ["A", "B"], "text": ["x", "y"], "source": ["u", "v"]}
    cases = {
        "wrong.parquet": ({"id": ["a"], "text": ["x"]}, r"has no column\(s\) \['title', 'source'\]"),
        "empty.parquet": ({k: pa.array([], pa.string()) for k in good}, "has no rows"),
        "dupes.parquet": ({**good, "id": ["a", "a"]}, r"duplicate ids \['a'\]"),
    }
    for name, (columns, message) in cases.items():
        pq.write_table(pa.table(columns), tmp_path / name)
        with pytest.raises(ConfigError, match=message):
            check_corpus(tmp_path / name)
    (tmp_path / "text.parquet").write_text("id,title\n")
    with pytest.raises(ConfigError, match="is not a Parquet file"):
        check_corpus(tmp_path / "text.parquet")
    pq.write_table(pa.table(good), tmp_path / "good.parquet")
    check_corpus(tmp_path / "good.parquet")


def test_bad_yaml_files(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "twice.yaml").write_text("train:\n  lr: 0.1\ntrain:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="key 'train' is written twice in one section"):
        load_config(tmp_path / "twice.yaml")  # YAML itself would keep the second section without a word


def test_section_fingerprint_tracks_only_named_sections():
    a, b = load_config(None), load_config(None, ["campaign.rounds=9"])
    assert a.section_fingerprint("generate") == b.section_fingerprint("generate")
    assert a.section_fingerprint("campaign") != b.section_fingerprint("campaign")


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("RANK", "abc", "RANK='abc' is not a whole number"),
        ("WORLD_SIZE", "-1", "WORLD_SIZE='-1' is not a whole number"),
        ("SCORE_CACHE", "FILE", "is a file; point it at a folder"),
        ("PREFECT_HOME", "FILE", "is a file; point it at a folder"),
    ],
)
def test_environment_variables_are_checked_before_any_command(monkeypatch, tmp_path, name, value, words):
    from score.cli import environment_problem

    (tmp_path / "f").write_text("a file")
    assert environment_problem() == ""
    monkeypatch.setenv(name, str(tmp_path / "f") if value == "FILE" else value)
    assert words in environment_problem()
