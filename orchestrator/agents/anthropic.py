"""The `anthropic` backend: our loop on the Messages API through the official SDK.

This module owns what is particular to the API: prompt-cache breakpoints, telling faults apart
(wait, stop the run resumably, fail the attempt, or refuse to start), and usage with cost.
The key (ANTHROPIC_API_KEY, or ANTHROPIC_AUTH_TOKEN for a bearer token) is handed to the client
explicitly: the CLI takes it out of the environment at start, so that no child inherits it. The
client still reads ANTHROPIC_BASE_URL itself; we never pass a base_url, so gateways and proxies
configured there keep working.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anthropic

from orchestrator.agents.base import Agent, AgentConfigError, AgentRequest, AgentUnavailable, RateGate
from orchestrator.agents.loop import (
    LoopAgent,
    LoopLimits,
    Message,
    Model,
    ModelCallFailed,
    ModelReply,
    PromptTooLong,
)
from orchestrator.agents.pricing import price_for, priced
from orchestrator.agents.rate import LocalRateGate
from orchestrator.agents.review_loop import ReviewLoop
from orchestrator.config import Settings
from orchestrator.domain.usage import Usage
from orchestrator.tools.environment import redact, secret
from orchestrator.tools.toolset import ToolSpec

NO_KEY = (
    "ANTHROPIC_API_KEY is not set; export it, or run the offline demo with `orchestrate demo` / use "
    "`--agent scripted --script FILE`"
)
RESUME = "resume later with `orchestrate resume`"
CACHE = {"type": "ephemeral"}
PREFIX_CACHE = {"type": "ephemeral", "ttl": "1h"}
"""The run's shared prefix (tools + system, the same for every task) lives an hour: the gap between
one task's last request and the next one's first (its checks, its landing) often passes 5 minutes,
and every later task would write it again (benchmarks/cache_ttl_bench.py: every later task reads it,
and the run costs 0.5-1 % less than with 5 minutes, the 2x write paid once an hour)."""
NON_STREAMING_MAX_TOKENS = 21_333
"""Above this the SDK refuses a non-streaming call (it could outlast 10 minutes): we stream."""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait (retry-after-ms, retry-after seconds or HTTP date)."""
    try:
        if "retry-after-ms" in headers:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        raw = headers.get("retry-after")
        if raw is None:
            return None
        try:
            return max(0.0, float(raw))
        except ValueError:
            parsed = email.utils.parsedate_tz(raw)
            return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())
    except (ValueError, OverflowError):
        return None


def _api_message(exc: anthropic.APIStatusError) -> str:
    message = getattr(exc, "api_message", None)
    if not message and isinstance(exc.body, dict):
        error = exc.body.get("error")
        message = error.get("message") if isinstance(error, dict) else None
    return redact(str(message or exc.message))[:500]


def _error_type(exc: anthropic.APIStatusError) -> str:
    if isinstance(exc.body, dict):
        error = exc.body.get("error")
        if isinstance(error, dict):
            return str(error.get("type") or "")
    return ""


