"""The LLM gateway: one ConfigurableResource over litellm for every LLM call of the pipeline."""

import os

import dagster as dg

from relabel.evaluation.cost import DEFAULT_HOURLY_RATE_USD
from relabel.llm.client import LLMClient
from relabel.llm.runner import CallPolicy

DEFAULT_LLM_MODEL = "relabel-local/qwen2.5-coder-1.5b"
DEFAULT_QUERY_MODEL = "relabel-local/qwen2.5-coder-0.5b"


def _number(name: str, cast: type = float) -> float | int | None:
    value = os.environ.get(name)
    return cast(value) if value else None


class LLMGateway(dg.ConfigurableResource):
    """Any litellm model string (``gpt-4o``, ``azure/<deployment>``, ``openai/<name>`` + ``api_base`` for
    vLLM, ``ollama/<name>``); ``relabel-local/<alias or .gguf path>`` runs the embedded llama.cpp model.
    API keys come from the provider's usual environment variables and are never stored or logged."""

    model: str = DEFAULT_LLM_MODEL
    query_model: str | None = None
    # one OpenAI-compatible server, or several comma-separated replicas of the model behind a litellm Router
    api_base: str | None = None
    deployment_rpm: int | None = None
    timeout_s: float = 300.0
    use_logprobs: bool = True
    mock_response: str | None = None
    # the call policy's own defaults (relabel.llm.runner.CallPolicy), not a second copy of them
    max_concurrency: int = CallPolicy.max_concurrency
    max_attempts: int = CallPolicy.max_attempts
    backoff_initial_s: float = CallPolicy.backoff_initial_s
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    budget_usd: float | None = None
    hourly_rate_usd: float = DEFAULT_HOURLY_RATE_USD
    ensemble_models: list[str] = []
    samples_per_model: int = 1
    sample_temperature: float = 0.7

    @classmethod
    def from_env(cls) -> "LLMGateway":
        """Settings from ``RELABEL_LLM_*`` environment variables (see docs/configuration.md).

        With nothing set, the embedded defaults split the work: the 1.5B model grades (the only small
        model with a usable signal) and the faster 0.5B writes queries. Setting ``RELABEL_LLM_MODEL``
        alone moves both roles to that model."""
        model = os.environ.get("RELABEL_LLM_MODEL")
        query_model = os.environ.get("RELABEL_QUERY_LLM_MODEL") or (None if model else DEFAULT_QUERY_MODEL)
        return cls(
            model=model or DEFAULT_LLM_MODEL,
            query_model=query_model,
            api_base=os.environ.get("RELABEL_LLM_API_BASE") or None,
            deployment_rpm=_number("RELABEL_LLM_DEPLOYMENT_RPM", int),
            max_concurrency=_number("RELABEL_LLM_MAX_CONCURRENCY", int) or CallPolicy.max_concurrency,
            requests_per_minute=_number("RELABEL_LLM_RPM", int),
            tokens_per_minute=_number("RELABEL_LLM_TPM", int),
            budget_usd=_number("RELABEL_LLM_BUDGET_USD"),
            hourly_rate_usd=_number("RELABEL_HOURLY_RATE_USD") or DEFAULT_HOURLY_RATE_USD,
            ensemble_models=[m for m in os.environ.get("RELABEL_LLM_ENSEMBLE", "").split(",") if m.strip()],
            samples_per_model=_number("RELABEL_LLM_SAMPLES", int) or 1,
        )

    def client(self, role: str = "teacher", model: str | None = None) -> LLMClient:
        """A plain client (no Dagster) for the pure functions; ``role="queries"`` gives the query writer."""
        model = model or (self.query_model if role == "queries" and self.query_model else self.model)
        return LLMClient(
            model,
            self.api_base,
            self.timeout_s,
            mock_response=self.mock_response,
            hourly_rate_usd=self.hourly_rate_usd,
            deployment_rpm=self.deployment_rpm,
        )

    def teacher_models(self) -> list[str]:
        """The teacher model, then any ensemble members."""
        return [self.model, *[m for m in self.ensemble_models if m != self.model]]

    def policy(self) -> CallPolicy:
        """Retries, concurrency, rate limits and budget for the calls of one asset: every call given this
        policy (query writing, grading, each ensemble member) draws on one budget and one rate limit."""
        return CallPolicy(
            max_concurrency=self.max_concurrency,
            max_attempts=self.max_attempts,
            backoff_initial_s=self.backoff_initial_s,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            budget_usd=self.budget_usd,
        ).shared()
