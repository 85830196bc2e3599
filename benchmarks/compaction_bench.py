"""Where to compact a long session: the cost of one long task under each compaction threshold.

    .venv/bin/python benchmarks/compaction_bench.py [--turns N] [--seed S]

Our real loop (agents/loop.py, its cache breakpoints from agents/anthropic.py, its compaction)
works through a long task: each turn reads one file of 2-12 KB (seeded), then it finishes. The
model behind it is simulated in process, as the API bills: a breakpoint's prefix is read from the
cache when a request (or one of the 20 blocks before it) wrote it, written otherwise (1.25x input),
read at 0.1x; 4 characters a token; claude-sonnet-4-6 prices. Compaction replaces old tool output
with a placeholder, so the request after it writes its whole conversation anew: compacting late
rewrites a large prefix once, compacting early rewrites small ones often but reads less each turn.
The table gives the dollars of the task for each threshold (tokens of a request's input).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `orchestrator` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.agents.anthropic import cache_marked
from orchestrator.agents.base import AgentEvent, AgentRequest
from orchestrator.agents.loop import LoopAgent, LoopLimits, Message, ModelReply
from orchestrator.agents.pricing import cost_usd
from orchestrator.config import ModelPrice
from orchestrator.domain.usage import Usage
from orchestrator.tools.toolset import ToolSpec

PRICE = ModelPrice(input=3.0, output=15.0)
LOOKBACK = 20
MIN_CACHEABLE = 1024
THRESHOLDS = [30_000, 45_000, 60_000, 80_000, 100_000, 140_000]


class SimulatedModel:
    """Bills each request as the API's prompt cache would (prefix hashes, 20-block lookback)."""

    model_id = "claude-sonnet-4-6"

    def __init__(self, turns: int, sizes: list[int]):
        self.turns = turns
        self.sizes = sizes
        self.calls = 0
        self.seen: set[str] = set()

    def query(
        self,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_progress: Callable[[str], None],  # noqa: ARG002 - the Model protocol's
    ) -> ModelReply:
        body = cache_marked(system, messages, tools)
        usage = self._bill(body)
        self.calls += 1
        if self.calls > self.turns:
            content = [{"type": "tool_use", "id": f"t{self.calls}", "name": "finish",
                        "input": {"status": "done", "summary": "done"}}]  # fmt: skip
        else:
            path = f"f{self.calls % len(self.sizes)}.txt"
            read = {"path": path}
            content = [{"type": "tool_use", "id": f"t{self.calls}", "name": "read_file", "input": read}]
        usage = usage.model_copy(update={"output_tokens": 60, "calls": 1})
        usage = usage.model_copy(update={"cost_usd": cost_usd(usage, PRICE)})
        return ModelReply(content, "tool_use", usage)

    def _bill(self, body: dict[str, Any]) -> Usage:
        blocks: list[tuple[int, bool]] = []  # tokens, marked
        for tool in body["tools"]:
            blocks.append((len(json.dumps(tool)) // 4, "cache_control" in tool))
        for block in body["system"]:
            blocks.append((len(json.dumps(block)) // 4, "cache_control" in block))
        for message in body["messages"]:
            for block in message["content"]:
                plain = {k: v for k, v in block.items() if k != "cache_control"}
                blocks.append((len(json.dumps(plain)) // 4 + 1, "cache_control" in block))
        # A prefix hash per block, without the cache marks: what the cache is keyed on.
        hashes: list[str] = []
        running = hashlib.sha256()
        plain_blocks = [*body["tools"], *body["system"]] + [b for m in body["messages"] for b in m["content"]]
        for block in plain_blocks:
            running.update(json.dumps({k: v for k, v in block.items() if k != "cache_control"}).encode())
            hashes.append(running.copy().hexdigest())
        sums = [0]
        for tokens, _ in blocks:
            sums.append(sums[-1] + tokens)
        total = sums[-1]
        read = 0
        for index, (_, marked) in enumerate(blocks):
            if marked:
                for start in range(index, max(-1, index - LOOKBACK - 1), -1):
                    if hashes[start] in self.seen:
                        read = max(read, sums[start + 1])
                        break
        write = 0
        for index, (_, marked) in enumerate(blocks):
            if marked and sums[index + 1] >= MIN_CACHEABLE and hashes[index] not in self.seen:
                self.seen.add(hashes[index])
                write = max(write, sums[index + 1] - read)
        return Usage(input_tokens=total - read - write, cache_creation_input_tokens=write,
                     cache_read_input_tokens=read)  # fmt: skip


def one_task(threshold: int, turns: int, sizes: list[int], workspace: Path) -> Usage:
    model = SimulatedModel(turns, sizes)

    @contextmanager
    def open_model(_: AgentRequest) -> Iterator[SimulatedModel]:
        yield model

    limits = LoopLimits(compact_at_tokens=threshold, max_tokens=8192, context_tokens=200_000)
    agent = LoopAgent("anthropic", open_model, limits)
    request = AgentRequest(
        task_id="T1", system_prompt="You are careful. " * 200, prompt="Read the files.", workspace=workspace,
        max_turns=turns + 5,
    )  # fmt: skip

    def listen(_: AgentEvent) -> None:
        return

    return agent.run(request, listen).usage


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=150)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    sizes = [rng.randint(2_000, 12_000) for _ in range(40)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        for index, size in enumerate(sizes):
            (workspace / f"f{index}.txt").write_text(("word " * (size // 5)) + "\n")
        for threshold in THRESHOLDS:
            usage = one_task(threshold, args.turns, sizes, workspace)
            inputs = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
            rows.append(
                {
                    "threshold": threshold,
                    "cost_usd": round(usage.cost_usd, 4),
                    "cache_read_share": round(usage.cache_read_input_tokens / max(1, inputs), 3),
                    "calls": usage.calls,
                }
            )
    cheapest = min(rows, key=lambda r: r["cost_usd"])
    for row in rows:
        row["vs_cheapest"] = f"{(row['cost_usd'] / cheapest['cost_usd'] - 1) * 100:+.1f}%"
        print(
            f"compact at {row['threshold']:>7,} tokens: ${row['cost_usd']:.4f}  cache-read share "
            f"{row['cache_read_share']:.3f}  {row['vs_cheapest']}"
        )
    return rows


if __name__ == "__main__":
    main()
