"""Our agent loop: ask the model, run the tools it calls, repeat until it reports done or blocked.

The conversation is kept in the Messages API's shape (the lingua franca of tool-using models); the
model behind the `Model` protocol does the calling, retrying and pricing, the Toolset does the work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.agents.base import AgentEvent, AgentListener, AgentOutcome, AgentRequest, AgentStatus
from orchestrator.domain.usage import Usage
from orchestrator.tools.environment import redact
from orchestrator.tools.sandbox import Sandbox
from orchestrator.tools.toolset import ToolResult, Toolset, ToolSpec

Block = dict[str, Any]
Message = dict[str, Any]

FINISH = ToolSpec(
    "finish",
    "End the task with your final report. status 'done' when the task is complete (orchestrate then "
    "runs the verification commands), 'blocked' when it cannot be done, with the reason.",
    {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["done", "blocked"]},
            "summary": {"type": "string", "description": "What you did, or why you are blocked."},
        },
        "required": ["status", "summary"],
    },
)
FINISH_INSTRUCTIONS = (
    "\n\nWork in the workspace with the tools given. When the task is complete, call the `finish` tool "
    "with status 'done' and a short report; if you cannot complete it, call `finish` with status "
    "'blocked' and the reason. Do not commit: orchestrate verifies and commits your work."
)
KEEP_RECENT_MESSAGES = 4
"""Compaction leaves the last two exchanges (assistant + tool results) as they are."""
MAX_CUT_OFFS = 3
SUMMARY_LIMIT = 4000
NOT_AN_END = frozenset({"refusal", "max_tokens", "model_context_window_exceeded", "pause_turn"})
"""Stop reasons of a reply that does not end the task, whatever it holds."""
CHARS_PER_TOKEN = 3.0
"""A request's characters per token before the API has told us (code and JSON: about 3 to 4)."""
TURN_OUTPUT_SHARE = 0.25
"""The tool output one turn may add, as a share of the context window left beside max_tokens."""
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ModelCallFailed(Exception):
    """The API rejected this request for a reason that is this attempt's own (bad request, too long)."""


class PromptTooLong(ModelCallFailed):
    """The request did not fit the model's context window (400 "prompt is too long")."""


@dataclass(frozen=True)
class ModelReply:
    content: list[Block]
    """Assistant content blocks, ready to be sent back as conversation history."""
    stop_reason: str
    usage: Usage
    """This call's tokens, with cost_usd."""
    detail: str = ""
    """Refusal explanation or similar, when the API gave one."""

    @property
    def context_tokens(self) -> int:
        return (
            self.usage.input_tokens
            + self.usage.cache_creation_input_tokens
            + self.usage.cache_read_input_tokens
        )


class Model(Protocol):
    model_id: str

    def query(
        self, system: str, messages: list[Message], tools: list[ToolSpec], on_progress: Callable[[str], None]
    ) -> ModelReply:
        """One model call; raises AgentUnavailable, AgentConfigError or ModelCallFailed."""
        ...


@dataclass(frozen=True)
class LoopLimits:
    compact_at_tokens: int
    """Compact the conversation once a call's input (cache included) passes this."""
    max_tokens: int
    context_tokens: int = 200_000
    """The model's context window: no request is sent that would not fit it with max_tokens."""


