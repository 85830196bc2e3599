"""The workspace jail: every path an agent names is resolved and must stay inside the root, and out
of the paths it hides (the run's own state)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class OutsideWorkspace(ValueError):  # noqa: N818 - a refusal, shown to the model as-is
    """A path resolves outside the workspace (traversal, absolute path, symlink escape)."""


class HiddenPath(OutsideWorkspace):
    """A path resolves into orchestrate's own state, which the agent may neither read nor write."""


class Workspace:
    def __init__(self, root: Path, hidden: Iterable[Path] = ()):
        self.root = root.resolve()
        # A hidden path that holds the whole workspace (the checkpoints directory, for a parallel
        # task's worktree inside it) hides nothing the jail does not already keep out.
        self.hidden = tuple(
            h for h in (p.resolve() for p in hidden) if not (h == self.root or h in self.root.parents)
        )

    def resolve(self, path: str | Path) -> Path:
        """The absolute path for `path` (relative to the root), refusing anything that leaves it
        or lands in a hidden path.

        Resolving follows symlinks, so a link inside the workspace that points out (or into the
        run's state) is refused too, as is a path whose missing tail hangs below such a link."""
        raw = Path(path)
        candidate = raw if raw.is_absolute() else self.root / raw
        resolved = candidate.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise OutsideWorkspace(f"path '{path}' is outside the workspace {self.root}")
        if self.hides(resolved):
            raise HiddenPath(
                f"path '{path}' is orchestrate's own run state, which the agent may neither read nor "
                "change; work on the project's files"
            )
        return resolved

    def hides(self, path: Path) -> bool:
        """Whether `path` (absolute, with no link left in it) is or lies under a hidden path."""
        return any(path == h or h in path.parents for h in self.hidden)

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix() or "."
