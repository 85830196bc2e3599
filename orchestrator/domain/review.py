"""The reviewer's verdict: the `submit_verdict` tool's input, a public contract (README, "The
reviewer"), and what orchestrate found when it checked the evidence.

    {"criteria": [{"criterion": str, "verdict": "met" | "not_met" | "needs_human", "reason": str,
                   "evidence": [{"path": str, "start_line": int, "end_line": int, "quote": str}
                                | {"command": str, "exit_code": int, "output_tail": str}]}]}

A verdict is read leniently where leniency costs nothing (a missing `reason` or `evidence` is
empty, a number given as a string is read) and refused where it would change what was said (an
unknown verdict word, an evidence item that is neither a quote nor a command): `VerdictError` says
what is wrong, in words a model can act on.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

VerdictWord = Literal["met", "not_met", "needs_human"]
VERDICT_WORDS: tuple[VerdictWord, ...] = ("met", "not_met", "needs_human")

SUBMIT_VERDICT = "submit_verdict"
SUBMIT_VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "criteria": {
            "type": "array",
            "description": "One entry per criterion you were given, in the same words.",
            "items": {
                "type": "object",
                "properties": {
                    "criterion": {"type": "string"},
                    "verdict": {"type": "string", "enum": list(VERDICT_WORDS)},
                    "reason": {"type": "string"},
                    "evidence": {
                        "type": "array",
                        "items": {
                            "anyOf": [
                                {
                                    "type": "object",
                                    "properties": {
                                        "path": {"type": "string"},
                                        "start_line": {"type": "integer"},
                                        "end_line": {"type": "integer"},
                                        "quote": {"type": "string"},
                                    },
                                    "required": ["path", "start_line", "end_line", "quote"],
                                },
                                {
                                    "type": "object",
                                    "properties": {
                                        "command": {"type": "string"},
                                        "exit_code": {"type": "integer"},
                                        "output_tail": {"type": "string"},
                                    },
                                    "required": ["command", "exit_code", "output_tail"],
                                },
                            ]
                        },
                    },
                },
                "required": ["criterion", "verdict", "reason", "evidence"],
            },
        }
    },
    "required": ["criteria"],
}


class Quote(BaseModel):
    """Lines of a file of the attempt's tree that show the criterion holds (or does not)."""

    path: str
    start_line: int
    end_line: int
    quote: str


class CommandRun(BaseModel):
    """A command the reviewer ran against the attempt's tree, and what it gave."""

    command: str
    exit_code: int
    output_tail: str = ""


Evidence = Quote | CommandRun


class CriterionVerdict(BaseModel):
    criterion: str
    verdict: VerdictWord
    reason: str = ""
    evidence: list[Evidence] = Field(default_factory=list)


class Verdict(BaseModel):
    criteria: list[CriterionVerdict] = Field(default_factory=list)

    def contract(self) -> dict[str, Any]:
        """As the tool's input: what the journal keeps of it."""
        return self.model_dump(mode="json")


class VerdictError(ValueError):
    """A `submit_verdict` input that does not follow the contract; the message says how."""


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise VerdictError(f"{where} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise VerdictError(f"{where} must be an integer, got {value!r}")


def _text(value: Any, where: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise VerdictError(f"{where} must be a string")
    return value


def _evidence(item: Any, where: str) -> Evidence:
    if not isinstance(item, dict):
        raise VerdictError(
            f"{where} must be an object: a quote (path, start_line, end_line, quote) or a command"
        )
    if "command" in item:
        return CommandRun(
            command=_text(item["command"], f"{where}.command"),
            exit_code=_integer(item.get("exit_code"), f"{where}.exit_code"),
            output_tail=_text(item.get("output_tail"), f"{where}.output_tail", ""),
        )
    if "path" in item or "quote" in item:
        start = _integer(item.get("start_line"), f"{where}.start_line")
        return Quote(
            path=_text(item.get("path"), f"{where}.path"),
            start_line=start,
            end_line=_integer(item.get("end_line", start), f"{where}.end_line"),
            quote=_text(item.get("quote"), f"{where}.quote"),
        )
    raise VerdictError(
        f"{where} is neither a quote (path, start_line, end_line, quote) nor a command "
        "(command, exit_code, output_tail)"
    )


def parse_verdict(raw: Any) -> Verdict:
    """The verdict `raw` (the tool's input) holds, or VerdictError saying what is wrong."""
    if not isinstance(raw, dict) or not isinstance(raw.get("criteria"), list):
        raise VerdictError('the input must be an object {"criteria": [...]}')
    if not raw["criteria"]:
        raise VerdictError("criteria is empty: give a verdict for every criterion you were given")
    found: list[CriterionVerdict] = []
    for n, item in enumerate(raw["criteria"]):
        where = f"criteria[{n}]"
        if not isinstance(item, dict):
            raise VerdictError(f"{where} must be an object")
        word = item.get("verdict")
        if isinstance(word, str):  # "Met", "not met", "needs-human" say the same
            word = word.strip().lower().replace(" ", "_").replace("-", "_")
        if word not in VERDICT_WORDS:
            raise VerdictError(f"{where}.verdict must be one of {', '.join(VERDICT_WORDS)}, got {word!r}")
        evidence = item.get("evidence") or []
        if not isinstance(evidence, list):
            raise VerdictError(f"{where}.evidence must be a list")
        found.append(
            CriterionVerdict(
                criterion=_text(item.get("criterion"), f"{where}.criterion"),
                verdict=word,
                reason=_text(item.get("reason"), f"{where}.reason", ""),
                evidence=[_evidence(e, f"{where}.evidence[{i}]") for i, e in enumerate(evidence)],
            )
        )
    return Verdict(criteria=found)


# -- what orchestrate found ------------------------------------------------------------------------

ReviewOutcome = Literal["met", "not_met", "needs_human", "not_held"]
"""How a review round ended: every criterion met, some not met (the worker tries again with the
reasons), some for a human, or the reviewer's evidence did not hold (or it gave no verdict)."""


class CheckedEvidence(BaseModel):
    """One evidence item as the reviewer gave it, and whether it held when orchestrate checked it."""

    path: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    quote: str | None = None
    command: str | None = None
    exit_code: int | None = None
    output_tail: str | None = None
    held: bool = False
    why: str = ""
    """Why it did not hold (or, for a command, what it gave when orchestrate ran it)."""


class CheckedCriterion(BaseModel):
    criterion: str
    verdict: VerdictWord
    reason: str = ""
    evidence: list[CheckedEvidence] = Field(default_factory=list)
