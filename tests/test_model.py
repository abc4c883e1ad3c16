"""The transformers backend on the real embedded model (SmolLM2-135M-Instruct, CPU)."""

import pytest
import torch

from score.models import Message, SamplingParams


def test_samples_carry_logprobs_that_scoring_reproduces(tiny_model):
    prompt = tiny_model.render([Message("user", "Name three planets.")])
    out = tiny_model.sample([prompt], SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=3))
    assert len(out) == 1 and len(out[0]) == 3
    for s in out[0]:
        assert len(s.token_ids) == len(s.logprobs) > 0 and all(lp <= 0 for lp in s.logprobs)
        rescored = tiny_model.score([prompt], [s.token_ids])[0]
        assert max(abs(a - b) for a, b in zip(rescored, s.logprobs)) < 1e-3


def test_same_seed_same_samples_and_greedy_is_batch_independent(tiny_model):
    short = tiny_model.render([Message("user", "Say hello.")])
    long = tiny_model.render(
        [Message("user", "Write one sentence about the history of the Roman Empire and its roads.")]
    )
    params = SamplingParams(n=2, temperature=0.9, max_tokens=10, seed=11)
    assert [s.token_ids for s in tiny_model.sample([short], params)[0]] == [
        s.token_ids for s in tiny_model.sample([short], params)[0]
    ]
    greedy = SamplingParams(temperature=0, max_tokens=12)
    alone = tiny_model.sample([short], greedy)[0][0].token_ids
    padded = tiny_model.sample([long, short], greedy)[1][0].token_ids  # short is left-padded beside long
    assert alone == padded


def test_stop_strings_and_length_limit(tiny_model):
    prompt = tiny_model.render([Message("user", "Count from 1 to 20, separated by commas.")])
    s = tiny_model.sample([prompt], SamplingParams(temperature=0, max_tokens=40, stop=("5",)))[0][0]
    assert s.finish_reason == "stop" and s.text.endswith("5") and "6" not in s.text
    s = tiny_model.sample([prompt], SamplingParams(temperature=0, max_tokens=3))[0][0]
    assert s.finish_reason == "length" and len(s.token_ids) == 3


def _rescore(backend, prompt_ids, token_ids, temperature, choices=None):
    """Log-probs of `token_ids` after `prompt_ids` under softmax(logits / temperature), by one plain forward;
    with `choices` (per token, its answer set), under the softmax restricted to that set."""
    import torch

    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([prompt_ids + token_ids])).logits[0].float()
    logits = logits[len(prompt_ids) - 1 : -1] / temperature
    if choices is not None:
        keep = torch.full_like(logits, float("-inf"))
        for j, ids in enumerate(choices):
            keep[j, ids] = 0.0
        logits = logits + keep
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(token_ids)[:, None]).squeeze(1).tolist()


def test_sampled_logprobs_are_those_of_the_distribution_sampled_from(tiny_model):
    prompt = tiny_model.render([Message("user", "Write one sentence about rivers.")])
    [samples] = tiny_model.sample([prompt], SamplingParams(n=2, temperature=0.7, max_tokens=12, seed=4))
    for s in samples:
        expected = _rescore(tiny_model, tiny_model.tokenize(prompt), s.token_ids, 0.7)
        assert max(abs(a - b) for a, b in zip(s.logprobs, expected)) < 1e-4


def test_a_span_sampled_after_a_prefix_is_tokenized_as_the_trainer_tokenizes_it(tiny_model):
    """A rationale is sampled after a judging prefix that ends in a blank line: tokenized whole, the boundary
    "\n\n" + "Dimension" reads as two newline tokens, tokenized apart (as the trainer does) as one; sampling with
    `prefix=` conditions on the trainer's tokens, so the stored log-probs are the ones it recomputes."""
    prefix = tiny_model.render([Message("user", "Report:\nRivers carry water.\n\nDimension: clarity")]).split(
        "Dimension"
    )[0]
    suffix = "Dimension: clarity<|im_end|>\n<|im_start|>assistant\nReasoning:"
    apart = tiny_model.tokenize(prefix) + tiny_model.tokenize(suffix)
    assert apart != tiny_model.tokenize(prefix + suffix)  # the boundary this test is about
    [[s]] = tiny_model.sample([suffix], SamplingParams(temperature=1.0, max_tokens=6, seed=2), prefix=prefix)
    assert max(abs(a - b) for a, b in zip(s.logprobs, _rescore(tiny_model, apart, s.token_ids, 1.0))) < 1e-4


