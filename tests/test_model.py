"""The transformers backend on the real embedded model (SmolLM2-135M-Instruct, CPU)."""

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
