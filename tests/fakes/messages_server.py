"""A fake Anthropic Messages API on 127.0.0.1, for driving the real SDK in tests.

    with FakeMessagesServer() as api:            # listens on a random port
        api.script(tool_call("write_file", {...}), text("DONE: ..."), rate_limited(retry_after=0))
        os.environ["ANTHROPIC_BASE_URL"] = api.url   # or Anthropic(base_url=api.url)
        ...
        api.requests[0].body["tools"], api.requests[0].headers["x-api-key"], api.requests[0].at

Each POST /v1/messages takes the next scripted response, in order. A response is a Message (sent
as JSON, or as server-sent events when the request has "stream": true), a Status (an API error
with the documented error body), Drop (close the connection without answering), Malformed (200
with a body that is not JSON), Slow (wait, then send another response), StreamError (an SSE
`error` event after the stream started), or a callable taking the
RecordedRequest and returning one of those. With the script exhausted it asks the fallback
responder (`respond_with(fn)`), if any, else answers 500 with `x-should-retry: false`, so a test
that under-scripts fails loudly instead of hanging.

Usage is made up but consistent: tokens are estimated at 4 characters each, and prompt caching is
simulated from the request's cache_control breakpoints (a breakpoint whose prefix was seen before
reads from the cache; the longest new one writes it; what a `"ttl": "1h"` breakpoint writes is
reported apart, in `cache_creation`), so tests can see caching pay off. A request with max_tokens 1
(a prompt-cache keep-alive) is answered "." at once, without taking a scripted response.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEST_MODEL = "claude-sonnet-4-6"
"""A model id the SDK does not warn about (it warns that claude-sonnet-4-5 is deprecated, and a
warning fails a test under filterwarnings=error)."""
TEST_KEY = "sk-ant-test-0123456789abcdef"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any
    """The parsed JSON body (None if it was not JSON)."""
    raw: bytes
    at: float = field(default_factory=time.monotonic)
    """When it arrived (time.monotonic(), once its body was read): what tests of pacing compare."""


@dataclass
class Message:
    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    usage: dict[str, int] | None = None
    """Exact usage to report; None computes it from the request."""
    model: str | None = None
    stop_details: dict[str, Any] | None = None


@dataclass
class Status:
    code: int
    error_type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Drop:
    """Close the connection without sending anything."""


@dataclass
class Malformed:
    body: bytes = b'{"id": "msg_broken", "type": "message", "content": [{"type": "te'
    content_type: str = "application/json"


@dataclass
class StreamError:
    """For a streaming request: start the message, then send an SSE `error` event (as the API does
    when it overloads mid-stream). A non-streaming request gets the error as a 529/500 status."""

    error_type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass
class Slow:
    seconds: float
    then: Response


Response = Message | Status | Drop | Malformed | Slow | StreamError
Scripted = Response | Callable[[RecordedRequest], Response]

_ids = itertools.count(1)


def text(value: str, stop_reason: str = "end_turn", usage: dict[str, int] | None = None) -> Message:
    return Message([{"type": "text", "text": value}], stop_reason, usage)


def tool_use(name: str, tool_input: dict[str, Any], tool_id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id or f"toolu_{next(_ids):04d}", "name": name, "input": tool_input}


def tool_call(
    name: str, tool_input: dict[str, Any], say: str = "", usage: dict[str, int] | None = None
) -> Message:
    """One assistant turn calling one tool (with optional text before it)."""
    blocks = ([{"type": "text", "text": say}] if say else []) + [tool_use(name, tool_input)]
    return Message(blocks, "tool_use", usage)


def tool_calls(*calls: tuple[str, dict[str, Any]], usage: dict[str, int] | None = None) -> Message:
    return Message([tool_use(n, i) for n, i in calls], "tool_use", usage)


def finish(status: str = "done", summary: str = "did it") -> Message:
    """The orchestrator's `finish` tool: how our agent reports done or blocked."""
    return tool_call("finish", {"status": status, "summary": summary})


def rate_limited(
    retry_after: float | None = 0,
    message: str = "Number of request tokens has exceeded your per-minute rate limit",
) -> Status:
    headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
    return Status(429, "rate_limit_error", message, headers)


def overloaded() -> Status:
    return Status(529, "overloaded_error", "Overloaded")


