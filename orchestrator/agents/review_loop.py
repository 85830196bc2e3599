"""The reviewer's loop: a fresh conversation with read-only tools, ended by one `submit_verdict`
call whose input follows the contract (orchestrator.domain.review).

A model that answers with nothing but that call, on its first turn, is served in one request. An
input that breaks the contract is answered with an error result saying how, and the model tries
again; a reply without the call is reminded once. What the verdict claims is not believed here:
orchestrate checks its evidence (engine.review).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from orchestrator.agents.base import AgentEvent, AgentListener, AgentRequest, ReviewReply, ReviewRequest
from orchestrator.agents.loop import (
    NOT_AN_END,
    Block,
    Message,
    Model,
    ModelCallFailed,
    _history,
    _text_of,
    _tool_result,
    valid_unicode,
)
from orchestrator.domain.review import SUBMIT_VERDICT, SUBMIT_VERDICT_SCHEMA, VerdictError, parse_verdict
from orchestrator.domain.usage import Usage
from orchestrator.tools.environment import redact
from orchestrator.tools.toolset import Toolset, ToolSpec

SUBMIT = ToolSpec(
    SUBMIT_VERDICT,
    "Give your verdict on every criterion, with evidence orchestrate checks itself: quotes (path, "
    "line range, the exact text found there in the attempt's tree) or commands (orchestrate runs "
    "them again against the same tree; the exit code must be the one you saw). This ends the review.",
    SUBMIT_VERDICT_SCHEMA,
)
REMINDERS = 2
"""Replies without a verdict tolerated (each answered with a reminder) before the round fails."""


class ReviewLoop:
    """A Reviewer: the loop over a Model (opened per round) with a read-only Toolset."""

    def __init__(self, name: str, open_model: Callable[[AgentRequest], AbstractContextManager[Model]]):
        self.name = name
        self._open_model = open_model

    def review(self, request: ReviewRequest, listener: AgentListener) -> ReviewReply:
        tools = Toolset(
            request.workspace, request.command_timeout, request.env, request.sandbox, read_only=True
        )
        opened = AgentRequest(
            task_id=request.task_id,
            attempt=request.attempt,
            system_prompt=request.system_prompt,
            prompt=request.prompt,
            workspace=request.workspace,
            model=request.model,
            rate_gate=request.rate_gate,
        )
        with self._open_model(opened) as model:
            return _Review(request, listener, model, tools).loop()


class _Review:
    def __init__(self, request: ReviewRequest, listener: AgentListener, model: Model, tools: Toolset):
        self.request = request
        self.listener = listener
        self.model = model
        self.tools = tools
        self.specs = [*tools.specs, SUBMIT]
        self.messages: list[Message] = [
            {"role": "user", "content": [{"type": "text", "text": valid_unicode(request.prompt)}]}
        ]
        self.usage = Usage()
        self.turns = 0

    def reply(self, verdict: object | None = None, failure: str = "") -> ReviewReply:
        return ReviewReply(verdict=verdict, failure=redact(failure), usage=self.usage, turns=self.turns)

    def loop(self) -> ReviewReply:
        silent = 0
        while self.turns < self.request.max_turns:
            try:
                answer = self.model.query(
                    valid_unicode(self.request.system_prompt), self.messages, self.specs, self._progress
                )
            except ModelCallFailed as exc:
                return self.reply(failure=str(exc))
            self.turns += 1
            self.usage = self.usage + answer.usage
            self.listener(
                AgentEvent(
                    kind="model_call",
                    usage=answer.usage,
                    model=self.model.model_id,
                    detail=f"review turn {self.turns} ({self.model.model_id}): {answer.stop_reason}",
                )
            )
            content: list[Block] = valid_unicode(answer.content)
            calls = [b for b in content if b.get("type") == "tool_use"]
            submitted = next((b for b in calls if b.get("name") == SUBMIT_VERDICT), None)
            if submitted is not None and answer.stop_reason not in ("refusal",):
                try:
                    parse_verdict(submitted.get("input"))
                except VerdictError as exc:
                    self.messages.append({"role": "assistant", "content": _history(content)})
                    self.messages.append(
                        {"role": "user", "content": self._answers(calls, submitted, str(exc))}
                    )
                    continue
                return self.reply(verdict=submitted.get("input"))
            if answer.stop_reason == "refusal":
                return self.reply(failure=f"the reviewer model refused: {answer.detail or 'no reason given'}")
            self.messages.append({"role": "assistant", "content": _history(content)})
            if not calls:
                silent += 1
                if silent > REMINDERS or answer.stop_reason in NOT_AN_END - {"pause_turn"}:
                    said = _text_of(content)
                    return self.reply(
                        failure=f"the reviewer gave no verdict ({said[:300] or answer.stop_reason})"
                    )
                if answer.stop_reason != "pause_turn":
                    self.messages.append(
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": f"Give your verdict by calling `{SUBMIT_VERDICT}`."}
                            ],
                        }
                    )
                continue
            self.messages.append({"role": "user", "content": self._answers(calls, None, "")})
        return self.reply(failure=f"the reviewer gave no verdict in {self.turns} turns (max_turns)")

    def _answers(self, calls: list[Block], submitted: Block | None, problem: str) -> list[Block]:
        """A result for every tool call of the turn: the tools run, a broken verdict answered with
        what is wrong with it."""
        results: list[Block] = []
        for call in calls:
            call_id = str(call.get("id"))
            name = str(call.get("name"))
            if call is submitted or name == SUBMIT_VERDICT:
                results.append(
                    _tool_result(
                        call_id, f"verdict not accepted: {problem}; call {SUBMIT_VERDICT} again", True
                    )
                )
                continue
            done = self.tools.call(name, call.get("input"))
            self.listener(AgentEvent(kind="tool_call", detail=f"review: {done.summary}"))
            results.append(_tool_result(call_id, done.text, done.is_error))
        return results

    def _progress(self, detail: str) -> None:
        self.listener(AgentEvent(kind="progress", detail=redact(detail)))
