"""What neither an agent nor the checks it wrote may change, undone after each of them: git's own
files (tampering), `protected_paths`, orchestrate's settings, and the plan (put back as it was
before them). The reason an attempt failed, when they did."""

from __future__ import annotations

import glob
from collections.abc import Callable

from orchestrator.config import CONFIG_FILE, PYPROJECT, Settings
from orchestrator.domain import transitions as t
from orchestrator.domain.plan import Task
from orchestrator.engine import protected
from orchestrator.engine.recorder import Recorder
from orchestrator.input_files import PLAN_LIMIT, SETTINGS_LIMIT
from orchestrator.persistence.repo import GitRepo


def settings_as_found(repo: GitRepo) -> dict[str, bytes | None]:
    """orchestrate.toml and pyproject.toml as they are in the run's work tree now."""
    return {name: protected.settings_bytes(repo.root, name) for name in (CONFIG_FILE, PYPROJECT)}


class Guard:
    def __init__(
        self,
        repo: GitRepo,
        plan_rel: str,
        settings: Settings,
        preexisting: dict[str, str | None],
        recorder: Recorder,
        *,
        parallel: bool,
        at_work: Callable[[], list[str]],
        settings_at_start: dict[str, bytes | None] | None = None,
        documents: Callable[[], list[str]] = list,
    ):
        self.repo = repo
        self.plan_rel = plan_rel
        self.settings = settings
        self.preexisting = preexisting
        """Paths dirty before an --allow-dirty run (or the user's, accepted by a resume): shared
        with the run's context, which a resume adds to."""
        self.recorder = recorder
        self.parallel = parallel
        self.at_work = at_work
        """The tasks at work now (a parallel run cannot tell whose agent changed a shared file)."""
        self.documents = documents
        """The other documents whose boxes the plan's units tick (Plan.linked_documents): like the
        plan, orchestrate's to write; an agent's change there is undone as a protected path's is."""
        self.settings_at_start = settings_at_start or settings_as_found(repo)
        """The settings files as the run found them in its work tree (an uncommitted edit of the
        user's included): what a later run or resume would read (see undo_forbidden)."""

    def put_back(
        self, workspace_repo: GitRepo, plan_bytes: bytes | None, staged: bool = False
    ) -> tuple[list[str], list[str]]:
        """Undo what the agent or its checks may not change (see undo_forbidden) and put the plan
        file back as it was before them (`plan_bytes`), never through a link put in the place of
        the plan's folder (that is tampering too). Returns the paths restored and, in words, the
        tampering undone."""
        restored, tampered = self.undo_forbidden(workspace_repo, staged)
        changed_plan, links = protected.put_back(workspace_repo.root, self.plan_rel, plan_bytes, PLAN_LIMIT)
        tampered += [f"{words}; the plan put back" for words in links]
        if changed_plan:
            restored.insert(0, self.plan_rel)
        return restored, tampered

    def undo_forbidden(self, workspace_repo: GitRepo, staged: bool = False) -> tuple[list[str], list[str]]:
        """Undo what neither an agent nor a check it wrote may change: git's own files (its config,
        hooks, a worktree's `.git` file, a repository inside the tree: tampering), `protected_paths`
        and the documents whose boxes the plan's units tick,
        and pyproject.toml's settings table (see engine.protected). `staged`: a merge may have
        staged them (the run's work tree before its commit). Returns the paths restored and, in
        words, the tampering undone."""
        changed = workspace_repo.changed_paths()
        found = workspace_repo.undo_tampering(changed)
        tampered = found.here
        if found.shared and not self.parallel:
            tampered += found.shared
        elif found.shared:  # any agent at work may have done it: said, not held against this one
            at_work = self.at_work()
            self.recorder.record(t.GitTampered(changes=found.shared, tasks=at_work))
            what = f"{', '.join(at_work)} were at work: {'; '.join(found.shared)}"
            self.recorder.notice(f"git's own files were changed while {what}", "error")
        restored: list[str] = []
        in_place = workspace_repo.root == self.repo.root
        # Not the user's own uncommitted edit (an --allow-dirty run), as long as it is intact.
        preexisting = self.preexisting if in_place else {}
        hit = [
            p
            for p in protected.matching(
                changed, [*self.settings.protected_paths, *map(glob.escape, self.documents())]
            )
            if p not in preexisting or workspace_repo.hash_file(p) != preexisting[p]
        ]
        if hit:
            if staged:
                workspace_repo.restore_head(hit)
            else:
                workspace_repo.reset_paths(hit)
            restored.extend(hit)
        if in_place:
            restored += self._undo_ignored_settings(changed)
        if not protected.matching([PYPROJECT], self.settings.protected_paths):
            restored += self._undo_settings_table(workspace_repo, changed, staged)
        return restored, tampered

    def _undo_ignored_settings(self, changed: list[str]) -> list[str]:
        """orchestrate.toml is read from the work tree: one that git ignores (the agent's own
        .gitignore) shows in no status, is never committed, and yet the next run or resume would
        read it. Put back as the run found it."""
        if (
            CONFIG_FILE in changed
            or protected.settings_bytes(self.repo.root, CONFIG_FILE) == (self.settings_at_start[CONFIG_FILE])
        ):
            return []
        protected.put_back(self.repo.root, CONFIG_FILE, self.settings_at_start[CONFIG_FILE], SETTINGS_LIMIT)
        return [CONFIG_FILE]

    def _undo_settings_table(self, workspace_repo: GitRepo, changed: list[str], staged: bool) -> list[str]:
        """pyproject.toml's [tool.orchestrate] as it was: in the run's work tree, as the run found
        it (read before it began, so an uncommitted edit of the user's is the reference, and one
        git ignores is seen); in a worktree, as its commit has it. Alone, byte for byte, where that
        can be done; else the whole file's change."""
        root = workspace_repo.root
        if root == self.repo.root:
            before = self.settings_at_start[PYPROJECT]
        elif PYPROJECT in changed:
            before = workspace_repo.head_bytes(PYPROJECT)
        else:
            return []
        now = protected.settings_bytes(root, PYPROJECT)
        if not protected.table_changed(before, now):
            return []
        fixed = protected.with_table_of(before, now) if now is not None else None
        if fixed is not None and protected.is_regular_file(root / PYPROJECT):
            protected.put_back(root, PYPROJECT, fixed if fixed.strip() or before else None, SETTINGS_LIMIT)
            return [f"{PYPROJECT} {protected.TABLE_NAME}"]
        if PYPROJECT in changed:
            if staged:
                workspace_repo.restore_head([PYPROJECT])
            else:
                workspace_repo.reset_paths([PYPROJECT])
        else:  # ignored by git: as the run found it
            protected.put_back(root, PYPROJECT, before, SETTINGS_LIMIT)
        return [f"{PYPROJECT} (the whole file: its {protected.TABLE_NAME} could not be put back alone)"]

    def reason(self, task: Task, attempt: int, restored: list[str], tampered: list[str], who: str) -> str:
        """Journal and say what `who` ("the agent", "its checks") changed that it may not; the
        reason its attempt failed, or "" when nothing was."""
        reasons: list[str] = []
        if tampered:
            # Nothing of it ran (orchestrate's git names its own git dir and turns such programs
            # off), but an agent that tries is not trusted with this attempt.
            what = "; ".join(tampered)
            self.recorder.record(t.GitTampered(task=task.id, attempt=attempt, changes=tampered))
            self.recorder.notice(
                f"{who} tampered with git's own files: {what}", level="error", task_id=task.id
            )
            reasons.append(f"tampering with git's own files ({what}); none of it was run")
        if restored:
            self.recorder.record(t.ProtectedRestored(task=task.id, attempt=attempt, paths=restored))
            self.recorder.notice(
                f"{who} changed {', '.join(restored)}; undone", level="warning", task_id=task.id
            )
            may = "it" if who == "the agent" else "they"
            reasons.append(f"{who} changed paths {may} may not change ({', '.join(restored)}); undone")
        return "; ".join(reasons) + ", and the attempt failed" if reasons else ""
