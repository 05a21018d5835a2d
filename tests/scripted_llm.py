"""A deterministic litellm custom provider for tests: ``scripted/<behaviour>`` models.

- query prompts get JSON queries (one key per requested kind) built from the document title;
  ``scripted/collapsed`` answers the same generic query for every document and kind, ``scripted/noisy``
  one query per filter (too short, title copy, German, verbatim span, a good one and its near-duplicate),
  ``scripted/prose`` plain text instead of JSON;
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

from relabel.synthesis.queries import kind_keys

PROVIDER = "scripted"
calls: list[str] = []
COLLAPSED = ["company policy document", "the company policy documents", "company documents policy"]


def _field(text: str, name: str) -> str:
    match = re.search(rf"^{name}: (.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def answer(model: str, user: str) -> str:
    """The scripted answer for one user message."""
    if model == "broken":
        raise CustomLLMError(status_code=503, message="scripted outage")
    if "search queries for this document" in user:
        keys = kind_keys([kind.strip() for kind in _field(user, "Kinds").split(",") if kind.strip()])
        if model == "prose":
            return "Here are some queries: vpn setup, vpn help"
        if model == "collapsed":
            return json.dumps({key: COLLAPSED[i % len(COLLAPSED)] for i, key in enumerate(keys)})
        title = _field(user, "Title").lower()
        words = title.split()
        if model == "noisy":
            body = user.split("<document>", 1)[-1].split("\n\n", 1)[-1]
            noisy = [
                "ok",
                title,
                "wie ist der urlaub für neue mitarbeiter geregelt",
                " ".join(body.split()[:9]),
                f"{words[0]} guide for new starters",
                f"new starters guide {words[0]}",
            ]
            return json.dumps(dict(zip(keys, noisy, strict=False)))
        queries = [f"{' '.join(words[:3])} help", f"where is the {words[-1]} info"]
        return json.dumps(dict(zip(keys, queries, strict=False)))
    if model == "garbage":
        return "I think this is quite relevant!"
    query = set(re.findall(r"\w{3,}", _field(user, "Query").lower()))
    body = user.split("<document>", 1)[-1].split("</document>", 1)[0].lower()
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
