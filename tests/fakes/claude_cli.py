"""A fake `claude` executable for the claude-code backend's tests, put first on PATH.

What it does is steered by files next to it: the lines to print (or a fixture captured from the real
CLI, tests/fixtures/claude_code), what `claude auth status` and the readiness probe answer, and where
it logs how it was called. It can also edit files in its cwd, as the real one would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

FAKE_CLAUDE = """#!{python}
import json, os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
script = json.load(open(os.path.join(here, "script.json")))
argv = sys.argv[1:]
kind = "auth" if argv[:1] == ["auth"] else "probe" if "--no-session-persistence" in argv else "session"
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"kind": kind, "argv": argv, "cwd": os.getcwd(),
                          "claudecode": os.environ.get("CLAUDECODE"),
                          "env": {{k: os.environ.get(k) for k in ("IS_SANDBOX", "ANTHROPIC_MODEL",
                                   "ANTHROPIC_API_KEY", "CLAUDE_CODE_MAX_RETRIES")}},
                          "stdin": sys.stdin.read() if not sys.stdin.isatty() else ""}}) + "\\n")
if kind == "auth":
    print(json.dumps(script.get("auth", {{"loggedIn": True, "authMethod": "api_key"}}), indent=2))
    sys.exit(0 if script.get("auth", {{}}).get("loggedIn", True) else 1)
if kind == "probe":
    print(json.dumps(script.get("probe", {{"type": "result", "subtype": "success", "is_error": False,
                                           "result": "OK", "total_cost_usd": 0.0001}})))
    sys.exit(0)
for path, content in script.get("edits", {{}}).items():
    with open(path, "w") as f:
        f.write(content)
if script.get("spawn"):  # as its Bash tool starts a command: in a session of its own
    subprocess.Popen(["sh", "-c", script["spawn"]], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
lines = script.get("lines")
if lines is None:
    lines = open(script["fixture"]).read().splitlines()
for line in lines:
    print(line if isinstance(line, str) else json.dumps(line), flush=True)
    time.sleep(script.get("pause", 0))
sys.stderr.write(script.get("stderr", ""))
sys.exit(script.get("exit", 0))
"""
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_code"
"""stream-json output of the real CLI (2.1.197) against tests/fakes/messages_server.py."""


def result(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Created hello.py, which prints hello.",
        "num_turns": 3,
        "total_cost_usd": 0.0421,
        "duration_ms": 1200,
        "usage": {
            "input_tokens": 120,
            "output_tokens": 340,
            "cache_creation_input_tokens": 2000,
            "cache_read_input_tokens": 9000,
        },
    }
    return {**base, **overrides}


def install(bin_dir: Path) -> Path:
    """The fake as `bin_dir/claude`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    claude = bin_dir / "claude"
    claude.write_text(FAKE_CLAUDE.format(python=sys.executable))
    claude.chmod(0o755)
    return bin_dir


def script(bin_dir: Path, lines: list[Any] | None = None, **extra: Any) -> None:
    (bin_dir / "script.json").write_text(json.dumps({"lines": lines, **extra}))


def replay(bin_dir: Path, fixture: str, **extra: Any) -> None:
    """The fake prints what the real CLI printed (tests/fixtures/claude_code/FIXTURE.jsonl)."""
    script(bin_dir, None, fixture=str(FIXTURES / f"{fixture}.jsonl"), **extra)


def fixture_result(fixture: str) -> dict[str, Any]:
    last = (FIXTURES / f"{fixture}.jsonl").read_text().splitlines()[-1]
    parsed: dict[str, Any] = json.loads(last)
    return parsed


def calls(bin_dir: Path, kind: str = "session") -> list[dict[str, Any]]:
    logged = [json.loads(line) for line in (bin_dir / "calls.jsonl").read_text().splitlines()]
    return [call for call in logged if call["kind"] == kind]
