"""How a task was judged, written into the commit that lands it.

Each task commit carries, besides Orchestrate-Task and Orchestrate-Run, a short trailer built from
the task's record in the state fold, one field per stage that ran:

    Orchestrate-Evidence: checks=3 fail-first=ok review=met
    Orchestrate-Evidence: checks=1 fail-first=none tests-weakened=1   (a test deleted, skipped, ...)
    Orchestrate-Evidence: checks=0 unverified             (nothing judged it)
    Orchestrate-Evidence: checks=0 human=accepted         (a person did: Orchestrate-Attested-By)

The journal keeps the full evidence (`orchestrate show`); the trailer is what `git log` and
`orchestrate audit` read. A stage adds its field in `evidence` from what it folded into the record.
"""

from __future__ import annotations

from orchestrator.domain.state import TaskRecord
from orchestrator.persistence.repo import RUN_TRAILER, TASK_TRAILER

EVIDENCE_TRAILER = "Orchestrate-Evidence"
ATTESTED_TRAILER = "Orchestrate-Attested-By"
"""`Name <email>`: the git identity of the person who accepted a task that waited for one."""


def evidence(record: TaskRecord) -> str:
    """The Orchestrate-Evidence value for `record`: its fields, present only when that stage ran."""
    passed = [c for c in record.checks.values() if c.ok and not c.preexisting]
    fields = [f"checks={len(passed)}"]
    failing_before = [c for c in record.checks.values() if c.preexisting]
    if failing_before:
        # Failed before the run's first task as they do now: run, not counted, not blamed.
        fields.append(f"failing-before-run={len(failing_before)}")
    found = record.fail_first
    if found is not None and found.result != "off":  # no record: the task touched no test
        fields.append(f"fail-first={found.result}")
    if found is not None and found.weakened:  # existing tests deleted, skipped or loosened
        fields.append(f"tests-weakened={len(found.weakened)}")
    review = _review(record)
    if review:
        fields.append(f"review={review}")
    if record.attested_by:
        fields.append("human=accepted")
    elif not passed and review != "met":
        fields.append("unverified")
    return " ".join(fields)


def _review(record: TaskRecord) -> str:
    """How the reviewer judged the landed attempt: its last round's outcome (`met`, or
    `needs-human` for a task a person then accepted), `none` when no reviewer could judge its
    criteria, "" when it had nothing for one."""
    attempt = record.current()
    if attempt is None:
        return ""
    if attempt.reviews:
        return attempt.reviews[-1].outcome.replace("_", "-")
    return "none" if attempt.not_reviewed else ""


def task_trailers(record: TaskRecord, run_id: str) -> dict[str, str]:
    """Every trailer of the commit that lands the task, in the order they are written."""
    trailers = {TASK_TRAILER: record.id, RUN_TRAILER: run_id, EVIDENCE_TRAILER: evidence(record)}
    if record.attested_by:
        trailers[ATTESTED_TRAILER] = record.attested_by
    return trailers
