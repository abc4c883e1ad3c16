"""The evaluator role of the real embedded model on real reports and their corrupted copies (slow)."""

import pytest

from score.config import load_config
from score.runner import run_stage, stage_folder
from score.workspace import Workspace


@pytest.mark.slow
def test_bundled_model_scores_reports_and_corruptions(tmp_path, capsys):
    cfg = load_config(
        "configs/ci.yaml",
        [f"store.root={tmp_path}", "evaluate.probe_share=1.0", "generate.report_tokens=96", "data.queries_per_round=2"],
    )
    ws = Workspace(cfg)
    run_stage(ws, "generate-reports", 0)
    out = run_stage(ws, "self-evaluate", 0)
    stats = out.manifest.stats
    probes = ws.store.read_table(stage_folder(ws, "self-evaluate", 0), "probes.parquet").to_pylist()
    scored = [p for p in probes if p["changed"]]
    assert len(probes) == 4 and scored  # every report probed; those with something to damage were scored
    scores = ws.store.read_table(stage_folder(ws, "self-evaluate", 0), "scores.parquet").to_pylist()
    assert all(0.0 <= s["score"] <= 10.0 for s in scores)  # never NaN, always on the scale
    assert {s["probe_kind"] for s in scores if s["probe_kind"]} == {p["kind"] for p in scored}
    spans = ws.store.read_table(stage_folder(ws, "self-evaluate", 0), "judgement_spans.parquet").to_pylist()
    assert spans and all(
        s["span"]["token_ids"] and len(s["span"]["logprobs"]) == len(s["span"]["token_ids"]) for s in spans
    )
    assert all(s["written"] is None or 0.0 <= s["written"] <= 10.0 for s in spans)  # parsed, or counted unparsable
    assert stats["judgements"] == len(spans)
    with capsys.disabled():  # the finding, printed: a 135M judge is expected near chance (0.5)
        print(
            f"\n[bundled model] corruption detection {stats['detection']:.2f} over {stats['probed_reports']} probed "
            f"reports; judgement consistency {stats['agreement']:.2f}, written-score spread "
            f"{stats['score_spread']:.2f}, unparsable {stats['unparsable_rate']:.2f}; rubric parse failures "
            f"{stats['parse_failure_rate']:.2f}, repairs {stats['parse_repair_rate']:.2f}"
        )
    assert 0.0 <= stats["detection"] <= 1.0
