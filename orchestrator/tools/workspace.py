"""The workspace jail: every path an agent names is resolved and must stay inside the root."""

from __future__ import annotations

from pathlib import Path


class OutsideWorkspace(ValueError):  # noqa: N818 - a refusal, shown to the model as-is
    """A path resolves outside the workspace (traversal, absolute path, symlink escape)."""


class Workspace:
    def __init__(self, root: Path):
        self.root = root.resolve()

    def resolve(self, path: str | Path) -> Path:
        """The absolute path for `path` (relative to the root), refusing anything that leaves it.

        Resolving follows symlinks, so a link inside the workspace that points out is refused too,
        as is a path whose missing tail hangs below such a link."""
        raw = Path(path)
        candidate = raw if raw.is_absolute() else self.root / raw
        resolved = candidate.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise OutsideWorkspace(f"path '{path}' is outside the workspace {self.root}")
        return resolved

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix() or "."
