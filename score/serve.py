"""A small OpenAI-compatible server over any backend: `score serve` (POST /v1/chat/completions).

It lets a frozen model act as an external meta-harness controller or judge for another run, and gives the
HTTP client a real server to be tested against. One request at a time (the backend is not thread-safe);
for throughput serve the model with vLLM instead, which speaks the same API.
"""

from __future__ import annotations

import threading
import time
import uuid

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from score.models.base import Backend, Message, SamplingParams


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage]
    n: int = Field(1, ge=1, le=16)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(256, ge=1, le=4096)
    stop: list[str] | str | None = None
    seed: int | None = None


def make_app(backend: Backend, model_name: str) -> FastAPI:
    app = FastAPI(title="score serve")
    lock = threading.Lock()

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "score"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> dict:
        if req.model not in (None, model_name):
            raise HTTPException(404, f"model {req.model!r} is not served here; this server serves {model_name!r}")
        roles = {"system", "user", "assistant"}
        if not req.messages or any(m.role not in roles for m in req.messages):
            raise HTTPException(400, "messages must be a non-empty list with roles system, user or assistant")
        prompt = backend.render([Message(m.role, m.content) for m in req.messages])  # type: ignore[arg-type]
        stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
        params = SamplingParams(req.n, req.temperature, req.top_p, req.max_tokens, stop, req.seed or 0)
        with lock:
            samples = backend.sample([prompt], params)[0]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": s.text}, "finish_reason": s.finish_reason}
                for i, s in enumerate(samples)
            ],
            "usage": {
                "prompt_tokens": samples[0].prompt_tokens,
                "completion_tokens": sum(len(s.token_ids) for s in samples),
                "total_tokens": samples[0].prompt_tokens + sum(len(s.token_ids) for s in samples),
            },
        }

    return app
