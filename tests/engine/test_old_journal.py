"""A run stopped by the orchestrate of the previous journal format resumes with this one.

The fixture is a project as the crash harness makes it, run by orchestrate at commit 73f7c88 (the
journal's untyped records, format 1) and killed right after T002 was verified and journaled: its
repository, its run's journal and prompts, and the agent's script. The run's journal names the
directory it was made in; the test puts its own in that place.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from benchmarks.crash_bench import Project, problems, reference
from tests.conftest import REPO_ROOT, orchestrate

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "journals" / "v1-serial-after-verified.tar.gz"
MADE_IN = "/tmp/engfix/proj"


def unpack(tmp_path: Path) -> Project:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="data")
    root = tmp_path / "proj"
    for journal in (root / "repo" / "checkpoints").glob("*/journal.jsonl"):
        journal.write_text(journal.read_text().replace(MADE_IN, str(root)))
    return Project(root, root / "repo", root / "repo" / "plan.md", root / "script.json")


def test_a_run_of_the_previous_journal_format_resumes_to_the_same_end(tmp_path: Path) -> None:
    project = unpack(tmp_path)
    done = orchestrate(project.repo, "resume")
    assert done.returncode == 0, done.stderr
    assert "its verified work is intact" in done.stderr or "T002" in done.stderr
    project.outputs.append(done.stdout + done.stderr)
    assert problems(project, reference(tmp_path / "reference")) == []


def _journal_with(repo: Path, *lines: str) -> Path:
    journal = repo / "checkpoints" / "20260101-000000-abcd" / "journal.jsonl"
    journal.parent.mkdir(parents=True)
    start = '{"v":1,"type":"run_started","at":1.0,"run_id":"20260101-000000-abcd","plan":"plan.md"}'
    journal.write_text("".join(f"{line}\n" for line in (start, *lines)))
    return journal


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"v":9,"type":"task_done","task":"T1"}', "written in journal format 9; this orchestrate reads"),
        ('{"v":2,"type":"task_teleported","task":"T1"}', "unknown record type 'task_teleported'"),
        (
            '{"v":2,"type":"verification","task":"T1","exit_code":"zero"}',
            "a verification record whose exit_code is wrong",
        ),
        ("[1, 2]", "not a journal record"),
    ],
)
@pytest.mark.parametrize("command", [["show"], ["resume"], ["runs"]])
def test_a_journal_line_that_is_not_a_transition_is_one_line_naming_it(
    git_repo: Path, line: str, says: str, command: list[str]
) -> None:
    journal = _journal_with(git_repo, line)
    done = orchestrate(git_repo, *command)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{journal}:2: {says}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
