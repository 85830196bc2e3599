"""Task attempts on a Ray cluster (`--executor ray`), with git the only state shared with a node.

    this machine (the driver)                                a Ray node
    start(task)  the run's head as a git bundle ─ object store ─> a clone of its own, in a
                 (one per head), and the order                   temporary directory; the task's
                 (task, plan, settings, state)                   attempts there (engine.attempts:
                                                                 agent, checks, fail-first, review)
    wait()       each transition journaled, in order <─ relay ── every transition as recorded
                 the work fetched onto the task's    <─ result ─ its work as one commit on the
                 branch (RemoteResult), then landed as           head, in a bundle, and how the
                 a worktree's is (merged onto the run's          attempts ended
                 head, verified again if it moved, ticked and committed here)

Durability stays here: the journal and the repository are the driver's alone. A node's
transitions reach the journal through the relay (one actor on the driver's node) before the
attempt's result is taken; nothing a node does touches this repository until its bundle is
fetched. A node or worker lost mid-attempt is an interrupted attempt (journaled so), run again on
another node, up to max_attempts such losses. A killed driver takes its Ray tasks with it (they
belong to its job): `orchestrate resume` finds them in flight without a result and runs them again
(edits a stopped node sent back are kept in a ref).

The relay also holds what the cluster shares: what the run has spent (every node's model calls
count against --max-cost), the stop flag (a first Ctrl-C reaches every node's next step), and the
run's one token bucket of API requests (requests_per_minute; a 429's retry-after on one node holds
every node off).
Secrets reach a node only through the job's runtime environment (see runtime_env): never in an
order, a bundle or a relay record.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.agents.base import Agent, AgentConfigError, AgentUnavailable
from orchestrator.agents.rate import BucketGate, ClockedBucket
from orchestrator.config import Settings
from orchestrator.domain import transitions as t
from orchestrator.domain.events import Event, Notice, TaskRetrying
from orchestrator.domain.plan import Plan, Task
from orchestrator.domain.rate import Reservation
from orchestrator.domain.state import RunState
from orchestrator.engine.executor import InlineExecutor, Merge, TaskResult, Work
from orchestrator.engine.prompts import RendererParts
from orchestrator.engine.recorder import Level, Recorder
from orchestrator.engine.stop import StopToken
from orchestrator.engine.worktrees import merge_onto_head, paths_both_changed, task_branch
from orchestrator.errors import OrchestrateError, PreflightError
from orchestrator.persistence.bundles import clone_from_bundle, fetch_bundle, write_bundle
from orchestrator.persistence.journal import Journal
from orchestrator.persistence.repo import GitError, GitRepo
from orchestrator.tools.environment import hold_secrets, restore_held, secret

INSTALL_HINT = "install it with `pip install 'orchestrate[ray]'`"

AGENT_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "CODEX_API_KEY",
)
"""What the agent backends read from the environment: a node's agent needs the same. Nothing else
of the user's environment goes to the cluster (a user's cloud keys stay here), but the variables
named in `agent_env` and `pass_env`."""

_RESOURCE_OPTIONS = ("num_cpus", "num_gpus", "memory")
_POLL = 0.25
"""Seconds between looks at the relay while tasks are in flight."""


def import_ray() -> Any:
    """The ray module, or a PreflightError saying how to install it."""
    # Ray's own settings look secret by name (RAY_AUTH_MODE, RAY_AUTH_TOKEN): the CLI held them
    # with the rest, and Ray reads them from the environment when it is imported, to join a cluster
    # that asks for its token (`ray start --head` makes one that does).
    restore_held("RAY_")
    # Ray's client (ray://) talks gRPC, whose fork handlers run in every child git or a check is
    # forked into and broke them ("epoll_wait error: Bad file descriptor", git exiting 128): no
    # process of ours forks to run gRPC, so they are not wanted.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    try:
        import ray
    except ImportError:
        raise PreflightError(f"--executor ray needs Ray, which is not installed; {INSTALL_HINT}") from None
    return ray


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Pre-flight: the cluster at `address` answers on its port (Ray itself would retry for minutes,
    printing as it goes). None (a Ray started here) and `auto` (this node's) are not probed."""
    if not address or address == "auto":
        return
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise PreflightError(
            f"--ray-address {address!r} is not host:port (a cluster's GCS, e.g. head:6379) or "
            "ray://host:port (its Ray Client server, e.g. ray://head:10001)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise PreflightError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}; is it up, and is the "
            "address its head's?"
        ) from None


