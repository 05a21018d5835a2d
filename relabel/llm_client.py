"""LLM calls through litellm, cached in DuckDB so a re-run or a resumed run never pays twice."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import duckdb  # noqa: E402
import litellm  # noqa: E402

from relabel import local_llm  # noqa: E402

CACHE_DDL = """
create table if not exists llm_cache (
    cache_key varchar primary key,
    model varchar,
    prompt_id varchar,
    prompt_version varchar,
    response_text varchar,
    top_logprobs json,
    prompt_tokens integer,
    completion_tokens integer,
    latency_s double,
    created_at timestamp default current_timestamp
)
"""


@dataclass(frozen=True)
class LLMAnswer:
    """What one call returned: the text, the first token's top logprobs (if the provider gave them)."""

    text: str
    top_logprobs: dict[str, float] | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    from_cache: bool = False


@dataclass
class LLMClient:
    """A litellm model string plus call settings; ``relabel-local/...`` runs the embedded GGUF."""

    model: str
    api_base: str | None = None
    timeout_s: float = 300.0
    num_retries: int = 2
    mock_response: str | None = None
    calls_made: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.model.startswith(local_llm.PROVIDER + "/"):
            local_llm.register()

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        logprobs: bool = False,
        response_format: dict[str, Any] | None = None,
    ) -> LLMAnswer:
        """One chat completion at temperature 0; raises litellm's exceptions after retries."""
        kwargs: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.0}
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=10)
        if response_format is not None:
            kwargs["response_format"] = response_format
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.mock_response is not None:
            kwargs["mock_response"] = self.mock_response
        started = time.perf_counter()
        response = litellm.completion(
            model=self.model,
            messages=messages,
            timeout=self.timeout_s,
            num_retries=self.num_retries,
            drop_params=True,
            **kwargs,
        )
        self.calls_made += 1
        choice = response.choices[0]
        top = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if content:
            top = {item.token: item.logprob for item in content[0].top_logprobs}
        usage = getattr(response, "usage", None)
        return LLMAnswer(
            text=choice.message.content or "",
            top_logprobs=top,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=time.perf_counter() - started,
        )


def ensure_cache(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the ``llm_cache`` table if it is missing."""
    conn.execute(CACHE_DDL)


def cache_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """Key over model, rendered messages and sampling parameters."""
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_complete(
    conn: duckdb.DuckDBPyConnection,
    client: LLMClient,
    prompt_id: str,
    prompt_version: str,
    messages: list[dict[str, str]],
    **params: Any,
) -> LLMAnswer:
    """Answer from ``llm_cache`` when this exact request was answered before, else call and store."""
    key = cache_key(client.model, messages, {**params, "prompt": [prompt_id, prompt_version]})
    rows = conn.execute(
        "select response_text, top_logprobs, prompt_tokens, completion_tokens, latency_s "
        "from llm_cache where cache_key = ?",
        [key],
    ).fetchall()
    if rows:
        row = rows[0]
        top = json.loads(row[1]) if row[1] is not None else None
        return LLMAnswer(row[0], top, row[2], row[3], row[4], from_cache=True)
    answer = client.complete(messages, **params)
    conn.execute(
        "insert into llm_cache (cache_key, model, prompt_id, prompt_version, response_text, top_logprobs, "
        "prompt_tokens, completion_tokens, latency_s) values (?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
        [
            key,
            client.model,
            prompt_id,
            prompt_version,
            answer.text,
            json.dumps(answer.top_logprobs) if answer.top_logprobs is not None else None,
            answer.prompt_tokens,
            answer.completion_tokens,
            answer.latency_s,
        ],
    )
    return answer
