"""Dependable LLM calls for a batch of items: cache, retries with backoff, bounded concurrency,
request/token rate limits, a dollar budget, and a call log row for every attempt.

All DuckDB work happens on the calling thread; worker threads only talk to the LLM. Every answered item
is committed to ``llm_cache`` as soon as it arrives, so a run killed midway resumes without paying again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb
import litellm
import tenacity
from limits import RateLimitItemPerMinute, storage, strategies

from relabel.llm.client import LLMAnswer, LLMClient, cache_key, ensure_cache, store_answer

CALLS_DDL = """
create table if not exists llm_calls (
    labeler_id varchar,
    model varchar,
    prompt_id varchar,
    prompt_version varchar,
    item_id varchar,
    cache_key varchar,
    attempt integer,
    status varchar,
    tokens_in integer,
    tokens_out integer,
    cost_usd double,
    latency_s double,
    error varchar,
    called_at timestamp default current_timestamp,
    api_base varchar,
    cached_tokens integer
);
alter table llm_calls add column if not exists api_base varchar;
alter table llm_calls add column if not exists cached_tokens integer;
"""

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    litellm.RateLimitError,
    litellm.Timeout,
    litellm.APIConnectionError,
    litellm.InternalServerError,
    litellm.ServiceUnavailableError,
    litellm.BadGatewayError,
    TimeoutError,
    ConnectionError,
)


class Budget:
    """A dollar budget shared by every call that holds it. Each attempt reserves its maximum cost before it
    is sent and settles to its actual cost when it returns, so calls in flight can never overshoot it
    together; an attempt that does not fit is not sent."""

    def __init__(self, limit_usd: float) -> None:
        self.limit_usd = float(limit_usd)
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self._lock = threading.Lock()

    def reserve(self, amount_usd: float) -> bool:
        """Hold ``amount_usd`` if it fits next to what is spent and held; ``False`` (nothing held) otherwise."""
        with self._lock:
            if self.spent_usd + self.reserved_usd + amount_usd > self.limit_usd + 1e-12:
                return False
            self.reserved_usd += amount_usd
            return True

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Release a reservation and book what the attempt really cost."""
        with self._lock:
            self.reserved_usd -= reserved_usd
            self.spent_usd += actual_usd


class BudgetExhausted(RuntimeError):
    """The next attempt's maximum cost does not fit in what is left of the budget."""


@dataclass(frozen=True)
class CallPolicy:
    """How a batch of calls behaves under load and failure. ``budget`` and ``limiter`` are shared by every
    ``run_calls`` given this policy (see ``shared()``); without them each ``run_calls`` starts its own."""

    max_concurrency: int = 1
    max_attempts: int = 4
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    budget_usd: float | None = None
    invalid_answer_retries: int = 1
    # "prefix": send calls sorted by their messages, so consecutive prompts share the longest prefix and a
    # server's prefix (KV) cache skips it; "given": in the order asked
    order: str = "prefix"
    budget: Budget | None = field(default=None, compare=False, repr=False)
    limiter: _RateLimiter | None = field(default=None, compare=False, repr=False)

    def shared(self) -> CallPolicy:
        """This policy with one budget and one rate limiter, for all the calls of a run (query writing,
        grading, every ensemble member) instead of one per batch."""
        return replace(
            self,
            budget=Budget(self.budget_usd) if self.budget_usd is not None else None,
            limiter=_RateLimiter(self.requests_per_minute, self.tokens_per_minute),
        )


CALL_ORDERS = ("prefix", "given")


@dataclass(frozen=True)
class CallRequest:
    """One item to send: its id, the rendered messages and the sampling parameters."""

    item_id: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    prompt_id: str
    prompt_version: str


@dataclass
class CallOutcome:
    """What became of one item: ``ok`` (valid answer), ``invalid`` (answered, failed validation after
    retries), ``failed`` (no answer, with the error) or ``skipped_budget`` (the budget ran out first)."""

    item_id: str
    status: str
    answer: LLMAnswer | None = None
    error: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