def runtime_env(settings: Settings) -> dict[str, Any]:
    """The job's runtime environment: how secrets reach a node, and the only way. A cluster
    operator can read it (the job's record in Ray's GCS and dashboard); the README says so."""
    names = [*AGENT_VARIABLES, *settings.agent_env, *settings.pass_env]
    values = {name: secret(name) for name in dict.fromkeys(names)}
    return {"env_vars": {name: value for name, value in values.items() if value is not None}}


def options_for(settings: Settings) -> dict[str, Any]:
    """The Ray task options of one attempt from `task_resources` (1 CPU unless it says)."""
    asked = dict(settings.task_resources)
    options: dict[str, Any] = {"num_cpus": asked.pop("num_cpus", 1.0), "max_retries": 0}
    for name in _RESOURCE_OPTIONS[1:]:
        if name in asked:
            options[name] = int(asked.pop(name)) if name == "memory" else asked.pop(name)
    if asked:
        options["resources"] = asked
    return options


def portable_agent(agent: Agent | None) -> Agent | None:
    """The driver's agent when it can go to a node as it is: one that holds no secret and no
    connection (scripted: its script; command: its command line). Else None: the node builds its
    own from the settings, its key from the job's runtime environment."""
    return agent if agent is not None and agent.name in PORTABLE_AGENTS else None


PORTABLE_AGENTS = ("scripted", "command")


# -- what goes to a node and what comes back ---------------------------------------------------


@dataclass
class AttemptOrder:
    """Everything a node needs to run a task's attempts (it pickles: no handle, no secret)."""

    run_id: str
    task: Task
    plan: Plan
    plan_rel: str
    settings: Settings
    state: RunState
    """The run's state when the task was handed out: the task's attempts so far, its dependencies'."""
    base: str
    """The run's head the node's clone is checked out at."""
    renderer: RendererParts
    settings_at_start: dict[str, bytes | None]
    agent: Agent | None
    """The driver's agent when it holds no secret and no handle (scripted, command); else None and
    the node builds its own from the settings, with the key from its environment."""
    relay: Any
    """The relay actor's handle."""


@dataclass
class NodeReport:
    """How a task's attempts on a node ended, with its work as a bundle."""

    node: str
    result: TaskResult
    """As the node's Attempts returned it (its workspace the node's, gone by now)."""
    commit: str | None = None
    """The node's commit of the work on `base` (None when it changed nothing)."""
    bundle: bytes = b""
    seconds: dict[str, float] = field(default_factory=dict)
    """What the node spent on cloning and bundling (RayTimings)."""
    stopped_by: BaseException | None = None
    """What ended the attempts and must end the run too (a budget reached, the API unavailable,
    the backend unusable): raised again on the driver once the work is kept."""


class Relay:
    """The driver's mailbox on the cluster (an actor on the driver's node): each node's records in
    the order they were sent, what the whole run has spent, and whether the run is stopping."""

    def __init__(self, spent: float, per_minute: float | None) -> None:
        self._records: list[tuple[str, str, dict[str, Any], bool]] = []
        self._spent = spent
        self._stopping = False
        self._bucket = ClockedBucket(per_minute)
        """The run's one request budget (requests_per_minute, 429 hold-offs), on this actor's clock."""

    def put(
        self, task_id: str, kind: str, record: dict[str, Any], durable: bool, cost: float
    ) -> tuple[float, bool]:
        self._records.append((task_id, kind, record, durable))
        self._spent += cost
        return self._spent, self._stopping

    def take(self) -> list[tuple[str, str, dict[str, Any], bool]]:
        records, self._records = self._records, []
        return records

    def status(self) -> tuple[float, bool]:
        return self._spent, self._stopping

    def stop(self) -> None:
        self._stopping = True

    def take_turn(self) -> Reservation:
        return self._bucket.take()

    def remaining(self, turn: Reservation) -> float:
        return self._bucket.remaining(turn)

    def hold_off(self, seconds: float) -> None:
        self._bucket.hold_off(seconds)