def test_prompts_with_their_own_prefixes_sample_as_each_would_alone(tiny_model):
    """`prefix` may be one per prompt (a query head per plan or report): batched, each prompt gets its own."""
    greedy = SamplingParams(temperature=0, max_tokens=8)
    heads, asks = ["Research query: rivers\n\n", "Research query: volcanoes and their eruptions\n\n"], ["List", "Why"]
    batched = tiny_model.sample(asks, greedy, prefix=heads)
    alone = [tiny_model.sample([a], greedy, prefix=h)[0] for h, a in zip(heads, asks)]
    assert [[s.token_ids for s in row] for row in batched] == [[s.token_ids for s in row] for row in alone]
    with pytest.raises(ValueError, match="1 prefixes for 2 prompts"):
        tiny_model.sample(asks, greedy, prefix=heads[:1])


def test_written_scores_are_sampled_actions_with_the_read_off_beside_them(tiny_model):
    from score.scale import parse_score, score_tokens

    tokens = score_tokens(tiny_model.tokenize)
    prefix = tiny_model.render([Message("user", "Rate this report from 0 to 10.\n\nReport: solar power grows [1].")])
    suffixes = ["Comprehensiveness: ", "Readability score: ", "Overall: "]
    params = SamplingParams(temperature=0.9, seed=2)
    written = tiny_model.write_scores(prefix, suffixes, tokens, params)
    first, after = tiny_model.next_token_logprobs(prefix, suffixes, list(tokens.candidates), then=tokens.then)
    assert [w.first for w in written] == first and [w.after_then for w in written] == after
    for w, suffix in zip(written, suffixes):
        assert len(w.token_ids) == (2 if w.token_ids[0] == tokens.then else 1)
        prompt_ids = tiny_model.tokenize(prefix) + tiny_model.tokenize(suffix)
        expected = _rescore(tiny_model, prompt_ids, w.token_ids, 0.9, w.choices)
        assert max(abs(a - b) for a, b in zip(w.logprobs, expected)) < 1e-4
        assert parse_score(tiny_model.decode(w.token_ids)) is not None  # an answer, by construction
    again = tiny_model.write_scores(prefix, suffixes, tokens, params)
    assert [w.token_ids for w in again] == [w.token_ids for w in written]  # seeded


def test_restricted_answers_are_only_answer_tokens_and_the_trainer_recomputes_their_logprobs(tiny_model):
    """Scores and verdicts drawn from their answer sets: 48 draws each write only answer tokens (never an
    unparsable one), and a first train step on them (shared-prefix packing, restricted log-softmax) has ratio 1."""
    from score.config import ModelConfig, TrainConfig
    from score.evaluator.claims import answer_tokens, parse_verdict
    from score.models import resolve_model_path
    from score.scale import parse_score, score_tokens
    from score.trainer import Trainer, TrainSample

    scores, verdicts = score_tokens(tiny_model.tokenize), answer_tokens(tiny_model.tokenize)
    prefix = tiny_model.render([Message("user", "Passage: The Rhine is 1,230 km long.\n\nRate and check.")])
    asks = [f"Claim {k}: the Rhine is {k}00 km long. Answer: " for k in range(12)]
    samples = []
    for answers, parse in ((scores, parse_score), (verdicts, parse_verdict)):
        for seed in range(4):
            for ask, w in zip(
                asks, tiny_model.write_scores(prefix, asks, answers, SamplingParams(temperature=1.5, seed=seed))
            ):
                assert all(t in c for t, c in zip(w.token_ids, w.choices)) and w.choices[0] == list(answers.candidates)
                assert parse(tiny_model.decode(w.token_ids)) is not None
                samples.append(
                    TrainSample("evaluator", tiny_model.tokenize(ask), w.token_ids, w.logprobs, 1.0, temperature=1.5,
                                prefix_ids=tiny_model.tokenize(prefix), choices=w.choices)
                )  # fmt: skip
    path = resolve_model_path(ModelConfig())
    [first] = Trainer(ModelConfig(), TrainConfig(batch_size=128), path, None, 0).train(samples, {"evaluator": 1.0}, 1)
    assert first.ratio_mean == pytest.approx(1.0, abs=1e-3) and first.clip_frac == 0.0
    assert first.sampler_gap_mean < 1e-4 and first.sampler_gap_tokens == first.tokens  # one engine, one numerics


def test_draw_samples_each_index_in_proportion_to_its_weight():
    """The sampler's inverse-CDF draw (one uniform a row) against the weights it draws from: 40k draws of a
    five-way distribution with a zero, each share within 0.01 of its probability, the zero never drawn."""
    from score.models.transformers_backend import draw

    probs = torch.tensor([0.1, 0.0, 0.2, 0.3, 0.4])
    g = torch.Generator().manual_seed(0)
    picks = torch.cat([draw(probs.expand(1000, 5), g) for _ in range(40)])  # (40000,)
    shares = torch.bincount(picks, minlength=5).float() / len(picks)
    assert torch.allclose(shares, probs, atol=0.01), shares
    assert shares[1] == 0
