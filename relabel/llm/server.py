"""``relabel serve-llm``: the embedded GGUF model as an OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from relabel.llm.local import chat_completion

_FORWARDED = (
    "messages",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "logprobs",
    "top_logprobs",
    "response_format",
    "stop",
)


def build_app(model: str) -> Starlette:
    """Routes ``POST /v1/chat/completions`` and ``GET /v1/models`` to the in-process llama.cpp model."""

    async def completions(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        if body.get("stream"):
            return JSONResponse({"error": {"message": "streaming is not supported"}}, status_code=400)
        payload = {key: body[key] for key in _FORWARDED if body.get(key) is not None}
        try:
            response = chat_completion(model, payload)
        except Exception as error:  # noqa: BLE001 - reported to the client as a server error
            return JSONResponse({"error": {"message": str(error)}}, status_code=500)
        response.pop("timings", None)
        response["model"] = body.get("model", model)
        return JSONResponse(response)

    async def models(_: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": model, "object": "model", "owned_by": "relabel"}]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


def serve(model: str, port: int) -> None:
    """Serve until interrupted, bound to 127.0.0.1 only."""
    import uvicorn

    uvicorn.run(build_app(model), host="127.0.0.1", port=port, log_level="warning")