class RelayBucket:
    """The relay's bucket as a node asks it (agents.rate.SharedBucket): a BucketGate over it is the
    run's rate gate on that node, every wait reckoned on the relay's one clock."""

    def __init__(self, relay: Any):
        self.relay = relay

    def take(self) -> Reservation:
        import ray

        turn: Reservation = ray.get(self.relay.take_turn.remote())
        return turn

    def remaining(self, turn: Reservation) -> float:
        import ray

        return float(ray.get(self.relay.remaining.remote(turn)))

    def hold_off(self, seconds: float) -> None:
        import ray

        ray.get(self.relay.hold_off.remote(seconds))


# -- the node's side -----------------------------------------------------------------------------


def node_name() -> str:
    """The node this runs on, as `show` and the display name it: Ray's node id (short) and address."""
    import ray

    node = ray.get_runtime_context().get_node_id()[:8]
    address: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call,unused-ignore]
    return f"{node} ({address})"


class NodeRecorder(Recorder):
    """A node's recorder: each transition folded into its copy of the run's state and sent to the
    relay, whose answer says what the run has spent and whether it is stopping."""

    def __init__(self, state: RunState, relay: Any, task_id: str, node: str):
        self.state = state
        self.lock = threading.RLock()
        self.reporting = True
        self.relay = relay
        self.task_id = task_id
        self.node = node
        self.spent_total = state.usage.cost_usd
        self.stopping = False
        self._asked = -math.inf  # the first look asks: other nodes may have spent since the order

    def record(self, transition: t.Transition, *, durable: bool = True) -> None:
        with self.lock:
            if isinstance(transition, t.TaskRunning):
                transition = transition.model_copy(update={"node": self.node})
            before = self.state.usage.cost_usd
            self.state.apply(transition)
            self._send("transition", t.to_record(transition), durable, self.state.usage.cost_usd - before)

    def emit(self, event: Event) -> None:
        if isinstance(event, Notice | TaskRetrying):
            self._send("event", {"kind": type(event).__name__, **event.model_dump(mode="json")}, False, 0.0)

    def artifact(self, relative: str, text: str) -> Path:
        self._send("artifact", {"name": relative, "text": text}, False, 0.0)
        return Path(relative)

    def _send(self, kind: str, record: dict[str, Any], durable: bool, cost: float) -> None:
        import ray

        self.spent_total, self.stopping = ray.get(
            self.relay.put.remote(self.task_id, kind, record, durable, cost)
        )
        self._asked = time.monotonic()

    def spent(self) -> float:
        """What the whole run has spent, as the relay last said (asked again after a second)."""
        self.refresh()
        return self.spent_total

    def refresh(self) -> None:
        """Ask the relay again when its last answer is more than a second old."""
        import ray

        if time.monotonic() - self._asked > 1.0:
            self.spent_total, self.stopping = ray.get(self.relay.status.remote())
            self._asked = time.monotonic()


class NodeArtifacts:
    """The run's journal as a node writes to it: an attempt's prompt goes to the driver's."""

    def __init__(self, recorder: NodeRecorder):
        self.recorder = recorder

    def write_artifact(self, relative: str, text: str) -> Path:
        return self.recorder.artifact(relative, text)


class NodeStop(StopToken):
    """The run's stop as a node sees it: the relay's flag (a stop on the driver, the run ending)."""

    def __init__(self, recorder: NodeRecorder):
        super().__init__()
        self.recorder = recorder

    @property
    def stopping(self) -> bool:
        self.recorder.refresh()
        return self.recorder.stopping or self.requested or self.halted