class _RateLimiter:
    """Blocks until a request (and its estimated tokens) fits the per-minute limits."""

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._requests = RateLimitItemPerMinute(requests_per_minute) if requests_per_minute else None
        self._tokens = RateLimitItemPerMinute(tokens_per_minute) if tokens_per_minute else None
        self._lock = threading.Lock()

    def acquire(self, tokens: int) -> None:
        while True:
            with self._lock:
                fits = (self._requests is None or self._limiter.test(self._requests, "rpm")) and (
                    self._tokens is None or self._limiter.test(self._tokens, "tpm", cost=max(1, tokens))
                )
                if fits:
                    if self._requests is not None:
                        self._limiter.hit(self._requests, "rpm")
                    if self._tokens is not None:
                        self._limiter.hit(self._tokens, "tpm", cost=max(1, tokens))
                    return
            time.sleep(0.05)


def _estimate_tokens(request: CallRequest) -> int:
    return sum(len(m["content"]) for m in request.messages) // 4 + int(request.params.get("max_tokens", 16))


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def run_calls(
    conn: duckdb.DuckDBPyConnection,
    client: LLMClient,
    requests: Sequence[CallRequest],
    *,
    labeler_id: str,
    policy: CallPolicy | None = None,
    validate: Callable[[LLMAnswer], bool] = lambda answer: True,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, CallOutcome]:
    """Answer every request: from the cache when possible, else by calling the LLM under ``policy``;
    ``progress(done, total)`` counts the calls made (cache hits are not calls)."""
    policy = policy or CallPolicy()
    ids = [request.item_id for request in requests]
    if len(set(ids)) != len(ids):
        raise ValueError(
            "every request needs its own item_id; duplicates: "
            + ", ".join(sorted({i for i in ids if ids.count(i) > 1})[:5])
        )
    ensure_cache(conn)
    conn.execute(CALLS_DDL)
    outcomes: dict[str, CallOutcome] = {}
    pending: list[tuple[CallRequest, str]] = []
    for request in requests:
        key = cache_key(
            client.model, request.messages, {**request.params, "prompt": [request.prompt_id, request.prompt_version]}
        )
        rows = conn.execute(
            "select response_text, top_logprobs, prompt_tokens, completion_tokens, latency_s "
            "from llm_cache where cache_key = ?",
            [key],
        ).fetchall()
        if rows:
            text, top, tokens_in, tokens_out, latency = rows[0]
            answer = LLMAnswer(
                text, json.loads(top) if top is not None else None, tokens_in, tokens_out, latency, from_cache=True
            )
            outcomes[request.item_id] = CallOutcome(request.item_id, "ok" if validate(answer) else "invalid", answer)
        else:
            pending.append((request, key))
    limiter = policy.limiter or _RateLimiter(policy.requests_per_minute, policy.tokens_per_minute)
    budget = policy.budget or (Budget(policy.budget_usd) if policy.budget_usd is not None else None)
    max_cost = getattr(client, "max_cost_usd", None)

    def attempt_call(request: CallRequest) -> CallOutcome:
        outcome = CallOutcome(request.item_id, "failed")
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.max_attempts),
            wait=tenacity.wait_exponential(multiplier=policy.backoff_initial_s, max=policy.backoff_max_s),
            retry=tenacity.retry_if_exception_type(TRANSIENT_ERRORS),
            reraise=True,
        )
        invalid_left = policy.invalid_answer_retries
        while True:
            try:
                for attempt in retrying:
                    with attempt:
                        held = 0.0
                        if budget is not None:
                            if max_cost is not None:
                                held = max_cost(request.messages, int(request.params.get("max_tokens", 16)))
                            if not budget.reserve(held):
                                raise BudgetExhausted(
                                    f"budget of ${budget.limit_usd:.2f} spent (${budget.spent_usd:.4f} spent, "
                                    f"${budget.reserved_usd:.4f} held by calls in flight, "
                                    f"this call may cost ${held:.4f})"
                                )
                        limiter.acquire(_estimate_tokens(request))
                        started = time.perf_counter()
                        try:
                            answer = client.complete(request.messages, **request.params)
                        except BaseException as error:
                            if budget is not None:
                                budget.settle(held, 0.0)
                            outcome.attempts.append(
                                {
                                    "status": "error",
                                    "error": _error_text(error),
                                    "latency_s": time.perf_counter() - started,
                                }
                            )
                            raise
                        if budget is not None:
                            budget.settle(held, answer.cost_usd)
            except BudgetExhausted as error:
                outcome.status = "skipped_budget" if outcome.answer is None else "invalid"
                outcome.error = str(error)
                return outcome
            except Exception as error:  # noqa: BLE001 - recorded on the outcome with its reason
                outcome.status, outcome.error = "failed", _error_text(error)
                return outcome
            valid = validate(answer)
            outcome.attempts.append({"status": "ok" if valid else "invalid", "answer": answer})
            outcome.answer = answer
            if valid or invalid_left <= 0:
                outcome.status = "ok" if valid else "invalid"
                outcome.error = None if valid else "answer failed validation"
                return outcome
            invalid_left -= 1

    if policy.order not in CALL_ORDERS:
        raise ValueError(f"call order must be one of {CALL_ORDERS}, got {policy.order!r}")
    done = 0
    queue = sorted(pending, key=lambda item: prefix_order_key(item[0])) if policy.order == "prefix" else list(pending)
    keys = {request.item_id: key for request, key in pending}
    with ThreadPoolExecutor(max_workers=max(1, policy.max_concurrency)) as pool:
        running: dict[Future[CallOutcome], CallRequest] = {}
        while queue or running:
            while queue and len(running) < max(1, policy.max_concurrency):
                if budget is not None and budget.spent_usd >= budget.limit_usd:
                    for request, _ in queue:
                        outcomes[request.item_id] = CallOutcome(
                            request.item_id, "skipped_budget", error=f"budget of ${budget.limit_usd:.2f} spent"
                        )
                    queue.clear()
                    break
                request, _ = queue.pop(0)
                running[pool.submit(attempt_call, request)] = request
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                request = running.pop(future)
                outcome = future.result()
                _log_attempts(conn, client, request, keys[request.item_id], outcome, labeler_id)
                if outcome.answer is not None and outcome.status in ("ok", "invalid"):
                    store_answer(
                        conn,
                        keys[request.item_id],
                        client.model,
                        request.prompt_id,
                        request.prompt_version,
                        outcome.answer,
                    )
                outcomes[request.item_id] = outcome
                done += 1
                if progress is not None:
                    progress(done, len(pending))
    return outcomes


