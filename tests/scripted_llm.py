"""A deterministic litellm custom provider for tests: ``scripted/<behaviour>`` models.

- query prompts get JSON queries built from the document title;
- grading prompts get a digit from word overlap between query and document (``scripted/overlap``),
  a fixed garbage answer (``scripted/garbage``) or an exception (``scripted/broken``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import ModelResponse

PROVIDER = "scripted"
calls: list[str] = []


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def answer(model: str, user: str) -> str:
    """The scripted answer for one user message."""
    if model == "broken":
        raise CustomLLMError(status_code=503, message="scripted outage")
    if "search queries for this document" in user:
        title = _field(user, "Title").lower()
        words = title.split()
        return json.dumps({"queries": [f"{' '.join(words[:3])} help", f"where is the {words[-1]} info"]})
    if model == "garbage":
        return "I think this is quite relevant!"
    query = set(re.findall(r"\w{3,}", _field(user, "Query").lower()))
    body = user.split("<document>", 1)[-1].lower()
    overlap = sum(1 for word in query if word in body)
    return str(min(3, overlap))


class ScriptedProvider(CustomLLM):
    """Answers from ``answer``; counts calls in ``calls``."""

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        calls.append(model)
        text = answer(model, messages[-1]["content"])
        return ModelResponse(
            choices=[{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            usage={
                "prompt_tokens": len(messages[-1]["content"]) // 4,
                "completion_tokens": 1,
                "total_tokens": 1 + len(messages[-1]["content"]) // 4,
            },
        )


def register() -> None:
    """Make ``scripted/...`` models resolvable (idempotent)."""
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": ScriptedProvider()})
        litellm.utils.custom_llm_setup()
