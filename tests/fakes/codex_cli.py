"""A fake `codex` executable for the codex backend's tests, put first on PATH.

It prints `--json` event lines as the real codex 0.171.0 printed them against
tests/fakes/responses_server.py (the shapes below were captured from it), steered by a script.json
next to it: the lines and exit status of a session and of the readiness probe (a session run with
`--sandbox read-only`), files to write in its cwd, a command to leave running in a session of its
own, how long to sleep. It logs how it was called (argv, the variables that matter, stdin).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

FAKE_CODEX = """#!{python}
import json, os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
script = json.load(open(os.path.join(here, "script.json")))
argv = sys.argv[1:]
kind = "probe" if "read-only" in argv else "session"
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"kind": kind, "argv": argv, "cwd": os.getcwd(),
                          "env": {{k: os.environ.get(k) for k in ("CODEX_HOME", "CODEX_API_KEY",
                                   "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OTHER_SECRET")}},
                          "stdin": sys.stdin.read()}}) + "\\n")
part = script.get(kind, {{}})
for path, content in part.get("edits", {{}}).items():
    with open(path, "w") as f:
        f.write(content)
if part.get("spawn"):  # a command it started, in a session of its own
    subprocess.Popen(["sh", "-c", part["spawn"]], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for line in part.get("lines", []):
    print(json.dumps(line), flush=True)
time.sleep(part.get("sleep", 0))
sys.exit(part.get("exit", 0))
"""

THREAD = {"type": "thread.started", "thread_id": "01a2268f-adab-7b32-9de1-31ec75ac739e"}
TURN = {"type": "turn.started"}


def usage(input_tokens: int = 2000, cached: int = 400, output: int = 100) -> dict[str, Any]:
    return {
        "type": "turn.completed",
        "usage": {
            "input_tokens": input_tokens,
            "cached_input_tokens": cached,
            "cache_write_input_tokens": 0,
            "output_tokens": output,
            "reasoning_output_tokens": 0,
        },
    }


def command(text: str, output: str = "", exit_code: int = 0) -> dict[str, Any]:
    return {
        "type": "item.completed",
        "item": {
            "id": "item_1",
            "type": "command_execution",
            "command": f'/bin/bash -lc "{text}"',
            "aggregated_output": output,
            "exit_code": exit_code,
            "status": "completed" if exit_code == 0 else "failed",
        },
    }


def message(text: str) -> dict[str, Any]:
    return {"type": "item.completed", "item": {"id": "item_2", "type": "agent_message", "text": text}}


def api_error(status: int, reason: str, text: str) -> list[dict[str, Any]]:
    """How codex ends a turn on an API error after its retries (it then exits 1)."""
    said = f"unexpected status {status} {reason}: {text}, url: http://127.0.0.1:37443/v1/responses"
    return [{"type": "error", "message": said}, {"type": "turn.failed", "error": {"message": said}}]


def session(*items: dict[str, Any]) -> list[dict[str, Any]]:
    return [THREAD, TURN, *items]


SUCCESS = session(command("printf hi > hello.txt"), message("DONE: wrote hello.txt"), usage())
READ_ONLY = session(
    command("printf hi > hello.txt", "/bin/bash: line 1: hello.txt: Read-only file system\n", 1),
    message("DONE: wrote hello.txt"),
    usage(),
)
"""What codex 0.171.0 printed with its default read-only sandbox: the write refused, exit 0."""
OVERLOADED = session(*api_error(529, "<unknown status code>", "Overloaded"))
UNAUTHORIZED = session(*api_error(401, "Unauthorized", "Incorrect API key provided: sk-wrong."))
NO_KEY = session(
    {"type": "error", "message": "Missing environment variable: `OPENAI_API_KEY`."},
    {"type": "turn.failed", "error": {"message": "Missing environment variable: `OPENAI_API_KEY`."}},
)
"""codex 0.171.0 with a provider whose env_key is not set."""
PROBE_OK = session(message("OK"), usage(1500, 0, 2))


def install(bin_dir: Path) -> Path:
    """The fake as `bin_dir/codex`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    codex = bin_dir / "codex"
    codex.write_text(FAKE_CODEX.format(python=sys.executable))
    codex.chmod(0o755)
    return bin_dir


def script(
    bin_dir: Path,
    lines: list[dict[str, Any]],
    exit: int = 0,  # noqa: A002 - the fake's own word
    probe: list[dict[str, Any]] | None = None,
    probe_exit: int = 0,
    **extra: Any,
) -> None:
    (bin_dir / "script.json").write_text(
        json.dumps(
            {
                "session": {"lines": lines, "exit": exit, **extra},
                "probe": {"lines": PROBE_OK if probe is None else probe, "exit": probe_exit},
            }
        )
    )


def calls(bin_dir: Path, kind: str = "session") -> list[dict[str, Any]]:
    log = bin_dir / "calls.jsonl"
    logged = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [call for call in logged if call["kind"] == kind]
