"""Which prompt-cache lifetime for which breakpoint: the dollars of a whole run under each choice.

    .venv/bin/python benchmarks/cache_ttl_bench.py [--tasks N] [--runs R] [--seed S]

The cache entry a request writes lives 5 minutes (or an hour, at 2x the input price to write
instead of 1.25x) from its last use. Two gaps outlast 5 minutes in a run: a tool call near our
300 s command timeout plus the model's own time (the conversation so far is then written again),
and the time between one task's last request and the next task's first (its checks, its landing,
the next task's pre-flight), which loses the run's shared prefix (tools + system, identical for
every task of a run). Choices measured:

    5m            every breakpoint 5 minutes (what we sent)
    1h prefix     the system breakpoint (tools + system) 1 hour, the others 5 minutes
    1h prefix+task the task prompt's breakpoint too
    keep-alive    5 minutes everywhere, and when 4.5 minutes pass after a request while its reply
                  and the tool call it asks for run, a 1-token request with the same body, which
                  reads (and so renews) the conversation's cache; again every 4.5 minutes
    1h prefix, keep-alive   both

Requests are made by our real breakpoint placement (agents/anthropic.cache_marked); the cache is
simulated as the API bills it (prefix hashes, a breakpoint's lookup reaching 20 blocks back, entries
renewed on each read); time is simulated: each model reply takes 5-40 s, a tool call 0.5-10 s
(85 %), 30-180 s (10 %) or 240-300 s (5 %), the gap between tasks 20-300 s (their checks).
claude-sonnet-4-6 prices ($3/$15 per million; writes 1.25x or 2x, reads 0.1x). Each row is the
median over R seeded runs of N tasks of 20-40 turns.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `orchestrator` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.agents.anthropic import cache_marked
from orchestrator.agents.loop import Message
from orchestrator.tools.toolset import ToolSpec

INPUT = 3.0 / 1_000_000
OUTPUT = 15.0 / 1_000_000
WRITE = {"5m": 1.25, "1h": 2.0}
LIFETIME = {"5m": 300.0, "1h": 3600.0}
READ = 0.1
LOOKBACK = 20
MIN_CACHEABLE = 1024
KEEP_ALIVE_EVERY = 270.0
STRATEGIES = ["5m", "1h prefix", "1h prefix+task", "keep-alive", "1h prefix, keep-alive"]


@dataclass
class Bill:
    dollars: float = 0.0
    read: int = 0
    inputs: int = 0
    prefix_hits: int = 0
    """Tasks after the first whose first request read the run's shared prefix from the cache."""


