"""`orchestrate init` on small projects of each ecosystem, made here, run as a user runs it: the
checks their build files name are tried once (sandboxed, no key), the passing ones written to
orchestrate.toml, the failing ones commented out with their error."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from orchestrator.config import load_settings
from tests.conftest import make_repo, orchestrate

KEY = "sk-ant-init-test-0123456789"


def _verify(repo: Path) -> list[str]:
    return list(tomllib.loads((repo / "orchestrate.toml").read_text())["verify"])


def _python_project(tmp_path: Path, *, failing: bool = False) -> Path:
    repo = make_repo(
        tmp_path / "py",
        {
            ".gitignore": ".venv\n",
            "pyproject.toml": '[project]\nname = "x"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n',
            "tests/test_one.py": f"def test_one():\n    assert 1 + 1 == (3 if {failing} else 2)\n",
        },
    )
    # The project's own virtual environment, as `init` looks for it: ours, which has pytest.
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return repo


def test_python_project_gets_its_pytest(tmp_path: Path) -> None:
    repo = _python_project(tmp_path)

    done = orchestrate(repo, "init", env={"ANTHROPIC_API_KEY": KEY})

    assert done.returncode == 0, done.stderr
    assert _verify(repo) == [".venv/bin/python -m pytest -q"]
    assert "1 of 1 check(s) passed" in done.stdout
    # What init wrote is settings a run reads.
    assert load_settings(repo).verify == [".venv/bin/python -m pytest -q"]


def test_a_failing_check_is_written_commented_out_with_its_error(tmp_path: Path) -> None:
    repo = _python_project(tmp_path, failing=True)

    done = orchestrate(repo, "init")

    assert done.returncode == 0, done.stderr
    assert _verify(repo) == []
    text = (repo / "orchestrate.toml").read_text()
    assert '    # ".venv/bin/python -m pytest -q",  # pyproject.toml [tool.pytest.ini_options]' in text
    assert "#   failed: exit 1: " in text
    assert "1 failed" in text
    assert "0 of 1 check(s) passed" in done.stdout


def test_make_targets_run_without_the_key_and_the_failing_one_is_left_out(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "mk",
        {
            "Makefile": (
                "VERSION := 1\n"
                "lint:\n\t@printf '\\033[31mlint:\\033[0m style error in main.c\\a\\n' >&2; exit 3\n"
                'test: build\n\t@test -z "$$ANTHROPIC_API_KEY" && echo no key\n'
                "build:\n\t@mkdir -p out && echo built > out/app\n"
                "deploy:\n\t@echo never run\n"
            )
        },
    )

    done = orchestrate(repo, "init", env={"ANTHROPIC_API_KEY": KEY})

    assert done.returncode == 0, done.stderr
    # `test` passes only where the key is absent; `deploy` is not a check.
    assert _verify(repo) == ["make build", "make test"]
    text = (repo / "orchestrate.toml").read_text()
    assert "#   failed: exit 2: lint: style error in main.c" in text
    assert KEY not in text + done.stdout + done.stderr
    # What `make build` made is named: a run would refuse the dirty tree.
    assert "warning: the checks left changes in the work tree (out/app)" in done.stderr


@pytest.mark.skipif(
    shutil.which("npm") is None or shutil.which("node") is None, reason="node/npm not installed"
)
def test_node_project_gets_its_scripts(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "node",
        {
            "package.json": (
                '{"name": "x", "version": "1.0.0", "scripts": {'
                '"test": "node test.js", "build": "node -e \\"\\"", "start": "node server.js", '
                '"lint": "node -e \\"console.error(\'lint: 2 problems\'); process.exit(1)\\""}}\n'
            ),
            "tsconfig.json": "{}\n",
            "test.js": "if (process.env.ANTHROPIC_API_KEY) process.exit(9)\n",
        },
    )

    done = orchestrate(repo, "init", env={"ANTHROPIC_API_KEY": KEY}, timeout=300)

    assert done.returncode == 0, done.stderr
    assert _verify(repo) == ["npm run build", "npm test"]
    text = (repo / "orchestrate.toml").read_text()
    assert "#   failed: exit 1: lint: 2 problems" in text
    # tsc is not installed: named, not fetched (without the network npx retries for a minute).
    assert '# "node_modules/.bin/tsc --noEmit",  # tsconfig.json' in text
    assert "needs `node_modules/.bin/tsc`, which is not there" in text


def _real_home_toolchain() -> dict[str, str]:
    """rustup's cargo finds its toolchains under the real home; the tests give HOME a temp dir."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    env = {}
    for name, folder in (("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")):
        if name not in os.environ and (home / folder).is_dir():
            env[name] = str(home / folder)
    return env


