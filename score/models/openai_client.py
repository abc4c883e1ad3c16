"""A client for OpenAI-compatible chat endpoints (vLLM, `score serve`, hosted APIs): the external meta-harness
controller and external judges talk through it. Standard library only; the API key comes from an
environment variable, never from a config file."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

from score.models.base import Message


class EndpointError(RuntimeError):
    """The endpoint is down, refused the request, or answered something that is not a chat completion."""


_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer|Basic)\s+[^\s\"',;}]+", re.IGNORECASE)
_AUTH_LINE = re.compile(r"((?:Proxy-)?Authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n,}]+", re.IGNORECASE)


def redact(text: str, env: dict[str, str] | None = None, secrets: Sequence[str] = ()) -> str:
    """`text` (an endpoint's answer, quoted in an error) without credentials: authorization headers, bearer and
    basic tokens, the value of every environment variable whose name says key, token, secret or password, and the
    value of every variable named in `secrets` (the one an endpoint's `api_key_env` names, whatever its name).

    >>> redact('401: {"headers": {"Authorization": "Bearer sk-abc123"}} sk-abc123', {"OPENAI_API_KEY": "sk-abc123"})
    '401: {"headers": {"Authorization": "[redacted]"}} [redacted]'
    >>> redact("echo: hunter22", {"LLM_CREDENTIAL": "hunter22"}, secrets=["LLM_CREDENTIAL"])
    'echo: [redacted]'
    """
    env = os.environ if env is None else env
    for name, value in env.items():
        if (_SECRET_NAME.search(name) or name in secrets) and len(value) >= 4:
            text = text.replace(value, "[redacted]")
    text = _AUTH_LINE.sub(lambda m: m.group(1) + "[redacted]", text)
    return _BEARER.sub("[redacted]", text)


@dataclass
class ChatClient:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 120.0

    @classmethod
    def of(cls, endpoint) -> ChatClient:
        """The client of a config's endpoint (`score.config.EndpointConfig`)."""
        return cls(endpoint.base_url, endpoint.model, endpoint.api_key_env, endpoint.timeout_s)

    def chat(
        self, messages: Sequence[Message], *, n: int = 1, temperature: float = 0.7, max_tokens: int = 256, seed: int = 0
    ) -> list[str]:
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "n": n,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
        }
        headers = {"Content-Type": "application/json"}
        if os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as e:
            body = redact(e.read()[:2000].decode(errors="replace"), secrets=[self.api_key_env])[:300]  # whole, then cut
            raise EndpointError(f"{url} answered HTTP {e.code}: {body}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise EndpointError(
                f"cannot reach {url} ({getattr(e, 'reason', e)}); is the server up? check the base_url"
            ) from None
        except json.JSONDecodeError:
            raise EndpointError(f"{url} did not answer JSON; is it an OpenAI-compatible endpoint?") from None
        try:
            return [c["message"]["content"] for c in payload["choices"]]
        except (KeyError, TypeError):
            raise EndpointError(
                f"{url} answered without choices[].message.content: "
                f"{redact(str(payload), secrets=[self.api_key_env])[:200]}"
            ) from None