def run_on_node(order: AttemptOrder, head_bundle: bytes) -> NodeReport:
    """The Ray task: the order's task's attempts in a clone of the run's head of this node's own,
    and its work sent back as a bundle. The directory goes, however it ends."""
    from orchestrator.engine.attempts import Attempts, BudgetExceeded
    from orchestrator.engine.fail_first import FailFirst
    from orchestrator.engine.guard import Guard
    from orchestrator.engine.prompts import PromptRenderer
    from orchestrator.engine.session import build_agent, run_sandbox

    hold_secrets()  # as on the driver: out of os.environ, so no git or check process inherits them
    node = node_name()
    task = order.task
    scratch = Path(tempfile.mkdtemp(prefix=f"orchestrate-{order.run_id}-"))
    try:
        began = time.perf_counter()
        (scratch / "head.bundle").write_bytes(head_bundle)
        repo = clone_from_bundle(scratch / "head.bundle", scratch / "work", order.base)
        cloned = time.perf_counter() - began
        settings = order.settings
        recorder = NodeRecorder(order.state, order.relay, task.id, node)
        try:
            sandbox = run_sandbox(settings, scratch / "state")
            agent = order.agent or build_agent(settings, order.plan, sandbox)
        except OrchestrateError as exc:
            # This node cannot run it as asked (no bubblewrap where it is required, no key): the
            # run stops, saying so, and resumes once the node is put right.
            return NodeReport(node, TaskResult(task=task, workspace=repo.root, stopped=True), stopped_by=exc)
        if sandbox.warning:
            recorder.notice(f"on Ray node {node}: {sandbox.warning}", "warning", task.id)
        stop = NodeStop(recorder)

        def passed_env() -> dict[str, str]:
            values = {name: secret(name) for name in settings.pass_env}
            return {name: value for name, value in values.items() if value is not None}

        attempts = Attempts(
            repo=repo,
            plan_rel=order.plan_rel,
            settings=settings,
            agent=agent,
            renderer=PromptRenderer.from_parts(order.renderer, repo.root),
            recorder=recorder,
            journal=NodeArtifacts(recorder),
            executor=InlineExecutor(repo),
            guard=Guard(
                repo,
                order.plan_rel,
                settings,
                {},
                recorder,
                parallel=True,
                at_work=lambda: [task.id],
                settings_at_start=order.settings_at_start,
                documents=lambda: order.plan.linked_documents,
            ),
            sandbox=sandbox,
            env=passed_env,
            plan=lambda: order.plan,
            stop=stop,
            fail_first=FailFirst(
                settings=settings,
                recorder=recorder,
                sandbox=sandbox,
                env=passed_env,
                scratch_root=scratch / "fail-first",
                stop=stop,
            ),
            spent=recorder.spent,
            rate_gate=BucketGate(RelayBucket(order.relay)),
        )
        try:
            result = attempts.run(task, repo.root)
        except (BudgetExceeded, AgentUnavailable, AgentConfigError) as exc:
            # The run stops; what the attempt did so far goes back to be kept.
            result = TaskResult(task=task, workspace=repo.root, stopped=True)
            stopped_by: BaseException | None = exc
        else:
            stopped_by = None
        report = NodeReport(node, result, stopped_by=stopped_by, seconds={"clone": cloned})
        began = time.perf_counter()
        # The work as verified, else as the attempts left it (kept in a ref by the driver).
        tree = result.tree or repo.snapshot_tree()
        if tree != repo.head_tree():
            message = f"orchestrate: work of task {task.id} (run {order.run_id}) on node {node}"
            report.commit = repo.commit_tree(tree, order.base, message)
            write_bundle(repo, scratch / "work.bundle", report.commit, order.base)
            report.bundle = (scratch / "work.bundle").read_bytes()
            report.seconds["result_bundle"] = time.perf_counter() - began
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- the driver's side ---------------------------------------------------------------------------