def prefix_order_key(request: CallRequest) -> list[tuple[str, str]]:
    """Sort key that puts requests sharing the longest message prefix next to each other (lexicographic order
    of the messages: with ``grade_nist``, the fixed rubric, then the document, then the query)."""
    return [(m["role"], m["content"]) for m in request.messages]


def _log_attempts(
    conn: duckdb.DuckDBPyConnection,
    client: LLMClient,
    request: CallRequest,
    key: str,
    outcome: CallOutcome,
    labeler_id: str,
) -> float:
    """Write one ``llm_calls`` row per attempt; returns the dollars spent."""
    spent = 0.0
    for number, attempt in enumerate(outcome.attempts, start=1):
        answer: LLMAnswer | None = attempt.get("answer")
        cost = answer.cost_usd if answer is not None else 0.0
        spent += cost
        conn.execute(
            "insert into llm_calls (labeler_id, model, prompt_id, prompt_version, item_id, cache_key, attempt, "
            "status, tokens_in, tokens_out, cost_usd, latency_s, error, api_base, cached_tokens) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                labeler_id,
                client.model,
                request.prompt_id,
                request.prompt_version,
                request.item_id,
                key,
                number,
                attempt["status"],
                answer.prompt_tokens if answer else None,
                answer.completion_tokens if answer else None,
                cost,
                answer.latency_s if answer else attempt.get("latency_s"),
                attempt.get("error"),
                answer.api_base if answer else None,
                answer.cached_tokens if answer else None,
            ],
        )
    return spent


def cached_complete(
    conn: duckdb.DuckDBPyConnection,
    client: LLMClient,
    prompt_id: str,
    prompt_version: str,
    messages: list[dict[str, str]],
    policy: CallPolicy | None = None,
    **params: Any,
) -> LLMAnswer:
    """One request through ``run_calls`` (cache, retries, call log, and ``policy``'s rate limits and budget);
    raises when it failed."""
    request = CallRequest("single", messages, params, prompt_id, prompt_version)
    outcome = run_calls(conn, client, [request], labeler_id=f"{prompt_id}:{client.model}", policy=policy)["single"]
    if outcome.answer is None:
        raise RuntimeError(outcome.error or outcome.status)
    return outcome.answer
