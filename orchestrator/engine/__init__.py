"""The execution engine: pre-flight, the run loop, each task's state machine, resume.

Public API (import from the modules, so that importing one piece does not load them all):
    engine.session.start_run(plan_path, overrides, reporter, repo=, phase=, task=, stop=) -> RunResult
    engine.session.resume_run(run_id | None, overrides, reporter, repo=, stop=) -> RunResult
    engine.dryrun.dry_run(plan_path, overrides, repo=, phase=, task=, show_prompts=) -> DryRun
    engine.history.list_runs(repo) / load_run(run_id, repo)
    engine.resume.reconcile(Recovery, plan) -> Recovered: resume's recovery, before any Runner
    engine.runner.Runner / RunContext / RunResult: the loop (take ready tasks, hand them to the
        executor, apply what comes back); engine.attempts (running -> verified) and engine.landing
        (verified -> committed, the failure cascade) are its steps; engine.recorder journals,
        folds and reports each transition; engine.stop.StopToken is how a run is asked to stop
    engine.scheduler.Scheduler and engine.executor.Executor / InlineExecutor: the seam for parallel work
"""
