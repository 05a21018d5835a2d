"""LLM access: the litellm client and its DuckDB answer cache, the batch runner (retries, budget, rate limits,
call order), the embedded GGUF model and its OpenAI-compatible server, and the prompt files."""