def cache_marked(system: str, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
    """Request fields with prompt-cache breakpoints, four at most as the API allows: the system
    prompt (the cache holds tools then system: one prefix, the same for every task of a run), the
    task prompt (first message), the previous request's end and this one's.

    The previous end is marked because the API looks a breakpoint's prefix up at most 20 blocks
    back: after a turn of 10+ parallel tool calls (a tool_use and a tool_result block each), the
    new end alone would miss what the previous request wrote. The conversation itself is not
    changed: marked blocks are copies, so old breakpoints never pile up past the limit."""
    tool_params: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in tools
    ]
    marked = list(messages)
    # The previous request ended with the user message before the last assistant reply.
    for index in sorted({0, len(messages) - 3, len(messages) - 1}):
        if index < 0 or index >= len(messages):
            continue
        content = messages[index]["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        if blocks:
            blocks[-1] = {**blocks[-1], "cache_control": CACHE}
        marked[index] = {**messages[index], "content": blocks}
    return {
        "system": [{"type": "text", "text": system, "cache_control": PREFIX_CACHE}],
        "tools": tool_params,
        "messages": marked,
    }


def usage_of(raw: Any) -> Usage:
    """The Messages API's usage object as ours (the 1-hour cache writes apart, when it says)."""
    created = getattr(raw, "cache_creation", None)
    return Usage(
        input_tokens=raw.input_tokens or 0,
        output_tokens=raw.output_tokens or 0,
        cache_creation_input_tokens=raw.cache_creation_input_tokens or 0,
        cache_creation_1h_input_tokens=int(getattr(created, "ephemeral_1h_input_tokens", 0) or 0),
        cache_read_input_tokens=raw.cache_read_input_tokens or 0,
        calls=1,
    )


class _KeepAlive:
    """Renews the conversation's prompt cache while a reply or a tool call outlasts its 5 minutes.

    The cache entry a request reads or writes lives 5 minutes from then. When `every` seconds pass
    after a request with no next one (a long reply, a test suite near the command timeout), the
    same body is sent again with max_tokens 1: it reads the whole conversation from the cache, at
    0.1x, which renews it, where the next request would otherwise write it all again at 1.25x
    (benchmarks/cache_ttl_bench.py). Their usage is added to the reply they waited on (or the next
    one). A failed keep-alive changes nothing: the next request pays the write, as it would have.
    One still in flight when the attempt ends (its last reply took over `every` seconds and
    landed during that keep-alive's second or two) goes uncounted. Each waits its turn at the rate
    gate like any request (a rate limit counts it), and one refused with a retry-after holds the
    gate off as the model's own 429s do (not past `longest_hold`, rate_limit_wait)."""

    def __init__(self, client: anthropic.Anthropic, every: float, gate: RateGate, longest_hold: float):
        self.client = client
        self.every = every
        self.gate = gate
        self.longest_hold = longest_hold
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._spent = Usage()
        self._generation = 0
        """Which request the armed timer renews: a keep-alive still out when the next request
        is sent is paid for, and not repeated."""

    def renewing(self, params: dict[str, Any]) -> Usage:
        """Called as `params` is about to be sent: what the keep-alives since the last call used,
        and from now on, keep-alives of `params`."""
        with self._lock:
            self._cancel()
            self._generation += 1
            spent, self._spent = self._spent, Usage()
            if self.every > 0:
                self._arm({**params, "max_tokens": 1}, self._generation)
        return spent

    def collect(self) -> Usage:
        """What the keep-alives finished since the last call or collect used."""
        with self._lock:
            spent, self._spent = self._spent, Usage()
        return spent

    def stop(self) -> None:
        with self._lock:
            self._cancel()
            self._generation += 1
            self.every = 0

    def _arm(self, params: dict[str, Any], generation: int) -> None:
        self._timer = threading.Timer(self.every, self._ping, (params, generation))
        self._timer.daemon = True
        self._timer.start()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _ping(self, params: dict[str, Any], generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
        self.gate.wait_turn()
        with self._lock:
            if generation != self._generation:
                return  # the next request went while this one waited its turn: no need to renew
        try:
            used: Usage | None = usage_of(self.client.messages.create(**params).usage)
        except anthropic.RateLimitError as exc:
            used = None
            delay = _retry_after(exc.response.headers)
            if delay is not None and delay <= self.longest_hold:
                self.gate.hold_off(delay)
        except (anthropic.APIError, AttributeError, TypeError, ValueError):
            used = None
        with self._lock:
            if used is not None:
                self._spent = self._spent + used
            if generation == self._generation and self.every > 0:
                self._arm(params, generation)


def _block_param(block: Any) -> dict[str, Any]:
    """A response content block as a request content block (only the fields the API accepts back)."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": str(block.text)}
    if kind == "tool_use":
        return {"type": "tool_use", "id": str(block.id), "name": str(block.name), "input": block.input}
    if kind == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data}
    dumped: dict[str, Any] = block.model_dump(exclude_none=True) if hasattr(block, "model_dump") else {}
    return dumped


class AnthropicModel:
    """One client for one attempt: calls, waits out rate limits, maps faults, prices usage.

    Every request, keep-alives included, waits its turn at the rate gate (the run's, shared by its
    agents and reviewers, or one of its own), and a 429 holds the whole gate off for its
    retry-after: the others would only be refused too. Not a retry-after past rate_limit_wait,
    which no one waits out (each gives up on meeting it): a gateway asking for an hour would keep
    every thread of the stopping run asleep that long."""

    def __init__(
        self,
        client: anthropic.Anthropic,
        settings: Settings,
        model_id: str,
        rate_gate: RateGate | None = None,
    ):
        self.client = client
        self.settings = settings
        self.model_id = model_id
        self._price_warned = False
        self.gate: RateGate = rate_gate or LocalRateGate(None)
        self._keep_alive = _KeepAlive(client, settings.cache_keep_alive, self.gate, settings.rate_limit_wait)

    def close(self) -> None:
        """No more requests of this attempt: no more keep-alive either."""
        self._keep_alive.stop()

    def query(
        self, system: str, messages: list[Message], tools: list[ToolSpec], on_progress: Callable[[str], None]
    ) -> ModelReply:
        params: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": self.settings.max_tokens,
            **cache_marked(system, messages, tools),
        }
        if not self._price_warned and not price_for(self.model_id, self.settings.prices)[1]:
            self._price_warned = True
            on_progress(
                f"no price known for model {self.model_id}; costing it at the dearest price in the table "
                "(set [tool.orchestrate.prices] to correct it)"
            )
        waited = 0.0
        malformed = limited = 0
        kept_alive = self._keep_alive.renewing(params)
        while True:
            asked = time.monotonic()
            self.gate.wait_turn()
            if limited:
                # After a 429 of our own, the whole wait counts (its retry-after, and any longer
                # hold-off or queue in force); before one, the wait is the run's pace, not a limit.
                waited += time.monotonic() - asked
            started = time.monotonic()
            try:
                message = self._call(params)
                # Keep-alives sent while this reply was written (a long one) are paid with it too.
                return self._reply(message, kept_alive + self._keep_alive.collect())
            except anthropic.RateLimitError as exc:
                waited += time.monotonic() - started
                limited += 1
                delay = _retry_after(exc.response.headers)
                delay = delay if delay is not None else min(60.0, 5.0 * 2 ** min(limited, 4))
                if delay <= self.settings.rate_limit_wait:
                    self.gate.hold_off(delay)
                if waited + delay > self.settings.rate_limit_wait:
                    raise AgentUnavailable(
                        f"rate limited by the API ({_api_message(exc)}); waited {waited:.0f}s of the "
                        f"{self.settings.rate_limit_wait:g}s allowed (rate_limit_wait); {RESUME}",
                        retry_after=delay,
                    ) from None
                on_progress(f"rate limited by the API; waiting {delay:.1f}s as asked (retry-after)")
            except (json.JSONDecodeError, _Malformed) as exc:
                malformed += 1
                if malformed > self.settings.max_retries:
                    raise AgentUnavailable(
                        f"the API answered with a malformed response ({exc}) {malformed} times; check "
                        f"ANTHROPIC_BASE_URL and any proxy in between, then {RESUME}"
                    ) from None
                on_progress(f"malformed response from the API ({exc}); asking again")
                time.sleep(min(8.0, 0.25 * 2**malformed) * random.uniform(0.5, 1.0))
            except anthropic.APIError as exc:
                raise self._translate(exc) from None

    def _call(self, params: dict[str, Any]) -> Any:
        if self.settings.max_tokens > NON_STREAMING_MAX_TOKENS:
            with self.client.messages.stream(**params) as stream:
                return stream.get_final_message()
        return self.client.messages.create(**params)

    def _reply(self, message: Any, kept_alive: Usage | None = None) -> ModelReply:
        if not isinstance(message, anthropic.types.Message):
            shown = str(message)[:120].replace("\n", " ")
            raise _Malformed(f"not a message: {shown!r}")
        try:
            content = [_block_param(b) for b in message.content]
            usage = usage_of(message.usage)
            stop_reason = str(message.stop_reason or "end_turn")
        except (AttributeError, TypeError, ValueError) as exc:
            raise _Malformed(f"a message without {exc}") from exc
        details = getattr(message, "stop_details", None)
        detail = str(getattr(details, "explanation", "") or "") if details is not None else ""
        usage = priced(usage, self.model_id, self.settings.prices)
        if kept_alive is not None and kept_alive.calls:
            # The keep-alive requests made since the previous reply are paid with this one.
            usage = usage + priced(kept_alive, self.model_id, self.settings.prices)
        return ModelReply(content, stop_reason, usage, detail)

    def _translate(self, exc: anthropic.APIError) -> Exception:
        retries = f"after {self.settings.max_retries} retries"
        if isinstance(exc, anthropic.APITimeoutError):
            return AgentUnavailable(
                f"the API did not answer within {self.settings.request_timeout:g}s (request_timeout) "
                f"{retries}; {RESUME}"
            )
        if isinstance(exc, anthropic.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            where = str(self.client.base_url)
            return AgentUnavailable(
                f"cannot reach the API at {where} ({redact(str(cause or exc))[:200]}) {retries}; check the "
                f"network or ANTHROPIC_BASE_URL, then {RESUME}"
            )
        if not isinstance(exc, anthropic.APIStatusError):
            return AgentUnavailable(
                f"the API answered in a way we cannot read ({redact(str(exc))[:200]}); {RESUME}"
            )
        code, message = exc.status_code, _api_message(exc)
        if code == 401:
            return AgentConfigError(
                f"the API rejected the key (401: {message}); set ANTHROPIC_API_KEY to a valid key "
                "(https://console.anthropic.com/settings/keys)"
            )
        if code == 403:
            return AgentConfigError(f"the API refused access (403: {message}); check the key's permissions")
        if code == 404:
            return AgentConfigError(
                f"the API does not know model '{self.model_id}' or the endpoint (404: {message}); "
                "check --model and ANTHROPIC_BASE_URL"
            )
        if code == 400 and ("prompt is too long" in message.lower() or "too many tokens" in message.lower()):
            return PromptTooLong(f"the API rejected the request ({code}: {message})")
        if code == 402 or (code == 400 and "credit balance" in message.lower()):
            return AgentUnavailable(f"the API refused for billing ({code}: {message}); {RESUME}")
        # A stream that fails midway carries its error in an SSE event, under a 200 status.
        kind = _error_type(exc)
        if code == 529 or kind == "overloaded_error":
            return AgentUnavailable(f"the API is overloaded ({code}: {message}) {retries}; {RESUME}")
        if kind == "rate_limit_error":
            return AgentUnavailable(f"rate limited by the API ({message}); {RESUME}")
        if code >= 500 or code in (408, 409) or kind == "api_error":
            return AgentUnavailable(f"the API failed ({code}: {message}) {retries}; {RESUME}")
        return ModelCallFailed(f"the API rejected the request ({code}: {message})")


class _Malformed(ValueError):
    """The response parsed, but is not a Messages API message."""


def _rate_limits_are_ours(response: Any) -> None:
    """Keep the SDK from retrying a 429 itself: it would sleep whatever retry-after says (an hour,
    if a gateway says so) for each retry. AnthropicModel.query waits instead, within rate_limit_wait;
    the SDK still retries 5xx, 529 and connection errors."""
    if response.status_code == 429:
        response.headers["x-should-retry"] = "false"


def _model_opener(settings: Settings) -> Callable[[AgentRequest], Any]:
    @contextmanager
    def open_model(request: AgentRequest) -> Iterator[Model]:
        # A client per attempt: attempts may run in parallel threads, and closing it frees its sockets.
        http = anthropic.DefaultHttpxClient(event_hooks={"response": [_rate_limits_are_ours]})
        with anthropic.Anthropic(
            api_key=secret("ANTHROPIC_API_KEY"),
            auth_token=secret("ANTHROPIC_AUTH_TOKEN"),
            max_retries=settings.max_retries,
            timeout=settings.request_timeout,
            http_client=http,
        ) as client:
            model = AnthropicModel(client, settings, request.model or settings.model, request.rate_gate)
            try:
                yield model
            finally:
                model.close()

    return open_model


def _key_check(settings: Settings) -> Callable[[], None]:
    def check_key() -> None:
        """Refuse a key the API rejects before the first task, with a token count (free, no model
        call). Anything else (a gateway without that endpoint, an outage) decides nothing here."""
        with anthropic.Anthropic(
            api_key=secret("ANTHROPIC_API_KEY"),
            auth_token=secret("ANTHROPIC_AUTH_TOKEN"),
            max_retries=0,
            timeout=min(30.0, settings.request_timeout),
        ) as client:
            try:
                client.messages.count_tokens(
                    model=settings.model, messages=[{"role": "user", "content": "OK"}]
                )
            except (anthropic.AuthenticationError, anthropic.PermissionDeniedError) as exc:
                raise AnthropicModel(client, settings, settings.model)._translate(exc) from None
            except anthropic.APIError:
                return

    return check_key


def create(settings: Settings) -> Agent:
    if not (secret("ANTHROPIC_API_KEY") or secret("ANTHROPIC_AUTH_TOKEN")):
        raise AgentConfigError(NO_KEY)
    limits = LoopLimits(
        compact_at_tokens=min(int(settings.compact_at * settings.context_window), settings.compact_at_tokens),
        max_tokens=settings.max_tokens,
        context_tokens=settings.context_window,
    )
    return LoopAgent("anthropic", _model_opener(settings), limits, _key_check(settings))


def create_reviewer(settings: Settings) -> ReviewLoop:
    """The reviewer on the Messages API (its model is the request's: review_model_for); AgentConfigError
    without a key."""
    if not (secret("ANTHROPIC_API_KEY") or secret("ANTHROPIC_AUTH_TOKEN")):
        raise AgentConfigError(NO_KEY)
    return ReviewLoop("anthropic", _model_opener(settings))
