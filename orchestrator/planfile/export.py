"""A parsed plan as JSON objects and as graph text (Mermaid, Graphviz DOT): pure functions."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.domain.plan import Check, Diagnostic, Plan, Step, Task

PARSE_SCHEMA = "parse.schema.json"
"""The JSON Schema of `plan_json`, shipped next to this module."""


def task_json(task: Task) -> dict[str, Any]:
    """One task as `orchestrate parse --json` prints it (see parse.schema.json)."""
    return {
        "id": task.id,
        "title": task.title,
        "checked": task.checked,
        "optional": task.optional,
        "phase": task.phase,
        "line": task.line,
        "depends_on": list(task.depends_on),
        "parallel": task.parallel,
        "verify": list(task.verify),
        "kind": task.kind.value,
        "state": task.state.value,
        "mark": task.mark,
        "manual": task.manual,
        "command": task.command,
        "steps": [step_json(step) for step in task.steps],
        "checks": [check_json(check) for check in task.checks],
        "uncovered": list(task.uncovered),
        "files": list(task.files),
        "sections": [{"document": e.document, "heading": e.heading, "line": e.line} for e in task.sections],
        "linked": [
            {
                "document": b.document,
                "heading": b.heading,
                "title": b.title,
                "line": b.line,
                "checked": b.state.value == "done",
            }
            for b in task.linked
        ],
    }


def step_json(step: Step) -> dict[str, Any]:
    return {
        "title": step.title,
        "kind": step.kind.value,
        "line": step.line,
        "box": step.box_offset is not None,
        "checked": step.state.value == "done",
        "optional": step.optional,
    }


def check_json(check: Check) -> dict[str, Any]:
    return {
        "command": check.command,
        "expect": check.expect.value,
        "expected": check.expected,
        "final": check.final,
        "line": check.line,
        "step": check.step,
        "note": check.note,
    }


def diagnostic_json(diagnostic: Diagnostic) -> dict[str, Any]:
    return {
        "severity": diagnostic.severity.value,
        "line": diagnostic.line,
        "message": diagnostic.message,
        "code": diagnostic.code,
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    """The object `orchestrate parse --json` prints: the keys DESIGN.md fixes, extended (never
    renamed or removed); parse.schema.json describes it."""
    return {
        "plan": {
            "path": str(plan.path),
            "title": plan.title,
            "rules": [{"title": r.title, "line": r.line} for r in plan.rules],
            "requires": list(plan.requires),
            "documents": [{"reference": d.reference, "line": d.line, "path": d.path} for d in plan.documents],
            "standards": list(plan.standards),
        },
        "phases": [{"id": phase.id, "title": phase.title, "line": phase.line} for phase in plan.phases],
        "tasks": [task_json(task) for task in plan.tasks],
        "diagnostics": [diagnostic_json(d) for d in plan.diagnostics],
    }


def graph_json(plan: Plan) -> dict[str, Any]:
    known = {task.id for task in plan.tasks}
    return {
        "nodes": [
            {
                "id": task.id,
                "title": task.title,
                "phase": task.phase,
                "line": task.line,
                "checked": task.checked,
                "optional": task.optional,
            }
            for task in plan.tasks
        ],
        "edges": [
            {"from": dep, "to": task.id} for task in plan.tasks for dep in task.depends_on if dep in known
        ],
    }


def _label(task: Task, limit: int = 60) -> str:
    title = task.title if len(task.title) <= limit else task.title[: limit - 1] + "…"
    mark = "✓ " if task.checked else ""
    return f"{mark}{task.id}: {title}"


def graph_mermaid(plan: Plan) -> str:
    """A Mermaid flowchart, one subgraph per phase; node names are generated, labels hold the ids."""
    node = {task.id: f"t{index}" for index, task in enumerate(plan.tasks)}
    lines = ["flowchart TD"]
    for number, phase in enumerate(plan.phases):
        tasks = plan.phase_tasks(phase.id)
        if not tasks:
            continue
        lines.append(f'  subgraph p{number}["{_mermaid_text(f"Phase {phase.id}: {phase.title}")}"]')
        for task in tasks:
            opening, closing = ('(["', '"])') if task.optional else ('["', '"]')
            lines.append(f"    {node[task.id]}{opening}{_mermaid_text(_label(task))}{closing}")
        lines.append("  end")
    for task in plan.tasks:
        for dep in task.depends_on:
            if dep in node:
                lines.append(f"  {node[dep]} --> {node[task.id]}")
    done = [node[task.id] for task in plan.tasks if task.checked]
    if done:
        lines.append("  classDef done fill:#d4edda,stroke:#28a745")
        lines.append(f"  class {','.join(done)} done")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("[", "#91;").replace("]", "#93;")


def graph_dot(plan: Plan) -> str:
    """Graphviz DOT, one cluster per phase."""
    lines = ["digraph plan {", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
    for number, phase in enumerate(plan.phases):
        tasks = plan.phase_tasks(phase.id)
        if not tasks:
            continue
        lines.append(f"  subgraph cluster_{number} {{")
        lines.append(f"    label={json.dumps(f'Phase {phase.id}: {phase.title}', ensure_ascii=False)};")
        for task in tasks:
            style = ', style="filled", fillcolor="#d4edda"' if task.checked else ""
            dashed = ', style="dashed"' if task.optional and not task.checked else ""
            label = json.dumps(_label(task), ensure_ascii=False)
            lines.append(f"    {json.dumps(task.id)} [label={label}{style}{dashed}];")
        lines.append("  }")
    known = {task.id for task in plan.tasks}
    for task in plan.tasks:
        for dep in task.depends_on:
            if dep in known:
                lines.append(f"  {json.dumps(dep)} -> {json.dumps(task.id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
