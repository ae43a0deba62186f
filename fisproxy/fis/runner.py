"""The work that waits on the upstream, on worker threads (`fisproxy-action-N`): resolving an
experiment's targets, and running its resource actions to their end.

Threads. The engine calls `resolve`, `perform`, `undo` and `abandon` under its lock, from any of
its threads; they only submit or signal, never wait. The work runs on this pool's threads, which
answer through `RunnerEvents` (the engine takes its lock there, never while waiting on the
upstream).

At most once. A resource action records its intent (`progress("intent")`, saved before it
returns) before its first upstream call, and that its effect is done (`progress("started")`)
once `start` returned. A proxy that resumes it (a restart, a takeover) reads how far it got:
`started`, it only waits and undoes; `intent`, the proxy may have died between the call and the
record, so the action's `recover` looks at the upstream (the instances' state, the command with
this action's marker) before anything is done again, and an action that cannot tell is not
started again. An intent that cannot be saved (the store is down) is tried again until it is, or
until the action is cancelled: nothing is done upstream that a restart could not find.

Undo. However the action ends (its time up, the experiment ended early, a failure), `perform`
undoes what it did, retrying a failed undo (`resources/base.py: undo`); `undo(...)` asks for that
now. `abandon` (a shutdown, a lost lease) ends the worker without undoing: whoever resumes the
experiment undoes it.
"""

from __future__ import annotations

import concurrent.futures
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fisproxy.fis import explog
from fisproxy.fis.actions import ACTIONS, targets_of_skipped_only
from fisproxy.fis.failure import Failure
from fisproxy.fis.lifecycle import ActionEnded, ActionProgress, Resolved
from fisproxy.fis.models import Experiment, ExperimentTarget
from fisproxy.fis.ports import SaveError
from fisproxy.fis.resources import (
    ActionContext,
    RecoverableAction,
    ResolvedTarget,
    ResourceAction,
    perform,
    resolve_target,
)
from fisproxy.fis.runstate import Phase, RunState
from fisproxy.fis.targets import ROLE
from fisproxy.fis.upstream import RoleSessions

log = logging.getLogger(__name__)

INTENT_RETRY_SECONDS = 1.0


class RunnerEvents(Protocol):
    """How the runner answers the engine, on the runner's threads: `Resolved`, `ActionProgress`
    (saved before it returns, SaveError if it could not be), `ActionEnded`."""

    def worker_event(self, experiment_id: str, event: Resolved | ActionProgress | ActionEnded) -> None: ...

    def action_detail(self, experiment_id: str, details: dict[str, Any]) -> None:
        """What a resource action did or undid, for the experiment's log (`explog.action_detail`)."""


@dataclass
class _Job:
    experiment_id: str
    action: str
    role_arn: str
    phase: Phase | None
    ctx: ActionContext
    future: concurrent.futures.Future[None] | None = field(default=None, repr=False)


