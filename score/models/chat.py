"""What every local backend shares: the model's own tokenizer and chat template, so that a prompt is rendered
and tokenized identically whichever engine samples it (the artifacts store the rendered string; the trainer
re-tokenizes exactly that)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from score.models.base import Message, Prompt, prefixes_of


class ChatTokenizer:
    """`render`, `tokenize` and `decode` over a Hugging Face tokenizer; `eos_ids` are left out of decoded text."""

    def __init__(self, path: str, eos_ids: Iterable[int] | int | None = None):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.set_eos(eos_ids)

    def set_eos(self, eos_ids: Iterable[int] | int | None) -> None:
        eos = eos_ids if eos_ids is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple, set)) else [eos])

    def render(self, messages: Sequence[Message], continue_final: bool = False) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return self.tokenizer.apply_chat_template(
            chat, tokenize=False, add_generation_prompt=not continue_final, continue_final_message=continue_final
        )

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_prompts(self, prompts: Sequence[Prompt], prefix: str | Sequence[str]) -> list[list[int]]:
        """Token ids of each `prefix + prompt` (`Backend.sample`'s arguments), the two tokenized apart as the trainer
        tokenizes a span stored with a prefix; each distinct prefix tokenized once; a prompt of token ids as it is."""
        prefixes = prefixes_of(prefix, len(prompts))
        heads = {h: self.tokenize(h) if h else [] for h in set(prefixes)}
        return [heads[h] + (self.tokenize(p) if isinstance(p, str) else list(p)) for h, p in zip(prefixes, prompts)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in self.eos_ids], skip_special_tokens=False)