@dataclass
class Cache:
    live: dict[str, tuple[float, str]] = field(default_factory=dict)  # prefix hash -> (expiry, ttl)

    def request(self, body: dict[str, Any], now: float, bill: Bill, output_tokens: int) -> int:
        """Bill one request at `now`; the tokens it read from the cache."""
        blocks = [*body["tools"], *body["system"]] + [b for m in body["messages"] for b in m["content"]]
        sizes, ttls, hashes = [], [], []
        running = hashlib.sha256()
        for block in blocks:
            plain = {k: v for k, v in block.items() if k != "cache_control"}
            running.update(json.dumps(plain).encode())
            hashes.append(running.hexdigest())
            sizes.append(len(json.dumps(plain)) // 4 + 1)
            mark = block.get("cache_control")
            ttls.append(None if mark is None else mark.get("ttl", "5m"))
        ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
        total = ends[-1]
        read = 0
        for index, ttl in enumerate(ttls):
            if ttl is None:
                continue
            for start in range(index, max(-1, index - LOOKBACK - 1), -1):
                entry = self.live.get(hashes[start])
                if entry is not None and entry[0] > now:
                    read = max(read, ends[start])
                    self.live[hashes[start]] = (now + LIFETIME[entry[1]], entry[1])  # renewed
                    break
        written = read
        cost = 0.0
        for index, ttl in enumerate(ttls):
            if ttl is None or ends[index] < MIN_CACHEABLE:
                continue
            entry = self.live.get(hashes[index])
            if entry is not None and entry[0] > now:
                continue
            segment = max(0, ends[index] - written)
            cost += segment * INPUT * WRITE[ttl]
            written = max(written, ends[index])
            self.live[hashes[index]] = (now + LIFETIME[ttl], ttl)
        cost += (total - written) * INPUT + read * INPUT * READ + output_tokens * OUTPUT
        bill.dollars += cost
        bill.read += read
        bill.inputs += total
        return read


def _marked(strategy: str, system: str, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
    body = cache_marked(system, messages, tools)
    long_lived = {"1h prefix": 1, "1h prefix+task": 2, "1h prefix, keep-alive": 1}.get(strategy, 0)
    system_mark = {"type": "ephemeral", "ttl": "1h"} if long_lived >= 1 else {"type": "ephemeral"}
    body["system"] = [{**b, "cache_control": system_mark} for b in body["system"]]
    if long_lived >= 2:
        first = dict(body["messages"][0])
        content = list(first["content"])
        content[-1] = {**content[-1], "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        first["content"] = content
        body["messages"] = [first, *body["messages"][1:]]
    return body


def one_run(strategy: str, tasks: int, seed: int) -> Bill:
    rng = random.Random(seed)
    tools = [
        ToolSpec(name=f"tool_{n}", description="does a thing " * 30, input_schema={"type": "object"})
        for n in range(8)
    ]
    system = "You are a careful engineer working on one task of a plan. " * 120
    cache = Cache()
    bill = Bill()
    now = 0.0
    for task in range(tasks):
        messages: list[Message] = [{"role": "user", "content": f"Task {task}: " + "do the work. " * 500}]
        turns = rng.randint(20, 40)
        for turn in range(turns):
            body = _marked(strategy, system, messages, tools)
            read = cache.request(body, now, bill, output_tokens=150)
            if turn == 0 and task > 0 and read >= 2000:
                bill.prefix_hits += 1
            reply = rng.uniform(5, 40)
            roll = rng.random()
            low, high = (0.5, 10) if roll < 0.85 else (30, 180) if roll < 0.95 else (240, 300)
            gap = reply + rng.uniform(low, high)
            if "keep-alive" in strategy:
                pinged = KEEP_ALIVE_EVERY
                while pinged < gap:
                    cache.request(body, now + pinged, bill, output_tokens=1)
                    pinged += KEEP_ALIVE_EVERY
            now += gap
            call = {"type": "tool_use", "id": f"t{task}-{turn}", "name": "tool_0", "input": {"n": turn}}
            result = {
                "type": "tool_result",
                "tool_use_id": f"t{task}-{turn}",
                "content": "x " * rng.randint(600, 6000),
            }
            messages = [
                *messages,
                {"role": "assistant", "content": [call]},
                {"role": "user", "content": [result]},
            ]
        now += rng.uniform(20, 300)  # its checks, its landing, the next task's start
    return bill


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for strategy in STRATEGIES:
        bills = [one_run(strategy, args.tasks, args.seed + n) for n in range(args.runs)]
        rows.append(
            {
                "strategy": strategy,
                "run_usd": round(statistics.median(b.dollars for b in bills), 4),
                "cache_read_share": round(statistics.median(b.read / b.inputs for b in bills), 3),
                "later_tasks_reading_the_prefix": (
                    f"{statistics.median(b.prefix_hits for b in bills):.0f}/{args.tasks - 1}"
                ),
            }
        )
    base = rows[0]["run_usd"]
    for row in rows:
        row["vs_5m"] = f"{(row['run_usd'] / base - 1) * 100:+.1f}%"
        print(
            f"{row['strategy']:<15} ${row['run_usd']:.4f}  cache-read share {row['cache_read_share']:.3f}  "
            f"later tasks reading the run's prefix {row['later_tasks_reading_the_prefix']}  {row['vs_5m']}"
        )
    return rows


if __name__ == "__main__":
    main()