def valid_unicode(value: Any) -> Any:
    """`value` (a string, or lists and dicts of them) with each lone surrogate made visible: a byte of
    a file name that is not UTF-8 (os.fsdecode's U+DC80..U+DCFF) as `\\xNN`, any other as U+FFFD.

    JSON can carry a lone surrogate (`"\\ud800"`), UTF-8 cannot: the SDK could not send such a
    conversation back, and nothing downstream (journal, terminal) could write it."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(_shown, value) if _LONE_SURROGATE.search(value) else value
    if isinstance(value, list):
        return [valid_unicode(item) for item in value]
    if isinstance(value, dict):
        return {valid_unicode(key): valid_unicode(item) for key, item in value.items()}
    return value


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else "\ufffd"


def _lone_surrogate_at(value: Any, where: str = "input") -> str | None:
    """Where in a tool's input a lone surrogate is (`input.path`), or None."""
    if isinstance(value, str):
        return where if _LONE_SURROGATE.search(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _lone_surrogate_at(key, where) or _lone_surrogate_at(item, f"{where}.{key}")
        if found:
            return found
    return None


def _text_of(content: list[Block]) -> str:
    return "\n".join(b.get("text", "") for b in content if b.get("type") == "text").strip()


def _history(content: list[Block]) -> list[Block]:
    """Assistant content as it may be sent back: the API refuses empty text blocks and empty turns."""
    kept = [b for b in content if not (b.get("type") == "text" and not b.get("text"))]
    return kept or [{"type": "text", "text": "(no reply)"}]


def _tool_result(tool_use_id: str, text: str, is_error: bool = False) -> Block:
    block: Block = {"type": "tool_result", "tool_use_id": tool_use_id, "content": text}
    if is_error:
        block["is_error"] = True
    return block


def compact(messages: list[Message], labels: dict[str, str], keep_recent: int = KEEP_RECENT_MESSAGES) -> int:
    """Replace old tool outputs and long tool inputs with placeholders; the task prompt (first
    message) and the most recent messages stay. Returns the number of characters removed."""
    removed = 0
    for message in messages[1:-keep_recent] if len(messages) > keep_recent + 1 else []:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "tool_result" and isinstance(block.get("content"), str):
                old = block["content"]
                if len(old) > 200 and not old.startswith("[compacted"):
                    label = labels.get(str(block.get("tool_use_id")), "a tool call")
                    block["content"] = (
                        f"[compacted: the {len(old)}-character output of {label} was removed to save "
                        "context; run the tool again if you need it]"
                    )
                    removed += len(old) - len(block["content"])
            elif block.get("type") == "tool_use" and isinstance(block.get("input"), dict):
                for key, value in block["input"].items():
                    if isinstance(value, str) and len(value) > 500:
                        block["input"][key] = f"[compacted: {len(value)} characters]"
                        removed += len(value)
    return removed


class LoopAgent:
    """An Agent: the loop over a Model (opened per run) and the workspace's Toolset."""

    def __init__(
        self,
        name: str,
        open_model: Callable[[AgentRequest], AbstractContextManager[Model]],
        limits: LoopLimits,
        ready_check: Callable[[], None] | None = None,
    ):
        self.name = name
        self._open_model = open_model
        self._limits = limits
        self._ready_check = ready_check

    def check_ready(self, sandbox: Sandbox | None) -> None:  # noqa: ARG002 - runs no command
        """The model's own check before the first task (a rejected key), if it has one."""
        if self._ready_check is not None:
            self._ready_check()

    def run(self, request: AgentRequest, listener: AgentListener) -> AgentOutcome:
        # The run's sandbox: whether it confines is said once per run, by the engine.
        tools = Toolset(request.workspace, request.command_timeout, request.env, request.sandbox)
        with self._open_model(request) as model:
            return _Run(request, listener, model, tools, self._limits).loop()


class _Run:
    """The state of one attempt: conversation, usage, counters."""

    def __init__(
        self, request: AgentRequest, listener: AgentListener, model: Model, tools: Toolset, limits: LoopLimits
    ):
        self.request = request
        self.listener = listener
        self.model = model
        self.tools = tools
        self.limits = limits
        # The prompt may name files whose names are not UTF-8 (what a dependency changed).
        self.system = valid_unicode(request.system_prompt + FINISH_INSTRUCTIONS)
        self.specs = [*tools.specs, FINISH]
        self.messages: list[Message] = [
            {"role": "user", "content": [{"type": "text", "text": valid_unicode(request.prompt)}]}
        ]
        self.usage = Usage()
        self.turns = 0
        self.labels: dict[str, str] = {}
        self.chars_per_token = CHARS_PER_TOKEN
        """Measured on each reply: the request's characters over the input tokens it cost."""

    def outcome(self, status: AgentStatus, summary: str) -> AgentOutcome:
        text = redact(summary.strip())
        if len(text) > SUMMARY_LIMIT:
            text = text[: SUMMARY_LIMIT - 20] + "\n[... report cut ...]"
        return AgentOutcome(status=status, summary=text, usage=self.usage, turns=self.turns)

    def progress(self, detail: str) -> None:
        self.listener(AgentEvent(kind="progress", detail=redact(detail)))

    def loop(self) -> AgentOutcome:
        cut_offs = silent = 0
        while True:
            if self.turns >= self.request.max_turns:
                return self.outcome(
                    AgentStatus.FAILED,
                    f"stopped after {self.turns} turns (max_turns) without a final report from the model",
                )
            self._make_room()
            sent = self._request_chars()
            try:
                reply = self.model.query(self.system, self.messages, self.specs, self.progress)
            except PromptTooLong as exc:
                freed = compact(self.messages, self.labels, keep_recent=1)
                if not freed:
                    return self.outcome(AgentStatus.FAILED, str(exc))
                self.progress(f"compacted {freed} characters of old tool output ({exc}); asking again")
                continue
            except ModelCallFailed as exc:
                return self.outcome(AgentStatus.FAILED, str(exc))
            if reply.context_tokens > 0:
                self.chars_per_token = min(1000.0, max(1.0, sent / reply.context_tokens))
            self.turns += 1
            self.usage = self.usage + reply.usage
            # A reply that ends the task (a report, a call to finish) is paid for work that is done:
            # a budget it passes stops the run after that work is verified and committed.
            uses = [b.get("name") for b in reply.content if b.get("type") == "tool_use"]
            ends = reply.stop_reason not in NOT_AN_END and (
                FINISH.name in uses or (not uses and bool(_text_of(reply.content)))
            )
            self.listener(
                AgentEvent(
                    kind="model_call",
                    usage=reply.usage,
                    model=self.model.model_id,
                    detail=self._call_detail(reply),
                    session_over=ends,
                )
            )
            # A tool call whose input is not valid Unicode is answered with an error (what it would
            # write or run is not what the model meant); everything else is kept, made valid.
            refused = {
                str(block.get("id")): where
                for block in reply.content
                if block.get("type") == "tool_use" and (where := _lone_surrogate_at(block.get("input")))
            }
            content: list[Block] = valid_unicode(reply.content)
            said = _text_of(content)
            if said:
                self.listener(AgentEvent(kind="message", detail=redact(said)[:500]))
            self.messages.append({"role": "assistant", "content": _history(content)})
            calls = [b for b in content if b.get("type") == "tool_use"]

            # Refusal-terminated turns are terminal: running their tool calls would fire side
            # effects the model never confirmed.
            if reply.stop_reason == "refusal":
                return self.outcome(
                    AgentStatus.FAILED, f"the model refused: {reply.detail or said or 'no reason given'}"
                )
            if reply.stop_reason in ("max_tokens", "model_context_window_exceeded"):
                cut_offs += 1
                if reply.stop_reason == "model_context_window_exceeded":
                    freed = compact(self.messages, self.labels, keep_recent=1)
                    if not freed:
                        return self.outcome(
                            AgentStatus.FAILED, "the conversation outgrew the model's context window"
                        )
                    self.progress(f"compacted {freed} characters of old tool output (context window full)")
                if cut_offs >= MAX_CUT_OFFS:
                    return self.outcome(
                        AgentStatus.FAILED,
                        f"the model's reply was cut off ({reply.stop_reason}) {cut_offs} times in a row; "
                        f"raise max_tokens (now {self.limits.max_tokens}) or split the task",
                    )
                self._cut_off(calls, reply.stop_reason)
                continue
            cut_offs = 0
            if reply.stop_reason == "pause_turn":
                continue  # the API asks for the turn back as it is
            if not calls:
                if said:
                    blocked = said.lstrip("*# ").upper().startswith("BLOCKED")
                    return self.outcome(AgentStatus.BLOCKED if blocked else AgentStatus.DONE, said)
                silent += 1
                if silent >= 2:
                    return self.outcome(
                        AgentStatus.FAILED, "the model ended its turn twice without a word or a tool call"
                    )
                self._user_note("You ended your turn without a report. Continue the task, or call `finish`.")
                continue
            finished = self._run_tools(calls, refused)
            if finished is not None:
                return finished
            self._maybe_compact(reply)

    def _call_detail(self, reply: ModelReply) -> str:
        u = reply.usage
        return (
            f"turn {self.turns} ({self.model.model_id}): {reply.stop_reason}; {u.input_tokens} in, "
            f"{u.output_tokens} out, {u.cache_read_input_tokens} cache read, "
            f"{u.cache_creation_input_tokens} cache write; ${u.cost_usd:.4f}"
        )

    def _user_note(self, text: str, results: list[Block] | None = None) -> None:
        self.messages.append({"role": "user", "content": [*(results or []), {"type": "text", "text": text}]})

    def _cut_off(self, calls: list[Block], reason: str) -> None:
        # Every tool_use needs a tool_result in the next message, even the ones we refuse to run.
        not_run = [
            _tool_result(
                str(c.get("id")), "not run: your reply was cut off before this call was complete", True
            )
            for c in calls
        ]
        self.progress(f"the model's reply was cut off ({reason}); asking it to go on in smaller steps")
        self._user_note(
            "Your last reply was cut off at the output limit. Continue in smaller steps "
            "(for example, write a large file in parts with edit_file).",
            not_run,
        )

    def _request_chars(self) -> int:
        return len(json.dumps([self.system, self.messages, [s.input_schema for s in self.specs]]))

    def _estimate(self) -> int:
        """The next request's input tokens, at the ratio the last reply showed."""
        return int(self._request_chars() / self.chars_per_token)

    def _room(self) -> int:
        """Input tokens a request may take: the window, less a margin for the reply."""
        window = self.limits.context_tokens
        return window - min(self.limits.max_tokens, window // 10)

    def _make_room(self) -> None:
        """Compact old tool output (the recent exchanges kept, then all but the last message) when
        the next request would not fit the window. What is left is sent: the API is the judge, and
        a "prompt is too long" is compacted again."""
        estimate = self._estimate()
        for keep in (KEEP_RECENT_MESSAGES, 1):
            if self._estimate() <= self._room():
                return
            freed = compact(self.messages, self.labels, keep_recent=keep)
            if freed:
                self.progress(
                    f"compacted {freed} characters of old tool output: the next request (about "
                    f"{estimate} tokens) would not fit the {self.limits.context_tokens}-token window"
                )

    def _turn_output_limit(self) -> int:
        """Characters of tool output one turn may add: a share of the room the window leaves."""
        return max(10_000, int(self._room() * TURN_OUTPUT_SHARE * self.chars_per_token))

    def _run_tools(self, calls: list[Block], refused: dict[str, str]) -> AgentOutcome | None:
        results: list[Block] = []
        final: AgentOutcome | None = None
        budget = self._turn_output_limit()
        for call in calls:
            call_id, name, args = str(call.get("id")), str(call.get("name")), call.get("input")
            if name == FINISH.name:  # its report is words only: kept with the surrogate made visible
                final, error = self._finish(args)
                if error:
                    results.append(_tool_result(call_id, error, True))
                continue
            if call_id in refused:
                result = ToolResult(
                    f"not run: {refused[call_id]} holds a lone surrogate, which is not valid Unicode; "
                    "send valid UTF-8 text (a file name that is not UTF-8 can be given to run_command "
                    "with a shell escape such as $'\\xff')",
                    True,
                    f"{name}: refused, input not valid Unicode",
                )
            else:
                result = self.tools.call(name, args)
            summary = valid_unicode(result.summary)
            self.labels[call_id] = summary or name
            self.listener(
                AgentEvent(kind="tool_call", detail=summary + (" (error)" if result.is_error else ""))
            )
            # Tool output can name files whose names are not UTF-8 (list_dir, search, a command's).
            shown = valid_unicode(result.text)
            if len(shown) > budget:
                # Six large files read in one turn must not make a request the window cannot hold.
                shown = shown[: max(0, budget)] + (
                    f"\n[... cut: this turn's tool output passed {self._turn_output_limit()} characters; "
                    "ask for less at a time (a part of a file, fewer calls in one turn) ...]"
                )
            budget -= len(shown)
            results.append(_tool_result(call_id, shown, result.is_error))
        if final is not None:
            return final
        self.messages.append({"role": "user", "content": results})
        return None

    def _finish(self, args: object) -> tuple[AgentOutcome | None, str]:
        if not isinstance(args, dict) or args.get("status") not in ("done", "blocked"):
            return None, "finish needs status 'done' or 'blocked' and a summary"
        status = AgentStatus.DONE if args["status"] == "done" else AgentStatus.BLOCKED
        return self.outcome(status, str(args.get("summary") or "")), ""

    def _maybe_compact(self, reply: ModelReply) -> None:
        if reply.context_tokens <= self.limits.compact_at_tokens:
            return
        freed = compact(self.messages, self.labels)
        if freed:
            self.progress(
                f"compacted {freed} characters of old tool output: the last call used "
                f"{reply.context_tokens} input tokens, over the {self.limits.compact_at_tokens} threshold"
            )
