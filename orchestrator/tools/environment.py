"""The environment of the commands orchestrate runs but did not write, and the secrets it holds.

A child gets an environment built from an allow-list, never from ours minus what looks secret: a
deny-list by name misses a key kept under an innocent name (`DEPLOY_NOTE=sk-ant-...`), and every
variable it misses reaches code the agent wrote (a test it added, run by the plan's own check).
Variables a user wants passed on are named in the settings (`pass_env`, `agent_env`).

Secret-looking variables are taken out of our own environment at start (`hold_secrets`) and kept
here for the code that needs them (the anthropic client's key, an agent CLI's own key), so neither
orchestrate's children nor its git inherit them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

# AUTH, but not AUTHOR: GIT_AUTHOR_NAME is an identity our own commits need.
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH(?!OR))", re.IGNORECASE)

ALLOWED: frozenset[str] = frozenset(
    {
        # Who and where: what shells, compilers and test runners look up.
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "TZ", "TERM", "COLORTERM", "NO_COLOR",
        "LANG", "LANGUAGE", "CI",
        # Toolchains a project's checks run with (paths, not secrets).
        "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHONPATH", "PYTHONIOENCODING",
        "PYTHONUTF8", "PYENV_ROOT", "JAVA_HOME", "GOPATH", "GOROOT", "GOCACHE", "GOMODCACHE",
        "GOFLAGS", "CARGO_HOME", "RUSTUP_HOME", "NODE_PATH", "NVM_DIR", "LD_LIBRARY_PATH",
        "PKG_CONFIG_PATH", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
        # A test that commits needs an identity.
        "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
    }
)  # fmt: skip
"""Variables a child inherits when they are set (LC_* too). Not here, on purpose: proxies (their URLs
carry passwords), package index URLs (tokens), SSH_AUTH_SOCK and XDG_RUNTIME_DIR (sockets that act
for the user), DISPLAY, and anything a deny-list would have let through."""

KEPT_FOR_OURSELVES: frozenset[str] = frozenset({"SSH_AUTH_SOCK"})
"""Secret-looking by name, but a socket path our own git may need (ssh commit signing); it stays in
our environment and is still never passed to a child."""

OUR_SETTINGS = "ORCHESTRATE_"
"""Our own settings (ORCHESTRATE_MAX_TOKENS looks secret by name): read by config, never passed to a
child (they are not on the allow-list)."""

_held: dict[str, str] = {}


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def secret(name: str) -> str | None:
    """A variable of ours, from the environment or from the secrets held at start."""
    value = os.environ.get(name)
    return value if value is not None else _held.get(name)


def hold_secrets() -> list[str]:
    """Move every secret-looking variable out of os.environ (and so out of every child's and git's
    environment) into this module; `secret(name)` still reads them. Returns their names."""
    names = [
        k
        for k in os.environ
        if is_secret_name(k) and k not in KEPT_FOR_OURSELVES and not k.startswith(OUR_SETTINGS)
    ]
    for name in names:
        _held[name] = os.environ.pop(name)
    return names


def restore_held(prefix: str) -> list[str]:
    """Put the held secrets whose names start with `prefix` back into os.environ, for a library of
    ours that reads them from there (Ray's client: RAY_AUTH_MODE, RAY_AUTH_TOKEN). A command we did
    not write still never gets them (child_env passes the allow-list only); our own git processes
    inherit them with the rest of our environment, and run nothing of the repository's (SAFETY).
    Returns their names."""
    names = [name for name in _held if name.startswith(prefix)]
    for name in names:
        os.environ[name] = _held[name]
    return names


def child_env(extra: Mapping[str, str] | None = None, passed: Iterable[str] = ()) -> dict[str, str]:
    """The environment for a command we did not write: the allow-listed variables we have, then
    the variables the user named in `passed` (held secrets included: they asked for them), then
    `extra`, set by orchestrate itself."""
    env = {k: v for k, v in os.environ.items() if k in ALLOWED or k.startswith("LC_")}
    for name in passed:
        value = secret(name)
        if value is not None:
            env[name] = value
    env.update(extra or {})
    return env


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace values of secret-looking variables (8+ characters) with a marker: ours, and the ones
    held at start (or those of `environ`)."""
    source = {**_held, **os.environ} if environ is None else environ
    for name, value in source.items():
        if len(value) >= 8 and is_secret_name(name) and value in text:
            text = text.replace(value, f"[redacted ${name}]")
    return text
