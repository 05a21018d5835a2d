"""The embedded LLM: a local GGUF run in-process by llama.cpp (xllamacpp), as a litellm custom provider.

Model strings look like ``relabel-local/<alias or path to .gguf>``; every other litellm model string
(``gpt-4o``, ``openai/<name>`` with ``api_base``, ``ollama/...``) goes to litellm's own providers.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM, CustomLLMError
from litellm.types.utils import ModelResponse

from relabel.models import resolve_gguf

PROVIDER = "relabel-local"
_PASSTHROUGH = ("max_tokens", "temperature", "top_p", "seed", "logprobs", "top_logprobs", "response_format", "stop")

_servers: dict[str, Any] = {}
_lock = threading.Lock()


def local_server(model: str, n_ctx: int = 4096) -> Any:
    """One loaded ``xllamacpp.Server`` per model file and process (loading takes seconds)."""
    import xllamacpp

    path = str(resolve_gguf(model))
    with _lock:
        if path not in _servers:
            params = xllamacpp.CommonParams()
            params.model.path = path
            params.n_ctx = n_ctx
            params.n_parallel = 1
            threads = int(os.environ.get("RELABEL_LLM_THREADS", os.cpu_count() or 2))
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
            params.warmup = False
            params.verbosity = -1
            params.log_json = False
            _servers[path] = xllamacpp.Server(params)
        return _servers[path]


def unload_local_models() -> None:
    """Drop every loaded model, and with it its prompt (KV) cache: the next call loads the file afresh."""
    with _lock:
        _servers.clear()


def chat_completion(model: str, request: dict[str, Any]) -> dict[str, Any]:
    """Run one OpenAI-style chat completion request on the local model; returns the OpenAI-style dict."""
    server = local_server(model)
    with _lock:
        response = server.handle_chat_completions(request)
    if "error" in response:
        raise CustomLLMError(status_code=500, message=str(response["error"]))
    return response


class LocalGGUFProvider(CustomLLM):
    """litellm handler that answers ``relabel-local/...`` models in-process, logprobs included."""

    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:
        optional = kwargs.get("optional_params") or {}
        request: dict[str, Any] = {"messages": messages}
        request.update({key: optional[key] for key in _PASSTHROUGH if optional.get(key) is not None})
        started = time.perf_counter()
        raw = chat_completion(model, request)
        raw.pop("timings", None)
        raw["model"] = f"{PROVIDER}/{model}"
        response = ModelResponse(**raw)
        response._hidden_params["local_seconds"] = time.perf_counter() - started
        return response


def register() -> None:
    """Make ``relabel-local/...`` model strings resolvable by litellm (idempotent)."""
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": LocalGGUFProvider()})
        litellm.utils.custom_llm_setup()
