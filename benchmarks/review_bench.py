"""What the reviewer adds to a task: its tokens and cost against the worker's, on scripted scenarios.

    python benchmarks/review_bench.py [--units 3] [--quiet]

`orchestrate run --agent anthropic` (the real CLI and SDK) against the fake Messages API on
127.0.0.1 (tests/fakes/messages_server.py: 4 characters a token, the prompt cache simulated from
the request's breakpoints), on a plan of units with criteria no command checks. The worker does
each unit as a coding agent does a small one: it looks around, reads a file, writes the module and
its test, runs the test, fixes it, runs it again and reports (9 turns). Two reviewers are measured:
one that reads the module before it answers (2 turns) and one that answers with nothing but its
`submit_verdict` call (1 turn). The reviewer reads the diff, the criteria and the rules, never the
worker's conversation: its share is the point. Target: under 25 % of the worker's tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `orchestrator` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.messages_server import (  # noqa: E402 - after the path is set
    TEST_KEY,
    TEST_MODEL,
    FakeMessagesServer,
    RecordedRequest,
    Response,
    finish,
    tool_call,
)

TARGET = 0.25
ORCHESTRATE = Path(sys.executable).with_name("orchestrate")

UNIT = """\
### Task {n}: Unit {n}

Create `pkg/unit{n}.py` with `value{n}()` returning {n}, and its test `tests/test_unit{n}.py`.
Follow the project's conventions.

**Verification:**
- [ ] `value{n}()` returns {n}
- [ ] The module has a docstring that says what it is for
- [ ] The test covers the function
"""

README = "# pkg\n\nA package of small units, each a module with a function and its test.\n"
CONVENTIONS = "Modules start with a docstring. Functions are typed. Tests live in tests/.\n"


def plan(units: int) -> str:
    head = "# Plan: units\n\n## Conventions\n\n" + CONVENTIONS + "\n## Phase 1: Units\n\n"
    return head + "\n".join(UNIT.format(n=n) for n in range(1, units + 1))


def module(n: int) -> str:
    return (
        f'"""Unit {n}: the number {n}, for the package\'s callers."""\n\n\n'
        f"def value{n}() -> int:\n    return {n}\n"
    )


def test_file(n: int) -> str:
    return (
        f"from pkg.unit{n} import value{n}\n\n\ndef test_value{n}() -> None:\n    assert value{n}() == {n}\n"
    )


def unit_of(request: RecordedRequest) -> int:
    found = re.search(r"pkg/unit(\d+)\.py", json.dumps(request.body["messages"][0]))
    assert found is not None, "the prompt names the unit's module"
    return int(found.group(1))


def worker(request: RecordedRequest) -> Response:
    n = unit_of(request)
    turn = (len(request.body["messages"]) + 1) // 2
    steps: list[Response] = [
        tool_call("list_dir", {"path": ".", "recursive": True}, say="Looking at the project first."),
        tool_call("read_file", {"path": "README.md"}),
        tool_call("read_file", {"path": "CLAUDE.md"}),
        tool_call("write_file", {"path": f"pkg/unit{n}.py", "content": module(n).replace(" -> int", "")}),
        tool_call("write_file", {"path": f"tests/test_unit{n}.py", "content": test_file(n)}),
        tool_call(
            "run_command", {"command": f"python3 -c 'from pkg.unit{n} import value{n}; print(value{n}())'"}
        ),
        tool_call(
            "edit_file",
            {"path": f"pkg/unit{n}.py", "old_string": f"value{n}()", "new_string": f"value{n}() -> int"},
        ),
        tool_call("run_command", {"command": f"python3 -c 'import pkg.unit{n} as m; print(m.__doc__)'"}),
    ]
    if turn <= len(steps):
        return steps[turn - 1]
    return finish("done", f"pkg/unit{n}.py and its test written; value{n}() returns {n}; typed, documented")


