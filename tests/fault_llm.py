"""A litellm provider that injects faults, for resilience tests: ``faulty/<rate>`` models.

Each request fails transiently (503), times out, or answers garbage on its first attempts with the given
probability, decided by a hash of the request and the attempt number, so runs are reproducible."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import ModelResponse

PROVIDER = "faulty"
attempts: Counter[str] = Counter()
delay_s = 0.0


def _roll(content: str, attempt: int) -> float:
    return int(hashlib.sha256(f"{content}|{attempt}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


class FaultyProvider(CustomLLM):
    """Transient errors, timeouts and malformed answers at a configurable rate; otherwise grade 2."""

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        content = messages[-1]["content"]
        attempts[content] += 1
        roll = _roll(content, attempts[content])
        rate = float(model)
        if delay_s:
            time.sleep(delay_s)
        if roll < rate * 0.6:
            raise litellm.ServiceUnavailableError("injected 503", llm_provider=PROVIDER, model=model)
        if roll < rate * 0.8:
            raise litellm.Timeout("injected timeout", model=model, llm_provider=PROVIDER)
        text = "maybe relevant?" if roll < rate else "2"
        return ModelResponse(
            choices=[{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            usage={"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101},
        )


def register() -> None:
    """Make ``faulty/<rate>`` models resolvable (idempotent)."""
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": FaultyProvider()})
        litellm.utils.custom_llm_setup()