def server_error() -> Status:
    return Status(500, "api_error", "Internal server error")


def _tokens(value: Any) -> int:
    return max(1, len(json.dumps(value, sort_keys=True)) // 4)


def _strip_cache(block: Any) -> Any:
    if isinstance(block, dict):
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def simulated_usage(body: Any, seen_prefixes: set[str]) -> dict[str, int]:
    """input/cache tokens for a request, remembering cached prefixes across requests."""
    if not isinstance(body, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    blocks: list[tuple[Any, bool]] = []
    for tool in body.get("tools") or []:
        blocks.append((_strip_cache(tool), isinstance(tool, dict) and "cache_control" in tool))
    system = body.get("system")
    if isinstance(system, str):
        blocks.append((system, False))
    for block in system if isinstance(system, list) else []:
        blocks.append((_strip_cache(block), isinstance(block, dict) and "cache_control" in block))
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        role = message.get("role") if isinstance(message, dict) else None
        for block in [content] if isinstance(content, str) else content or []:
            marked = isinstance(block, dict) and "cache_control" in block
            blocks.append(({"role": role, "block": _strip_cache(block)}, marked))
    total = _tokens([b for b, _ in blocks]) if blocks else 0
    hour_ends = [
        index
        for index, block in enumerate(_marks(body))
        if isinstance(block, dict) and block.get("ttl") == "1h"
    ]
    read = write = 0
    for index, (_, marked) in enumerate(blocks):
        if not marked:
            continue
        # As the API does: a breakpoint also hits a prefix cached at an earlier block (20 back at most).
        for start in range(index, max(-1, index - 21), -1):
            prefix = json.dumps([b for b, _ in blocks[: start + 1]], sort_keys=True)
            if prefix in seen_prefixes:
                read = max(read, len(prefix) // 4)
                break
    hour = 0
    for index, (_, marked) in enumerate(blocks):
        if marked:
            prefix = json.dumps([b for b, _ in blocks[: index + 1]], sort_keys=True)
            if prefix not in seen_prefixes:
                seen_prefixes.add(prefix)
                write = max(write, len(prefix) // 4 - read)
                if index in hour_ends:
                    hour = max(hour, len(prefix) // 4 - read)
    return {
        "input_tokens": max(0, total - read - write),
        "output_tokens": 0,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write - min(hour, write),
            "ephemeral_1h_input_tokens": min(hour, write),
        },
    }


def _marks(body: dict[str, Any]) -> list[Any]:
    """Each block's cache_control (or None), in the order simulated_usage lists the blocks."""
    found: list[Any] = [
        t.get("cache_control") if isinstance(t, dict) else None for t in body.get("tools") or []
    ]
    system = body.get("system")
    if isinstance(system, str):
        found.append(None)
    found += [
        b.get("cache_control") if isinstance(b, dict) else None
        for b in (system if isinstance(system, list) else [])
    ]
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        found += [
            b.get("cache_control") if isinstance(b, dict) else None
            for b in ([content] if isinstance(content, str) else content or [])
        ]
    return found


class FakeMessagesServer:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: list[Scripted] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._seen_prefixes: set[str] = set()
        self._fallback: Callable[[RecordedRequest], Response] | None = None
        self.count_tokens: Callable[[RecordedRequest], Status | None] | None = None
        """Answers POST /v1/messages/count_tokens: a Status (an error), or None for the count. Unset,
        that path is a 404, as on a gateway that has only /v1/messages."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-messages-api", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *responses: Scripted) -> None:
        """Queue responses, one per request, in order."""
        with self._lock:
            self._script.extend(responses)

    def respond_with(self, responder: Callable[[RecordedRequest], Response] | None) -> None:
        """Answer requests the script does not cover by calling `responder` (None: fail them)."""
        with self._lock:
            self._fallback = responder

    @property
    def pending(self) -> int:
        """Scripted responses not yet used."""
        with self._lock:
            return len(self._script)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.split("?")[0].endswith("/v1/messages")]

    def start(self) -> FakeMessagesServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeMessagesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def keep_alives(self) -> list[RecordedRequest]:
        """Requests with max_tokens 1, answered without the script."""
        return [
            r for r in self.message_requests if isinstance(r.body, dict) and r.body.get("max_tokens") == 1
        ]

    def _next(self, request: RecordedRequest) -> Response:
        if isinstance(request.body, dict) and request.body.get("max_tokens") == 1:
            with self._lock:
                self.requests.append(request)
            return Message([{"type": "text", "text": "."}], "max_tokens")
        with self._lock:
            self.requests.append(request)
            scripted = self._script.pop(0) if self._script else self._fallback
        if scripted is None:
            return Status(
                500, "api_error", "fake server: no scripted response left", {"x-should-retry": "false"}
            )
        return scripted(request) if callable(scripted) else scripted

    def _usage(self, body: Any, message: Message) -> dict[str, int]:
        if message.usage is not None:
            return dict(message.usage)
        with self._lock:
            usage = simulated_usage(body, self._seen_prefixes)
        usage["output_tokens"] = max(1, _tokens(message.content))
        return usage

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = RecordedRequest(
                    "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, raw
                )
                counter = server.count_tokens
                if self.path.split("?")[0].endswith("/v1/messages/count_tokens") and counter is not None:
                    server.requests.append(request)
                    answer = counter(request)
                    if answer is None:
                        counted = json.dumps({"input_tokens": _tokens(body)}).encode()
                        self._write(200, "application/json", counted, {})
                    else:
                        self._send(answer, body)
                    return
                if not self.path.split("?")[0].endswith("/v1/messages"):
                    self._send(Status(404, "not_found_error", f"fake server: no route {self.path}"), body)
                    return
                self._send(server._next(request), body)

            def _send(self, response: Response, body: Any) -> None:
                try:
                    self._send_unsafe(response, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to tell it

            def _send_unsafe(self, response: Response, body: Any) -> None:
                if isinstance(response, Slow):
                    if server._stopping.wait(response.seconds):
                        return
                    self._send_unsafe(response.then, body)
                elif isinstance(response, Drop):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif isinstance(response, StreamError):
                    error = {
                        "type": "error",
                        "error": {"type": response.error_type, "message": response.message},
                    }
                    if not (isinstance(body, dict) and body.get("stream")):
                        code = 529 if response.error_type == "overloaded_error" else 500
                        self._write(code, "application/json", json.dumps(error).encode(), {})
                        return
                    started = self._message_json(Message([]), body)
                    first = next(_sse_events(started))
                    payload = f"event: {first[0]}\ndata: {json.dumps(first[1])}\n\n"
                    payload += f"event: error\ndata: {json.dumps(error)}\n\n"
                    self._write(200, "text/event-stream", payload.encode(), {})
                elif isinstance(response, Malformed):
                    self._write(200, response.content_type, response.body, {})
                elif isinstance(response, Status):
                    payload = {
                        "type": "error",
                        "error": {"type": response.error_type, "message": response.message},
                    }
                    headers = {"request-id": f"req_fake_{next(_ids)}", **response.headers}
                    self._write(response.code, "application/json", json.dumps(payload).encode(), headers)
                else:
                    message = self._message_json(response, body)
                    if isinstance(body, dict) and body.get("stream"):
                        self._write(200, "text/event-stream", _sse(message), {})
                    else:
                        self._write(200, "application/json", json.dumps(message).encode(), {})

            def _message_json(self, response: Message, body: Any) -> dict[str, Any]:
                model = response.model or (body.get("model") if isinstance(body, dict) else None)
                return {
                    "id": f"msg_fake_{next(_ids):04d}",
                    "type": "message",
                    "role": "assistant",
                    "model": model or TEST_MODEL,
                    "content": response.content,
                    "stop_reason": response.stop_reason,
                    "stop_sequence": None,
                    "stop_details": response.stop_details,
                    "usage": server._usage(body, response),
                }

            def _write(self, code: int, content_type: str, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()

        return Handler


def _sse_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for start_at in range(0, len(block["text"]), 20):
                chunk = block["text"][start_at : start_at + 20]
                delta = {"type": "text_delta", "text": chunk}
                yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        elif block["type"] == "tool_use":
            opened = {**block, "input": {}}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opened},
            )
            encoded = json.dumps(block["input"])
            for start_at in range(0, len(encoded), 20):
                delta = {"type": "input_json_delta", "partial_json": encoded[start_at : start_at + 20]}
                yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        else:
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage.get("output_tokens", 0)},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _sse(message: dict[str, Any]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in _sse_events(message)
    )
