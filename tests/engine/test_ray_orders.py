"""What `--executor ray` sends to a cluster, without a cluster: the job's runtime environment
carries the agent's key and nothing else of the user's secrets; `task_resources` become the Ray
task's options."""

from __future__ import annotations

import pytest

from orchestrator.config import Settings
from orchestrator.engine.ray_cluster import options_for, runtime_env
from orchestrator.tools import environment


def test_the_runtime_environment_holds_the_agents_key_and_no_other_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("MY_TOKEN", "passed-on-purpose")
    monkeypatch.setattr(environment, "_held", {})
    environment.hold_secrets()  # as the CLI does first: out of os.environ, still readable by us

    sent = runtime_env(Settings(executor="ray", pass_env=["MY_TOKEN"]))

    assert sent == {"env_vars": {"ANTHROPIC_API_KEY": "sk-ant-test-key", "MY_TOKEN": "passed-on-purpose"}}


def test_task_resources_become_the_ray_tasks_options() -> None:
    assert options_for(Settings()) == {"num_cpus": 1.0, "max_retries": 0}
    asked = Settings(task_resources={"num_cpus": 2, "num_gpus": 1, "memory": 2e9, "big_box": 1})
    assert options_for(asked) == {
        "num_cpus": 2.0,
        "num_gpus": 1.0,
        "memory": 2_000_000_000,
        "resources": {"big_box": 1.0},
        "max_retries": 0,
    }