class ActionRunner:
    def __init__(self, events: RunnerEvents, sessions: RoleSessions, *, clock: Callable[[], float],
                 max_workers: int = 16) -> None:
        self._events = events
        self._sessions = sessions
        self._clock = clock
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers,
                                                           thread_name_prefix="fisproxy-action")
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._resolving: dict[str, concurrent.futures.Future[None]] = {}

    # ---- target resolution --------------------------------------------------------------

    def resolve(self, experiment: Experiment, region: str, rng: random.Random, *, strict: bool = False) -> None:
        """Resolve `experiment`'s targets on a worker; answered with `events.resolved`.
        `strict` (fisproxy_fail_unperformable): a target the upstream cannot list fails the
        experiment, and targets only skipped actions use are resolved too."""
        with self._lock:
            if experiment.id in self._resolving:
                return
            self._resolving[experiment.id] = self._pool.submit(self._resolve, experiment, region, rng, strict)

    def _resolve(self, experiment: Experiment, region: str, rng: random.Random, strict: bool) -> None:
        session: Any = None
        result: Mapping[str, ResolvedTarget] | Failure
        unresolved: dict[str, str] = {}
        facts: dict[str, dict[str, Any]] = {}
        skipping = not strict and (experiment.experiment_options is None
                                   or experiment.experiment_options.actions_mode != "skip-all")
        idle = targets_of_skipped_only(experiment.actions) if skipping else frozenset()
        try:
            if _needs_upstream(experiment, idle):
                session = self._sessions.session(_role(experiment), region, experiment.id)
            found: dict[str, ResolvedTarget] = {}
            for name, target in (experiment.targets or {}).items():
                if name in idle:
                    unresolved[name] = f'Target "{name}" is used only by actions fisproxy skips: not resolved.'
                    continue
                try:
                    found[name] = resolve_target(name, target, session, region, rng)
                except Failure as err:
                    if not (err.skippable and skipping):
                        raise
                    unresolved[name] = err.reason  # the upstream cannot list it: its actions skipped
            for name, action in experiment.actions.items():
                spec = ACTIONS.get(action.action_id)
                used = {key: found[t] for key, t in (action.targets or {}).items() if t in found}
                try:
                    if spec is not None and (read := spec.facts(action.parameters or {}, used, session, region)):
                        facts[name] = read
                except Failure as err:
                    raise Failure(f'Action "{name}": {err.reason}', err.code, name) from err
            result = found
        except Failure as err:
            result = err
        except Exception as err:  # a bug in a lister: the experiment's failure, not the engine's
            log.exception("experiment %s: target resolution failed", experiment.id)
            result = Failure(f"Target resolution failed in fisproxy: {err}", "InternalFailure")
        try:
            self._events.worker_event(experiment.id, Resolved(result, unresolved, facts))
        finally:
            with self._lock:
                self._resolving.pop(experiment.id, None)

    # ---- resource actions ---------------------------------------------------------------

    def perform(self, experiment: Experiment, state: RunState, name: str, *, rng: random.Random) -> None:
        """Run resource action `name` on a worker, from where `state` says it got (nothing if
        it already runs here)."""
        key = (experiment.id, name)
        action = experiment.actions[name]
        deadline = state.action_deadlines.get(name)
        ctx = ActionContext(
            experiment_id=experiment.id, action_name=name, action_id=action.action_id, clients=None,
            targets={k: state.resolved[t].target() for k, t in (action.targets or {}).items() if t in state.resolved},
            parameters=dict(action.parameters or {}), region=state.region,
            log=lambda message: self._note(ctx, message),
            deadline=None if deadline is None else time.monotonic() + max(0.0, deadline - self._clock()),
            rng=rng, state=dict(state.action_state.get(name, {})),
        )
        job = _Job(experiment.id, name, _role(experiment), state.phase(name), ctx)
        with self._lock:
            if key in self._jobs:
                return
            self._jobs[key] = job
            job.future = self._pool.submit(self._run, job)

    def _note(self, ctx: ActionContext, message: str) -> None:
        """An action's message: the proxy's log, and an `action-detail` record of the experiment."""
        log.info("experiment %s, action %s: %s", ctx.experiment_id, ctx.action_name, message)
        self._events.action_detail(ctx.experiment_id, explog.action_detail(ctx.action_name, ctx, message))

    def undo(self, experiment_id: str, name: str) -> None:
        """Undo the action now (it ends its wait, undoes, then answers `ended`)."""
        with self._lock:
            job = self._jobs.get((experiment_id, name))
        if job is not None:
            job.ctx.cancelled.set()

    def abandon(self, experiment_id: str | None = None) -> None:
        """Stop the workers of `experiment_id` (None: all) without undoing: another proxy, or
        this one after a restart, carries on from the store."""
        with self._lock:
            jobs = [j for (exp, _), j in self._jobs.items() if experiment_id in (None, exp)]
        for job in jobs:
            job.ctx.abandoned.set()
            job.ctx.cancelled.set()

    def running(self, experiment_id: str) -> set[str]:
        with self._lock:
            return {name for (exp, name) in self._jobs if exp == experiment_id}

    def wait_resolutions(self, timeout: float) -> None:
        """Wait for the target resolutions under way (a test's or a tool's single-threaded drive)."""
        with self._lock:
            pending = list(self._resolving.values())
        concurrent.futures.wait(pending, timeout)

    def close(self) -> None:
        self.abandon()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: _Job) -> None:
        ctx = job.ctx
        error: Failure | None = None
        try:
            spec = ACTIONS[ctx.action_id]
            assert spec.implementation is not None, f"{ctx.action_id} has no implementation"
            impl = spec.implementation()
            # The experiment role's clients (its credentials cached by RoleSessions).
            ctx.clients = self._sessions.session(job.role_arn, ctx.region, job.experiment_id)
            started = self._where_to_start(job, impl)
            if started is not None:
                perform(impl, ctx, started=started, on_started=lambda: self._record(job, "started"))
        except Failure as err:
            error = err
        except Exception as err:  # a bug in an action: its failure, not the engine's
            log.exception("experiment %s, action %s failed", job.experiment_id, job.action)
            error = Failure(f"{ctx.action_id} failed in fisproxy: {err}", "InternalFailure")
        finally:
            with self._lock:
                self._jobs.pop((job.experiment_id, job.action), None)
        if not ctx.abandoned.is_set():
            self._events.worker_event(job.experiment_id, ActionEnded(job.action, error))

    def _where_to_start(self, job: _Job, impl: ResourceAction) -> bool | None:
        """Whether `start` already ran (True), must run (False), or must not run at all
        (None: cancelled before its intent could be saved)."""
        ctx = job.ctx
        if job.phase == "started":
            return True
        if job.phase == "intent":
            if isinstance(impl, RecoverableAction):
                done = impl.recover(ctx)
            else:
                ctx.log(f"{ctx.action_id} may have run before this proxy resumed it; the upstream "
                        "cannot tell, so it is not run again (at most once).")
                done = True
            if done:
                self._record(job, "started")
            return done
        while not ctx.cancelled.is_set():
            try:
                self._events.worker_event(job.experiment_id, ActionProgress(job.action, "intent", dict(ctx.state)))
                return False
            except SaveError as err:
                log.warning("experiment %s, action %s: its intent could not be saved (%s); not "
                            "started yet, trying again", job.experiment_id, job.action, err)
                ctx.cancelled.wait(INTENT_RETRY_SECONDS)
        return None

    def _record(self, job: _Job, phase: Phase) -> None:
        try:
            self._events.worker_event(job.experiment_id, ActionProgress(job.action, phase, dict(job.ctx.state)))
        except SaveError as err:  # kept in memory and saved later; a restart recovers it
            log.warning("experiment %s, action %s: %s; saved later", job.experiment_id, job.action, err)


def _role(experiment: Experiment) -> str:
    # Every template has one (CreateExperimentTemplate requires roleArn); optional in the FIS shape.
    role_arn = experiment.role_arn
    assert role_arn is not None, f"experiment {experiment.id} has no role"
    return role_arn


def _needs_upstream(experiment: Experiment, idle: frozenset[str] = frozenset()) -> bool:
    """Whether resolving or running `experiment` asks the upstream: a resource action to run, or
    a target to look up (an IAM role given by ARN is not looked up; nor a target in `idle`, which
    only skipped actions use)."""
    options = experiment.experiment_options
    if (options is None or options.actions_mode != "skip-all") and any(
        (spec := ACTIONS.get(a.action_id)) is not None and spec.kind == "resource"
        for a in experiment.actions.values()
    ):
        return True
    return any(_looked_up(t) for n, t in (experiment.targets or {}).items() if n not in idle)


def _looked_up(target: ExperimentTarget) -> bool:
    return target.resource_type != ROLE or bool(target.resource_tags or target.filters)