def _works(command: list[str], env: dict[str, str]) -> bool:
    if shutil.which(command[0]) is None:
        return False
    try:
        done = subprocess.run(
            command, env={**os.environ, **env}, capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_rust_project_gets_cargo_test(tmp_path: Path) -> None:
    env = _real_home_toolchain()
    if not _works(["cargo", "--version"], env):
        pytest.skip("no working Rust toolchain (cargo) here")
    repo = make_repo(
        tmp_path / "rs",
        {
            ".gitignore": "target\n",
            "Cargo.toml": '[package]\nname = "x"\nversion = "0.1.0"\nedition = "2021"\n',
            "src/lib.rs": (
                "pub fn one() -> i32 { 1 }\n"
                "#[cfg(test)]\nmod t { #[test] fn a() { assert_eq!(super::one(), 1); } }\n"
            ),
        },
    )

    done = orchestrate(repo, "init", env=env, timeout=600)

    assert done.returncode == 0, done.stderr
    assert _verify(repo) == ["cargo test"]


def test_go_project_gets_vet_and_test(tmp_path: Path) -> None:
    if not _works(["go", "version"], {}):
        pytest.skip("no Go toolchain (go) here")
    repo = make_repo(
        tmp_path / "go",
        {
            "go.mod": "module example.com/x\n\ngo 1.21\n",
            "x.go": "package x\n\nfunc One() int { return 1 }\n",
            "x_test.go": (
                'package x\n\nimport "testing"\n\n'
                'func TestOne(t *testing.T) {\n\tif One() != 1 {\n\t\tt.Fatal("no")\n\t}\n}\n'
            ),
        },
    )

    done = orchestrate(repo, "init", timeout=600)

    assert done.returncode == 0, done.stderr
    text = (repo / "orchestrate.toml").read_text()
    # Go wants a writable build cache; the sandbox may refuse it, and then says so in the file.
    assert '"go vet ./...",' in text
    assert '"go test ./...",' in text


def test_a_project_without_build_files_gets_an_empty_list(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "bare")

    done = orchestrate(repo, "init")

    assert done.returncode == 0, done.stderr
    assert _verify(repo) == []
    assert "no check found" in done.stdout


def test_existing_settings_are_never_replaced_without_force(tmp_path: Path) -> None:
    repo = _python_project(tmp_path)
    (repo / "orchestrate.toml").write_text('model = "mine"\n')

    done = orchestrate(repo, "init")

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"orchestrate: error: {repo / 'orchestrate.toml'} already exists; pass --force to replace it"
    ]
    assert (repo / "orchestrate.toml").read_text() == 'model = "mine"\n'

    forced = orchestrate(repo, "init", "--force")

    assert forced.returncode == 0, forced.stderr
    assert _verify(repo) == [".venv/bin/python -m pytest -q"]


def test_settings_in_pyproject_are_not_shadowed_without_force(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "py", {"pyproject.toml": '[tool.orchestrate]\nmodel = "mine"\n'})

    done = orchestrate(repo, "init")

    assert done.returncode == 2
    assert "already holds [tool.orchestrate]" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (repo / "orchestrate.toml").exists()


def test_a_broken_build_file_is_one_line_naming_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "node", {"package.json": '{\n  "scripts": {"test": "x",}\n}\n'})

    done = orchestrate(repo, "init")

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"orchestrate: error: {repo / 'package.json'}:2: ")
    assert not (repo / "orchestrate.toml").exists()


def test_outside_a_repository_is_refused(tmp_path: Path) -> None:
    done = orchestrate(tmp_path, "init")

    assert done.returncode == 2
    assert "is not inside a git repository" in done.stderr


def test_a_plans_global_standards_are_offered_as_checks(tmp_path: Path) -> None:
    """Issue 17: "TypeScript compiles without errors" in a plan's Verification Standards is a check
    a command can make; `init --plan` offers it (tried like the others)."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "seed" / "orchestrator-prompt.md"
    prompt = fixture.read_text().replace(
        "- [ ] No `Any` types used", "- [ ] No `Any` types used\n- [ ] TypeScript compiles without errors"
    )
    repo = make_repo(tmp_path / "shop", {"plans/prompt.md": prompt})

    done = orchestrate(repo, "init", "--plan", "plans/prompt.md")

    assert done.returncode == 0, done.stderr
    written = (repo / "orchestrate.toml").read_text()
    assert _verify(repo) == ["python3 -m compileall -q ."]
    assert 'plans/prompt.md asks "Python compiles without errors"' in written
    # No TypeScript here: offered, left out with the reason.
    assert '# "node_modules/.bin/tsc --noEmit",  # plans/prompt.md asks' in written
    assert "TypeScript compiles without errors" in written


def test_init_with_a_plan_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "shop")
    done = orchestrate(repo, "init", "--plan", "plans/nope.md")
    assert done.returncode == 2
    assert "nope.md" in done.stderr
    assert "Traceback" not in done.stderr
