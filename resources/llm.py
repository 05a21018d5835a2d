"""The LLM gateway: one ConfigurableResource over litellm for every LLM call of the pipeline."""

import os

import dagster as dg

from relabel.llm_client import LLMClient

DEFAULT_LLM_MODEL = "relabel-local/qwen2.5-coder-0.5b"


class LLMGateway(dg.ConfigurableResource):
    """Any litellm model string (``gpt-4o``, ``azure/<deployment>``, ``openai/<name>`` + ``api_base`` for
    vLLM, ``ollama/<name>``); ``relabel-local/<alias or .gguf path>`` runs the embedded llama.cpp model.
    API keys come from the provider's usual environment variables and are never stored."""

    model: str = DEFAULT_LLM_MODEL
    api_base: str | None = None
    timeout_s: float = 300.0
    num_retries: int = 2
    use_logprobs: bool = True
    mock_response: str | None = None

    @classmethod
    def from_env(cls) -> "LLMGateway":
        """Settings from ``RELABEL_LLM_MODEL`` and ``RELABEL_LLM_API_BASE``."""
        return cls(
            model=os.environ.get("RELABEL_LLM_MODEL", DEFAULT_LLM_MODEL),
            api_base=os.environ.get("RELABEL_LLM_API_BASE") or None,
        )

    def client(self) -> LLMClient:
        """A plain client (no Dagster) for the pure labeling functions."""
        return LLMClient(self.model, self.api_base, self.timeout_s, self.num_retries, self.mock_response)
