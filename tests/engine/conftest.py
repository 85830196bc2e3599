"""A small two-phase plan with real verification commands, in a real repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_repo

PLAN = """\
# Plan: greeting tool

## Phase 1: Basics

- [ ] T001 Create `greet.py` with a `greet(name)` function
  - Verify: `python3 -c "import greet; assert greet.greet('Ann') == 'Hello, Ann!'"`
- [ ] T002 Add `notes/one.txt`
  - Verify: `test -f notes/one.txt`

## Phase 2: More

- [ ] T003 Add `shout(name)` to `greet.py`
  - Verify: `python3 -c "import greet; assert greet.shout('ann') == 'HELLO, ANN!'"`
- [ ] T004 Add `notes/two.txt`
  - Verify: `test -f notes/two.txt` and `grep -q two notes/two.txt`
- [ ] T005 Add `notes/three.txt`
  - Verify: `test -f notes/three.txt`
"""

GREET = "def greet(name):\n    return f'Hello, {name}!'\n"
SHOUT = "\n\ndef shout(name):\n    return greet(name).upper()\n"

SCRIPT: dict[str, Any] = {
    "T001": [{"write": "greet.py", "content": GREET}],
    "T002": [{"write": "notes/one.txt", "content": "one\n"}],
    "T003": [{"append": "greet.py", "content": SHOUT}],
    "T004": [{"write": "notes/two.txt", "content": "two\n"}],
    "T005": [{"write": "notes/three.txt", "content": "three\n"}],
}


def write_project(
    root: Path, plan: str = PLAN, script: dict[str, Any] | None = None
) -> tuple[Path, Path, Path]:
    """(repo, plan path, script path); the script lives outside the repository."""
    repo = make_repo(
        root / "repo", {"README.md": "# greeting\n", ".gitignore": "__pycache__/\n", "plan.md": plan}
    )
    script_path = root / "script.json"
    script_path.write_text(json.dumps(SCRIPT if script is None else script))
    return repo, repo / "plan.md", script_path


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path, Path]:
    return write_project(tmp_path)