def verdict(n: int) -> list[dict[str, Any]]:
    return [
        {
            "criterion": "1",
            "verdict": "met",
            "reason": f"value{n} returns {n}",
            "evidence": [{"path": f"pkg/unit{n}.py", "start_line": 4, "end_line": 5, "quote": f"return {n}"}],
        },
        {
            "criterion": "2",
            "verdict": "met",
            "reason": "it has one",
            "evidence": [
                {"path": f"pkg/unit{n}.py", "start_line": 1, "end_line": 1, "quote": f'"""Unit {n}:'}
            ],
        },
        {
            "criterion": "3",
            "verdict": "met",
            "reason": "the test asserts the value",
            "evidence": [
                {
                    "path": f"tests/test_unit{n}.py",
                    "start_line": 5,
                    "end_line": 5,
                    "quote": f"assert value{n}() == {n}",
                }
            ],
        },
    ]


def reviewer(reads: bool) -> Any:
    def answer(request: RecordedRequest) -> Response:
        n = unit_of(request)
        if reads and len(request.body["messages"]) == 1:
            return tool_call("read_file", {"path": f"pkg/unit{n}.py"})
        return tool_call("submit_verdict", {"criteria": verdict(n)})

    return answer


def is_review(request: RecordedRequest) -> bool:
    return any(tool["name"] == "submit_verdict" for tool in request.body.get("tools", []))


def scenario(directory: Path, units: int, reads: bool) -> dict[str, Any]:
    repo = directory / "repo"
    repo.mkdir(parents=True)
    files = {"plan.md": plan(units), "README.md": README, "CLAUDE.md": CONVENTIONS, "pkg/__init__.py": ""}
    files[".gitignore"] = "__pycache__/\n"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    env = {
        **os.environ,
        "HOME": str(directory),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(directory / ".gitconfig"),
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        "ANTHROPIC_API_KEY": TEST_KEY,
        "ORCHESTRATE_MAX_RETRIES": "0",
    }
    for args in (["init", "-q", "-b", "work"], ["add", "-A"], ["commit", "-qm", "initial"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    answer = reviewer(reads)
    with FakeMessagesServer() as api:
        api.respond_with(lambda r: answer(r) if is_review(r) else worker(r))
        env["ANTHROPIC_BASE_URL"] = api.url
        done = subprocess.run(
            [str(ORCHESTRATE), "run", "plan.md", "--agent", "anthropic", "--model", TEST_MODEL],
            cwd=repo, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the scenario's run failed:\n{done.stderr[-3000:]}")
    shown = json.loads(
        subprocess.run(
            [str(ORCHESTRATE), "show", "--json"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    worker_tokens = review_tokens = 0
    worker_cost = review_cost = 0.0
    for task in shown["tasks"].values():
        usage, review = task["usage"], task["review_usage"]
        worker_tokens += _tokens(usage) - _tokens(review)
        review_tokens += _tokens(review)
        worker_cost += usage["cost_usd"] - review["cost_usd"]
        review_cost += review["cost_usd"]
    share = review_tokens / worker_tokens
    return {
        "reviewer": "reads the module, then answers (2 turns)"
        if reads
        else "answers with submit_verdict only (1 turn)",
        "units": units,
        "worker_tokens_per_task": worker_tokens // units,
        "review_tokens_per_task": review_tokens // units,
        "token_share": round(share, 3),
        "cost_share": round(review_cost / worker_cost, 3) if worker_cost else 0.0,
        "target": TARGET,
        "ok": share < TARGET,
    }


def _tokens(usage: dict[str, Any]) -> int:
    return int(
        usage["input_tokens"]
        + usage["output_tokens"]
        + usage["cache_creation_input_tokens"]
        + usage["cache_read_input_tokens"]
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=3, help="units in the plan (default 3)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="orchestrate-review-bench-") as tmp:
        for reads in (True, False):
            rows.append(scenario(Path(tmp) / ("reads" if reads else "one-shot"), args.units, reads))
    if not args.quiet:
        for row in rows:
            print(
                f"{row['reviewer']}: worker {row['worker_tokens_per_task']} tokens/task, reviewer "
                f"{row['review_tokens_per_task']} ({row['token_share']:.1%} of the worker's tokens, "
                f"{row['cost_share']:.1%} of its cost); target < {TARGET:.0%}: "
                + ("ok" if row["ok"] else "MISSED")
            )
    return rows


if __name__ == "__main__":
    main()