@dataclass
class RayTimings:
    """Seconds spent per task on what running it on a node costs beyond its work (benchmarks)."""

    head_bundle: list[float] = field(default_factory=list)
    """Writing the run's head as a bundle and putting it in the object store (once per head)."""
    clone: list[float] = field(default_factory=list)
    """A node's clone of the head bundle."""
    result_bundle: list[float] = field(default_factory=list)
    """A node's commit of the work and its bundle."""
    fetch: list[float] = field(default_factory=list)
    """Fetching a result's bundle onto the task's branch here."""
    merge: list[float] = field(default_factory=list)
    """Bringing the result into the run's work tree (before the landing's checks, tick, commit)."""


@dataclass
class _Flight:
    task: Task
    base: str
    lost: int = 0
    """Attempts of this task lost with their node or worker so far."""


@dataclass
class RayExecutor:
    """The Executor protocol (engine.executor) on a Ray cluster; see the module's docstring."""

    repo: GitRepo
    settings: Settings
    run_id: str
    recorder: Recorder
    journal: Journal
    order_for: Callable[[Task, str, Any], AttemptOrder]
    """The order for a task started from a head, with the relay's handle (built by the runner)."""
    slots: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)
    """The run's work tree and branch: merges, ticks, commits."""
    _ray: Any = None
    _started_ray: bool = False
    _relay: Any = None
    _remote: Any = None
    _head: tuple[str, Any] | None = None
    _flights: dict[Any, _Flight] = field(default_factory=dict)
    _adopted: dict[str, tuple[str, str]] = field(default_factory=dict)
    _closing: bool = False
    timings: RayTimings = field(default_factory=RayTimings)
    _ready: list[TaskResult] = field(default_factory=list)
    """Adopted results, for the next wait()."""
    stop_token: StopToken | None = None
    """The run's stop: once it is stopping, so is every node (through the relay)."""
    _stop_sent: bool = False

    @classmethod
    def connect(
        cls,
        repo: GitRepo,
        settings: Settings,
        run_id: str,
        recorder: Recorder,
        journal: Journal,
        order_for: Callable[[Task, str, Any], AttemptOrder],
    ) -> RayExecutor:
        """Join the cluster at `ray_address` (or start a Ray here), with the job's runtime
        environment, and put the relay on this machine's node."""
        ray = import_ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        started = not ray.is_initialized()
        if started:
            if not settings.ray_address:
                # Ray's runtime-env agent logs every job's runtime environment, the key in it, at
                # info level on every node: the Ray started here logs warnings and worse only.
                os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")
            try:
                ray.init(
                    address=settings.ray_address,
                    runtime_env=runtime_env(settings),
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                    include_dashboard=False,
                    configure_logging=True,
                )
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
                where = settings.ray_address or "this machine"
                raise PreflightError(f"cannot start or reach Ray at {where}: {exc}") from None
        here = ray.get_runtime_context().get_node_id()
        relay = (
            ray.remote(Relay)
            .options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
            .remote(recorder.state.usage.cost_usd, settings.requests_per_minute)
        )
        slots = settings.parallel
        if slots <= 1:
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            per_task = float(settings.task_resources.get("num_cpus", 1.0)) or 1.0
            slots = max(1, int(cpus // per_task))
        executor = cls(repo, settings, run_id, recorder, journal, order_for, slots=slots)
        executor._ray, executor._started_ray, executor._relay = ray, started, relay
        executor._remote = ray.remote(run_on_node).options(**options_for(settings))
        return executor

    # -- the protocol ----------------------------------------------------------------------

    def adopt(self, task_id: str, branch: str, base: str) -> None:
        """Resume: the task's verified result, which a node sent back before the run was killed,
        is on `branch` (made on `base`): it lands without running again."""
        self._adopted[task_id] = (branch, base)

    def start(self, task: Task, work: Work) -> None:
        adopted = self._adopted.pop(task.id, None)
        if adopted is not None:
            branch, base = adopted
            result = work(self.repo.root)  # resume's 'commit' point: verified already, nothing runs
            result.extra.update(base=base, head=self.repo.rev(f"refs/heads/{branch}") or base, branch=branch)
            self._ready.append(result)
            return
        # The attempts run on a node, from the order (see run_on_node): `work` is this machine's.
        self._submit(_Flight(task, ""))

    def _submit(self, flight: _Flight) -> None:
        with self.lock:
            base = self.repo.head_now()
            assert base is not None  # pre-flight refuses a repository without commits
            flight.base = base
            bundle = self._head_bundle(base)
        order = self.order_for(flight.task, base, self._relay)
        self._flights[self._remote.remote(order, bundle)] = flight

    def _head_bundle(self, base: str) -> Any:
        """The run's head as a bundle in the object store: one per head, shared by every task
        started from it."""
        if self._head is None or self._head[0] != base:
            began = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="orchestrate-bundle-") as tmp:
                path = Path(tmp) / "head.bundle"
                write_bundle(self.repo, path, base)
                self._head = (base, self._ray.put(path.read_bytes()))
            self.timings.head_bundle.append(time.perf_counter() - began)
        return self._head[1]

    def free(self) -> int:
        return self.slots - len(self._flights) - len(self._ready)

    def wait(self, block: bool = True) -> list[TaskResult]:
        if self._ready:
            ready, self._ready = self._ready, []
            return ready
        while True:
            self._pump()
            if not self._flights:
                return []
            flights = list(self._flights)
            # The first result as soon as it is there (within _POLL, to look at the relay again),
            # then whatever else is ready by then.
            ready, _ = self._ray.wait(flights, num_returns=1, timeout=_POLL if block else 0)
            if ready:
                ready, _ = self._ray.wait(flights, num_returns=len(flights), timeout=0)
            results = [result for ref in ready if (result := self._collect(ref)) is not None]
            if results or not block:
                return results

    def checks_passed(self, task_id: str) -> None:
        del task_id  # its slot frees when the node returns

    def integrate(self, result: TaskResult) -> Merge:
        began = time.perf_counter()
        merge = merge_onto_head(self.repo, self.lock, result.extra["base"], result.extra.get("head"))
        self.timings.merge.append(time.perf_counter() - began)
        return merge

    def overlap(self, result: TaskResult) -> list[str]:
        return paths_both_changed(self.repo, self.lock, result.extra["base"], result.extra.get("head"))

    def release(self, result: TaskResult) -> None:
        branch = result.extra.get("branch")
        if branch:
            self.repo.delete_branch(branch)

    def discard(self, result: TaskResult, keep_ref: str, message: str) -> str | None:
        del message  # the node's commit says whose work it is
        head, branch = result.extra.get("head"), result.extra.get("branch")
        if branch:
            self.repo.delete_branch(branch)
        if not head or head == result.extra.get("base"):
            return None
        self.repo.update_ref(keep_ref, head)
        return keep_ref

    def close(self, wait: bool = True) -> None:
        """No more tasks. Those still in flight (the run ends on an error) are told to stop after
        their step and, unless aborting, waited for: their edits are kept in refs (resume runs
        them again). A Ray this run started goes with it."""
        ray = self._ray
        if ray is None:
            return
        try:
            if self._flights:
                ray.get(self._relay.stop.remote())
                if wait:
                    for result in self._drain():
                        if not (result.passed and result.extra.get("branch")):
                            self._keep_edits(result)
                        # A verified result stays on its branch: resume lands it as it is.
                else:
                    for ref in self._flights:
                        ray.cancel(ref, force=True)
                self._flights.clear()
            self._pump()
        finally:
            self._ray = None
            if self._started_ray:
                ray.shutdown()

    # -- results ---------------------------------------------------------------------------

    def _drain(self) -> Iterator[TaskResult]:
        self._closing = True  # what ends their attempts now ends nothing more
        while self._flights:
            yield from self.wait()

    def _keep_edits(self, result: TaskResult) -> None:
        record = self.recorder.state.task(result.task.id)
        from orchestrator.engine.landing import ref_name

        ref = self.discard(result, ref_name(self.run_id, result.task.id, f"attempt-{record.attempt}"), "")
        if ref is not None:
            self.recorder.record(t.EditsSaved(task=result.task.id, attempt=record.attempt, ref=ref))

    def _collect(self, ref: Any) -> TaskResult | None:
        ray = self._ray
        flight = self._flights.pop(ref)
        try:
            report: NodeReport = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            # The attempts raised on the node (a bug): as here, unless the run is ending anyway.
            self._pump()
            if self._closing:
                self._notice(f"its attempt on a Ray node ended in an error: {exc}", "error", flight.task.id)
                return None
            cause = exc.as_instanceof_cause()
            raise OrchestrateError(
                f"the attempt of {flight.task.id} on a Ray node raised {type(exc.cause).__name__}: "
                f"{exc.cause} (every node needs orchestrate installed, the same version as here: "
                f"{INSTALL_HINT})"
            ) from cause
        except ray.exceptions.RayError as exc:
            self._pump()
            return self._lost(flight, exc)
        self._pump()  # every record the node sent is in the relay before its result
        task = flight.task
        result = report.result
        result.task, result.workspace = task, self.repo.root
        result.extra = {"base": flight.base, "head": flight.base, "node": report.node}
        self.timings.clone.append(report.seconds.get("clone", 0.0))
        if "result_bundle" in report.seconds:
            self.timings.result_bundle.append(report.seconds["result_bundle"])
        if report.commit is not None:
            began = time.perf_counter()
            branch = task_branch(self.run_id, task.id)
            with tempfile.TemporaryDirectory(prefix="orchestrate-bundle-") as tmp:
                path = Path(tmp) / "work.bundle"
                path.write_bytes(report.bundle)
                fetch_bundle(self.repo, path, report.commit, f"refs/heads/{branch}")
            if result.tree is not None and self.repo.rev(f"{report.commit}^{{tree}}") != result.tree:
                raise GitError(
                    f"the work of task {task.id} from node {report.node} is not the tree it verified"
                )
            result.extra.update(head=report.commit, branch=branch)
            self.timings.fetch.append(time.perf_counter() - began)
            self.recorder.record(
                t.RemoteResult(task=task.id, node=report.node, branch=branch, base=flight.base)
            )
        if result.stopped:
            self._keep_edits(result)
        if report.stopped_by is not None and not self._closing:
            raise report.stopped_by
        return result

    def _lost(self, flight: _Flight, exc: Exception) -> TaskResult | None:
        """The node or worker running the task's attempt died: the attempt is interrupted and runs
        again elsewhere, unless such losses used up max_attempts."""
        task = flight.task
        record = self.recorder.state.task(task.id)
        if record.status.in_flight:
            self.recorder.record(t.AttemptInterrupted(task=task.id, attempt=record.attempt))
        flight.lost += 1
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if flight.lost >= self.settings.max_attempts:
            return TaskResult(
                task=task,
                workspace=self.repo.root,
                reason=f"its attempts were lost with their Ray node or worker {flight.lost} times "
                f"(last: {why})",
                attempts=record.attempt,
            )
        self._notice(
            f"its Ray node or worker was lost ({why}); running the attempt again", "warning", task.id
        )
        self._submit(flight)
        return None

    def _notice(self, message: str, level: Level, task_id: str) -> None:
        self.recorder.notice(message, level, task_id)

    def _pump(self) -> None:
        """Journal what the nodes sent since the last look, in the order they sent it."""
        if self._ray is None:
            return
        if self.stop_token is not None and self.stop_token.stopping and not self._stop_sent:
            self._stop_sent = True
            self._relay.stop.remote()  # every node's next step sees it
        for task_id, kind, record, durable in self._ray.get(self._relay.take.remote()):
            if kind == "transition":
                self.recorder.record(t.parse(record), durable=durable)
            elif kind == "artifact":
                self.journal.write_artifact(str(record["name"]), str(record["text"]))
            elif kind == "event":
                event = dict(record)
                name = event.pop("kind")
                self.recorder.emit(Notice(**event) if name == "Notice" else TaskRetrying(**event))
            del task_id
