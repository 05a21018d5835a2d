"""LLM calls through litellm, cached in DuckDB so a re-run or a resumed run never pays twice."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import duckdb  # noqa: E402
import litellm  # noqa: E402

from relabel.evaluation.cost import DEFAULT_HOURLY_RATE_USD  # noqa: E402
from relabel.llm import local as local_llm  # noqa: E402

ROUTER_COOLDOWN_S = 60.0  # how long a failing deployment of a pool gets no calls

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
    cost_usd: float = 0.0
    api_base: str | None = None  # the deployment that answered, when the model is served from an api_base
    cached_tokens: int = 0  # prompt tokens the server reused from its prefix (KV) cache


@dataclass
class LLMClient:
    """A litellm model string plus call settings; ``relabel-local/...`` runs the embedded GGUF. ``api_base``
    may list several comma-separated deployments of the same model (vLLM replicas, OpenAI-compatible servers):
    a litellm Router then balances the calls over them, puts a failing deployment in cooldown so that the
    runner's retry goes to another one, and caps each deployment at ``deployment_rpm`` requests per minute."""

    model: str
    api_base: str | None = None
    timeout_s: float = 300.0
    mock_response: str | None = None
    hourly_rate_usd: float = DEFAULT_HOURLY_RATE_USD
    deployment_rpm: int | None = None
    calls_made: int = field(default=0, init=False)
    spent_usd: float = field(default=0.0, init=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _router: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.model.startswith(local_llm.PROVIDER + "/"):
            local_llm.register()

    def api_bases(self) -> list[str]:
        """The deployments ``api_base`` names (none, one, or a pool)."""
        return [base.strip() for base in (self.api_base or "").split(",") if base.strip()]

    def router_model_list(self) -> list[dict[str, Any]]:
        """One litellm Router deployment per api_base, all serving ``model``."""
        key = _api_key(self.model)
        return [
            {
                "model_name": self.model,
                "litellm_params": {
                    "model": self.model,
                    "api_base": base,
                    **({"api_key": key} if key else {}),
                    **({"rpm": self.deployment_rpm} if self.deployment_rpm else {}),
                },
            }
            for base in self.api_bases()
        ]

    def router(self) -> Any:
        """The litellm Router over the pool, built once. It does not retry by itself (retries belong to
        llm_runner's CallPolicy): a deployment that fails once cools down, and the retry picks another."""
        if self._router is None:
            self._router = litellm.Router(
                model_list=self.router_model_list(),
                routing_strategy="simple-shuffle",
                num_retries=0,
                allowed_fails=0,
                cooldown_time=ROUTER_COOLDOWN_S,
            )
        return self._router

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        logprobs: bool = False,
        response_format: dict[str, Any] | None = None,
        temperature: float = 0.0,
        sample: int = 0,
    ) -> LLMAnswer:
        """One chat completion; raises litellm's exceptions. ``sample`` only tells apart repeated samples of
        the same request (it is part of the cache key, not sent)."""
        kwargs: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=10)
        if response_format is not None:
            kwargs["response_format"] = response_format
        bases = self.api_bases()
        complete = self.router().completion if len(bases) > 1 else litellm.completion
        if len(bases) == 1:
            kwargs["api_base"] = bases[0]
            key = _api_key(self.model)
            if key:
                kwargs["api_key"] = key
        if self.mock_response is not None:
            kwargs["mock_response"] = self.mock_response
        started = time.perf_counter()
        response = complete(
            model=self.model,
            messages=messages,
            timeout=self.timeout_s,
            num_retries=0,  # retries belong to llm_runner's CallPolicy
            drop_params=True,
            **kwargs,
        )
        choice = response.choices[0]
        top = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if content:
            top = {item.token: item.logprob for item in content[0].top_logprobs}
        usage = getattr(response, "usage", None)
        latency = time.perf_counter() - started
        cost = self.cost(response, latency)
        with self._count_lock:  # worker threads of llm_runner share one client
            self.calls_made += 1
            self.spent_usd += cost
        return LLMAnswer(
            text=choice.message.content or "",
            top_logprobs=top,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency,
            cost_usd=cost,
            api_base=(getattr(response, "_hidden_params", None) or {}).get("api_base") or (bases[0] if bases else None),
            cached_tokens=int(getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", 0) or 0),
        )

    def max_cost_usd(self, messages: list[dict[str, str]], max_tokens: int) -> float:
        """The most one attempt can cost, reserved from the budget before it is sent: the price of as many
        prompt tokens as the messages have UTF-8 bytes (a byte-level tokenizer never makes more) plus
        ``max_tokens`` completion tokens, for priced API models; else the timeout in machine-seconds times
        ``hourly_rate_usd``."""
        if not self.model.startswith(local_llm.PROVIDER + "/") and self.mock_response is None:
            prompt_bytes = sum(len(str(m.get("content", "")).encode()) + 8 for m in messages)
            try:
                prompt, completion = litellm.cost_per_token(
                    model=self.model, prompt_tokens=prompt_bytes, completion_tokens=int(max_tokens)
                )
                return float(prompt + completion)
            except Exception:  # noqa: BLE001 - unpriced model: machine time, as in cost()
                pass
        return self.timeout_s * self.hourly_rate_usd / 3600.0

    def cost(self, response: Any, latency_s: float) -> float:
        """Dollars for one call: litellm's price table for priced API models, else machine-seconds times
        ``hourly_rate_usd`` (local llama.cpp, self-hosted vLLM, mocks)."""
        if not self.model.startswith(local_llm.PROVIDER + "/") and self.mock_response is None:
            try:
                return float(litellm.completion_cost(completion_response=response))
            except Exception:  # noqa: BLE001 - unpriced model: fall back to machine time
                pass
        return latency_s * self.hourly_rate_usd / 3600.0


def ensure_cache(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the ``llm_cache`` table if it is missing."""
    conn.execute(CACHE_DDL)


def _api_key(model: str) -> str | None:
    """The key sent with an api_base: ``RELABEL_LLM_API_KEY``, read at call time and never stored; keyless
    OpenAI-compatible servers (vLLM, llama.cpp) get a dummy one; else None (litellm reads the provider's own)."""
    key = os.environ.get("RELABEL_LLM_API_KEY")
    if key or (model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY")):
        return key or "no-key"
    return None


def cache_key(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """Key over model, rendered messages and sampling parameters."""
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def store_answer(
    conn: duckdb.DuckDBPyConnection, key: str, model: str, prompt_id: str, prompt_version: str, answer: LLMAnswer
) -> None:
    """Commit one answer to ``llm_cache`` (first answer wins)."""
    conn.execute(
        "insert into llm_cache (cache_key, model, prompt_id, prompt_version, response_text, top_logprobs, "
        "prompt_tokens, completion_tokens, latency_s) values (?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
        [
            key,
            model,
            prompt_id,
            prompt_version,
            answer.text,
            json.dumps(answer.top_logprobs) if answer.top_logprobs is not None else None,
            answer.prompt_tokens,
            answer.completion_tokens,
            answer.latency_s,
        ],
    )
