"""The LLM gateway: one ConfigurableResource over litellm for every LLM call of the pipeline."""

import os

import dagster as dg

from relabel.llm_client import LLMClient

DEFAULT_LLM_MODEL = "relabel-local/qwen2.5-coder-1.5b"
DEFAULT_QUERY_MODEL = "relabel-local/qwen2.5-coder-0.5b"


class LLMGateway(dg.ConfigurableResource):
    """Any litellm model string (``gpt-4o``, ``azure/<deployment>``, ``openai/<name>`` + ``api_base`` for
    vLLM, ``ollama/<name>``); ``relabel-local/<alias or .gguf path>`` runs the embedded llama.cpp model.
    API keys come from the provider's usual environment variables and are never stored."""

    model: str = DEFAULT_LLM_MODEL
    query_model: str | None = None
    api_base: str | None = None
    timeout_s: float = 300.0
    num_retries: int = 2
    use_logprobs: bool = True
    mock_response: str | None = None

    @classmethod
    def from_env(cls) -> "LLMGateway":
        """Settings from ``RELABEL_LLM_MODEL``, ``RELABEL_QUERY_LLM_MODEL`` and ``RELABEL_LLM_API_BASE``.

        With nothing set, the embedded defaults split the work: the 1.5B model grades (the only small
        model with a usable signal) and the faster 0.5B writes queries. Setting ``RELABEL_LLM_MODEL``
        alone moves both roles to that model."""
        model = os.environ.get("RELABEL_LLM_MODEL")
        query_model = os.environ.get("RELABEL_QUERY_LLM_MODEL") or (None if model else DEFAULT_QUERY_MODEL)
        return cls(
            model=model or DEFAULT_LLM_MODEL,
            query_model=query_model,
            api_base=os.environ.get("RELABEL_LLM_API_BASE") or None,
        )

    def client(self, role: str = "teacher") -> LLMClient:
        """A plain client (no Dagster) for the pure functions; ``role="queries"`` gives the query writer."""
        model = self.query_model if role == "queries" and self.query_model else self.model
        return LLMClient(model, self.api_base, self.timeout_s, self.num_retries, self.mock_response)
