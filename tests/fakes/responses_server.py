"""A fake OpenAI Responses API on 127.0.0.1, for driving the real `codex` CLI in tests.

    with FakeResponsesServer() as api:
        api.script(shell("printf hi > hello.txt"), say("DONE: wrote hello.txt"))
        home = codex_home(tmp_path, api)          # a CODEX_HOME whose config.toml points at it
        ...
        api.requests[0].body["input"], api.requests[0].headers["authorization"]

Each POST /v1/responses takes the next scripted response, in order, answered as server-sent events
(response.created, response.output_item.done per item, response.completed with the usage). A
Status answers with an API error instead. With the script exhausted it answers 500, so a test that
under-scripts fails loudly instead of hanging. Any other request (the WebSocket upgrade codex tries
on OpenAI's own provider) is a 404.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TEST_KEY = "sk-openai-test-0123456789abcdef"
TEST_MODEL = "gpt-5"
"""A model genai-prices knows ($1.25 / $10 per million tokens, cached input $0.125)."""

_ids = itertools.count(1)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: Any


@dataclass
class Reply:
    output: list[dict[str, Any]]
    usage: dict[str, Any] = field(
        default_factory=lambda: {
            "input_tokens": 1000,
            "input_tokens_details": {"cached_tokens": 200},
            "output_tokens": 50,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 1050,
        }
    )


@dataclass
class Status:
    code: int
    message: str
    error_type: str = "server_error"


def say(text: str) -> Reply:
    """An assistant message that ends the turn."""
    item = {
        "type": "message",
        "id": f"msg_fake_{next(_ids)}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return Reply([item])


def shell(command: str) -> Reply:
    """A call of codex's `exec_command` tool running `command` in the workspace."""
    item = {
        "type": "function_call",
        "id": f"fc_fake_{next(_ids)}",
        "call_id": f"call_fake_{next(_ids)}",
        "name": "exec_command",
        "arguments": json.dumps({"cmd": command}),
        "status": "completed",
    }
    return Reply([item])


def overloaded() -> Status:
    return Status(529, "Overloaded", "overloaded_error")


def unauthorized() -> Status:
    return Status(401, "Incorrect API key provided: sk-wrong.", "invalid_api_key")


class FakeResponsesServer:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: list[Reply | Status] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-responses-api", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, *responses: Reply | Status) -> None:
        with self._lock:
            self._script.extend(responses)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def turns(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/responses")]

    def __enter__(self) -> FakeResponsesServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: RecordedRequest) -> Reply | Status:
        with self._lock:
            self.requests.append(request)
            if not self._script:
                return Status(500, "fake server: no scripted response left")
            return self._script.pop(0)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(RecordedRequest("GET", self.path, self._headers(), None))
                self._write(404, "application/json", b'{"error": {"message": "no such route"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = RecordedRequest("POST", self.path, self._headers(), body)
                if not self.path.split("?")[0].endswith("/responses"):
                    self._write(404, "application/json", b'{"error": {"message": "no such route"}}')
                    return
                answer = server._next(request)
                if isinstance(answer, Status):
                    error = {"error": {"message": answer.message, "type": answer.error_type, "code": None}}
                    self._write(answer.code, "application/json", json.dumps(error).encode())
                    return
                model = body.get("model", TEST_MODEL) if isinstance(body, dict) else TEST_MODEL
                self._write(200, "text/event-stream", _sse(answer, str(model)))

            def _headers(self) -> dict[str, str]:
                return {k.lower(): v for k, v in self.headers.items()}

            def _write(self, code: int, content_type: str, payload: bytes) -> None:
                try:
                    self.send_response(code)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: nothing to tell it

        return Handler


def _sse(reply: Reply, model: str) -> bytes:
    response_id = f"resp_fake_{next(_ids)}"
    base = {"id": response_id, "object": "response", "model": model, "output": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**base, "status": "in_progress"}}
    ]
    for index, item in enumerate(reply.output):
        events.append({"type": "response.output_item.added", "output_index": index, "item": item})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    done = {**base, "status": "completed", "output": reply.output, "usage": reply.usage}
    events.append({"type": "response.completed", "response": done})
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def codex_home(where: Path, api: FakeResponsesServer, model: str = TEST_MODEL) -> Path:
    """A CODEX_HOME whose config.toml sends codex to `api` (a provider of its own: no WebSocket, no
    retries, so a scripted error is final at once), its key read from OPENAI_API_KEY."""
    home = where / "codex-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "fake"\n'
        "[model_providers.fake]\n"
        'name = "fake"\n'
        f'base_url = "{api.url}"\n'
        'env_key = "OPENAI_API_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
        "supports_websockets = false\n",
        encoding="utf-8",
    )
    return home
