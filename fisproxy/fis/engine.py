"""The experiment engine: runs FIS experiments and keeps the index of the faults in force.

Lifecycle (FIS's own): StartExperiment creates the experiment `initiating`; the next `tick`
resolves its targets once and makes it `running`; actions start when every `startAfter`
predecessor is done and end after `ActionSpec.duration` (never, for actions without one: they run
until the experiment stops). The experiment ends `completed`, `stopping` -> `stopped` (StopExperiment
or a stop condition), `failed` (bad target, unsupported action), or `cancelled` (safety lever).

Threads. The engine never runs on the proxy's event loop: `tick` runs on its own thread
(`fis/loops.py`), the control API calls in from worker threads, and both take the engine's lock.
Slow upstream calls (target resolution) happen outside the lock. The proxy only reads
`candidates(call)`: an immutable `RuleIndex` replaced whole when an action starts or stops, so
the per-request path takes no lock and touches no storage.

Durability. Every state change is saved (experiment model + `RunState`) before it is
acknowledged. A save that fails leaves the change in memory, marked unsaved, and retried at every
tick: an experiment is forgotten only once its final state is on disk. A stop ends the faults at
once, whether or not it could be saved. One heartbeat per engine (not per experiment) is written
every second; `resume()` after a restart shifts planned action ends by the downtime, so running
actions keep the time they had left.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fisproxy.aws.call import AwsCall
from fisproxy.fis import explog, ids, targets
from fisproxy.fis.actions import ACTIONS, ActionSpec, skip_reason, targets_of_skipped_only
from fisproxy.fis.decide import decide
from fisproxy.fis.faults import Fault, StopSignal
from fisproxy.fis.identities import Identities, RoleRef, role_ref
from fisproxy.fis.models import (
    Experiment,
    ExperimentActionState,
    ExperimentOptions,
    ExperimentState,
    ExperimentTemplate,
)
from fisproxy.fis.models import ResolvedTarget as ResolvedTargetInfo
from fisproxy.fis.ports import FleetStore, SaveError, StoreUnavailable
from fisproxy.fis.proxyfaults import Placement, compile_rule, lookup_facts, start_notes
from fisproxy.fis.resources import (
    ActionContext,
    ActionError,
    ResolvedTarget,
    implementation,
    perform,
    resolve_target,
)
from fisproxy.fis.resources.scoped import ShardIterators
from fisproxy.fis.rules import EMPTY, ActiveRule, CallerFilter, RuleIndex
from fisproxy.fis.runstate import ResolvedSet, RunState, StopRequest
from fisproxy.fis.stopconditions import HALTED_REASON, AlarmPoller, alarm_arns
from fisproxy.fis.upstream import RoleError, RoleSessions

log = logging.getLogger(__name__)

TERMINAL = frozenset({"completed", "stopped", "failed", "cancelled"})
ACTIVE = frozenset({"pending", "initiating", "running", "stopping"})
_ACTION_DONE = frozenset({"completed", "skipped"})
_ACTION_TERMINAL = frozenset({"completed", "skipped", "cancelled", "stopped", "failed"})

HEARTBEAT_SECONDS = 1.0
# FIS experiments are regional: AWS and LocalStack actions that name no region act in the
# experiment's region (LocalStack's documented default). fisproxy's own actions that name no
# region act in every region.
REGIONAL_ACTION_PREFIXES = ("aws:", "localstack:")
IDENTITY_DOC = "identity"
LOG_DELIVERY_DOC = "log-delivery"  # ended experiments whose logs still have to go upstream
HEARTBEAT_DOC = ("heartbeat", "engine")
STOP_REQUEST_DOC = "stop-request"  # a stop asked on a proxy that does not run the schedule
EXPERIMENT_CHANGES = "experiment"  # change-feed kinds
IDENTITY_CHANGES = "identity"
LEASE_TTL_SECONDS = 6.0  # a schedule holder that stops renewing is replaced after this

# Reasons as real FIS words them; the rest follow the same style.
INITIATING = "Experiment is initiating."
RUNNING = "Experiment is running."
COMPLETED = "Experiment completed."
STOPPING = "Stopping Experiment."
STOPPED = "Experiment stopped."
ACTION_INITIAL = "Initial state."
ACTION_COMPLETED = "Action was completed."
ACTION_STOPPED = "Action was stopped."
ACTION_CANCELLED = "Action was cancelled."
ACTION_SKIPPED = "Action was skipped."
ACTION_NO_TARGETS = "Action was skipped: no targets were resolved."


class _Failure(Exception):
    def __init__(self, reason: str, code: str, location: str, action: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.code, self.location, self.action = reason, code, location, action


@dataclass
class _Run:
    """An active experiment: the model (what the API shows) plus the engine's own state."""

    experiment: Experiment
    state: RunState
    signals: dict[str, StopSignal] = field(default_factory=dict)
    unsaved: bool = False  # the last change is only in memory: saved again at each tick
    resolution: dict[str, ResolvedTarget] | _Failure | None = None
    session: Any = None  # the experiment role's clients (RoleSession), once assumed
    # Resource actions under way: action name -> (its worker, its context).
    workers: dict[str, tuple[concurrent.futures.Future[None], ActionContext]] = field(default_factory=dict)
    # This proxy runs the experiment's schedule (holds its lease); otherwise it mirrors what
    # the holder saves and applies the faults of the running actions.
    owned: bool = False
    lease_renewed: float = 0.0
    # Seconds no proxy ran at all (found at start-up): added to the planned ends when this
    # proxy takes the schedule over, so running actions keep the time they had left.
    shift: float = 0.0
    # Found while resolving (outside the lock), recorded in `state` once it is taken in.
    unresolved: dict[str, str] = field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.experiment.id

    @property
    def status(self) -> str:
        return self.experiment.state.status

    @property
    def options(self) -> ExperimentOptions:
        # Set on every experiment (Experiment.from_template); optional in the FIS shape.
        return self.experiment.experiment_options or ExperimentOptions()

    @property
    def role_arn(self) -> str:
        # Every template has one (CreateExperimentTemplate requires roleArn); optional in the
        # FIS shape.
        role_arn = self.experiment.role_arn
        assert role_arn is not None, f"experiment {self.id} has no role"
        return role_arn


class Engine:
    def __init__(
        self,
        store: FleetStore,
        *,
        state_dir: Path,
        rng: random.Random,
        clock: Callable[[], float] = time.time,
        upstream_endpoint: str | None = None,
        account_id: str = "123456789012",
        sessions: RoleSessions | None = None,
        alarm_poller: AlarmPoller | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        placement: Placement | None = None,
        max_action_workers: int = 16,
        proxy_id: str = "fisproxy",
        lease_ttl_seconds: float = LEASE_TTL_SECONDS,
        fail_unperformable: bool = False,
    ) -> None:
        self._store = store
        # Actions fisproxy cannot perform fail the experiment instead of being skipped.
        self._fail_unperformable = fail_unperformable
        self.proxy_id = proxy_id  # the lease holder name of this proxy
        self._lease_ttl = lease_ttl_seconds
        self._rng = rng
        self._clock = clock
        self._endpoint = upstream_endpoint
        self._account = account_id
        self._loop = loop  # the proxy's event loop, where stop signals are awaited
        self._log = explog.ExperimentLog(store, state_dir)
        # Experiment roles are assumed on the upstream (AssumeRole) when an experiment needs to
        # look at or act on resources; API faults on roles given by ARN need no upstream.
        self._sessions = sessions or RoleSessions(upstream_endpoint)
        self.placement = placement or Placement()
        # Resource actions run on these threads (each blocks on the upstream).
        self._workers = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_action_workers, thread_name_prefix="fisproxy-action")
        self.shard_iterators = ShardIterators()  # Kinesis GetRecords -> stream, for scoped faults
        self.poller = alarm_poller or AlarmPoller(upstream_endpoint)
        self._lock = threading.RLock()
        self._identities = Identities()
        # Learned on the event loop, saved by the engine's thread: a deque is safe between them.
        self._unsaved_identities: deque[tuple[str, str]] = deque()
        self._runs: dict[str, _Run] = {}
        self._uploads: list[str] = []
        self._last_heartbeat = 0.0
        self._closing = False
        self._rules: dict[tuple[str, str], ActiveRule] = {}
        self._index: RuleIndex = EMPTY
        self._load_identities()

    # ---- control API (any thread) --------------------------------------------------------

    def start_experiment(
        self, template: ExperimentTemplate, *, region: str, tags: dict[str, str], actions_mode: str
    ) -> Experiment:
        with self._lock:
            now = self._clock()
            exp_id = ids.new_experiment_id()
            experiment = Experiment.from_template(
                template, experiment_id=exp_id, arn=ids.experiment_arn(region, self._account, exp_id),
                created=ids.timestamp(now), tags=tags, actions_mode=actions_mode or "run-all")  # type: ignore[arg-type]
            experiment.start_time = ids.timestamp(now)  # as FIS answers StartExperiment
            experiment.state = ExperimentState(status="initiating", reason=INITIATING)
            for action in experiment.actions.values():
                action.state = ExperimentActionState(status="pending", reason=ACTION_INITIAL)
            run = _Run(experiment, RunState(region=region), owned=True, lease_renewed=now)
            self._store.acquire_lease(_lease(exp_id), self.proxy_id, self._lease_ttl)
            self._save(run)  # not acknowledged (and not kept) unless saved
            self._runs[exp_id] = run
            return self._copy(run.experiment)

    def stop_experiment(self, experiment_id: str) -> Experiment:
        """Ask an active experiment to stop: its faults end now on this proxy; `stopping` now,
        `stopped` at the next step of whichever proxy runs its schedule (another proxy is asked
        through the store and ends it within a second). KeyError if unknown; a terminal
        experiment is returned unchanged (the API decides whether that is a conflict).
        SaveError if the stop could not be saved: the faults have ended anyway, and asking
        again retries the save."""
        with self._lock:
            run = self._runs.get(experiment_id)
            if run is None or not run.owned:
                return self._ask_owner_to_stop(experiment_id, run, StopRequest(status="stopped", reason=STOPPED))
            if run.status in ("initiating", "running"):
                self._request_stop(run, STOPPING, StopRequest(status="stopped", reason=STOPPED))
            if run.unsaved:
                self._save(run)
            return self._copy(run.experiment)

    def _ask_owner_to_stop(self, experiment_id: str, run: _Run | None, final: StopRequest) -> Experiment:
        stored = self._store.get_experiment(experiment_id)
        if stored is None:
            raise KeyError(experiment_id)
        if stored.state.status not in ("initiating", "running", "stopping"):
            return stored
        try:
            self._store.put_doc(STOP_REQUEST_DOC, experiment_id, final.model_dump())
            self._store.publish_change(EXPERIMENT_CHANGES, experiment_id)
        except Exception as e:
            raise SaveError(f"could not save the stop of experiment {experiment_id}: {e}") from e
        if run is not None:
            self._deactivate(run)  # here, at once; the schedule's holder ends it everywhere
            self._rebuild_index()
        stored.state = ExperimentState(status="stopping", reason=STOPPING)
        return stored

    def cancel_all(self, reason: str) -> None:
        """Safety lever: every active experiment ends `cancelled` at once."""
        with self._lock:
            now = self._clock()
            failed: list[str] = []
            for run in list(self._runs.values()):
                if run.status in ACTIVE and not run.owned:
                    try:
                        self._ask_owner_to_stop(run.id, run, StopRequest(status="cancelled", reason=reason))
                    except (KeyError, SaveError):
                        failed.append(run.id)
                    continue
                if run.status in ACTIVE:
                    for _, ctx in run.workers.values():
                        ctx.cancelled.set()  # undone in the background; the lever acts now
                    try:
                        self._end(run, now, "cancelled", reason)
                    except SaveError:
                        failed.append(run.id)
            self._rebuild_index()
            if failed:
                raise SaveError(f"could not save the cancellation of {', '.join(failed)}")

    def active_count(self) -> int:
        return sum(1 for run in list(self._runs.values()) if run.status in ACTIVE)

    def resolved_targets(self, experiment_id: str) -> list[ResolvedTargetInfo]:
        with self._lock:
            run = self._runs.get(experiment_id)
            if run is not None:
                state = run.state
            else:
                if self._store.get_experiment(experiment_id) is None:
                    raise KeyError(experiment_id)
                state = RunState.model_validate(self._store.get_runtime(experiment_id) or {})
        return [
            ResolvedTargetInfo.model_validate({
                "resourceType": res.resource_type, "targetName": name,
                "targetInformation": {"arn": arn}})
            for name, res in state.resolved.items() for arn in res.arns
        ]

    # ---- proxy (event loop, per request: memory only) ------------------------------------

    def candidates(self, call: AwsCall) -> tuple[ActiveRule, ...]:
        """The running actions' rules that could apply to `call`. Lock-free."""
        index = self._index
        return index.candidates(call) if index else ()

    def other_candidates(self) -> tuple[ActiveRule, ...]:
        """The running actions' rules that also apply to requests that are not AWS calls
        (network disruption of a subnet). Lock-free."""
        return self._index.other_traffic

    def match(self, call: AwsCall) -> list[Fault]:
        """The faults for one request: latency faults first, then at most one error/disconnect."""
        return list(decide(call, self.candidates(call), self._rng).faults)

    def learn_identity(self, access_key: str, principal_arn: str) -> None:
        """Remember who an access key belongs to (from an STS response). In memory at once;
        saved by the next tick, off the event loop."""
        if self._identities.learn(access_key, principal_arn):
            self._unsaved_identities.append((access_key, principal_arn))

    def _load_identities(self) -> None:
        for key, doc in self._store.list_docs(IDENTITY_DOC).items():
            arn = doc.get("principalArn")
            if arn:
                self._identities.learn(key, arn)

    # ---- lifecycle (the engine's thread) -------------------------------------------------

    def resume(self) -> None:
        """At start-up: take in the active experiments of the store. Their faults apply at once;
        the next tick claims the schedule of those no other proxy runs. If no proxy was running
        (the heartbeat is old), running actions keep the time they had left. Log deliveries
        that had not gone out yet are queued again."""
        with self._lock:
            now = self._clock()
            self._uploads.extend(
                k for k in self._store.list_docs(LOG_DELIVERY_DOC) if k not in self._uploads)
            beat = self._store.get_doc(*HEARTBEAT_DOC) or {}
            for experiment in self._store.list_experiments():
                if experiment.state.status not in ACTIVE or experiment.id in self._runs:
                    continue
                state = RunState.model_validate(self._store.get_runtime(experiment.id) or {})
                last_seen = max(float(beat.get("time", 0.0)), state.heartbeat or 0.0) or now
                downtime = max(0.0, now - last_seen)
                # Another proxy alive (a fresh heartbeat) kept the faults on: nothing to add.
                run = _Run(experiment, state, shift=downtime if downtime > 2 * HEARTBEAT_SECONDS else 0.0)
                self._runs[experiment.id] = run
                self._reconcile(run, now)
                log.info("resumed experiment %s (%s, down %.1f s)", experiment.id,
                         experiment.state.status, downtime)
            self._last_heartbeat = 0.0
            self._rebuild_index()

    def tick(self) -> None:
        """One lifecycle step at `clock()`: resolve targets of new experiments (outside the
        lock: it may call the upstream), keep or claim the schedules' leases, then move every
        experiment whose schedule this proxy runs on; the others' faults end on time here too."""
        self._resolve_pending()
        with self._lock:
            now = self._clock()
            changed = self._claim_leases(now)
            for run in list(self._runs.values()):
                if not run.owned:
                    changed |= self._reconcile(run, now)
                    continue
                try:
                    changed |= self._step(run, now)
                except SaveError as e:
                    log.error("experiment %s: %s; retrying", run.id, e)
            for exp_id in [i for i, r in self._runs.items()
                           if r.status in TERMINAL and not r.unsaved and not r.workers]:
                self._forget(self._runs[exp_id])
            if changed:
                self._rebuild_index()
            self._save_identities()
            self._heartbeat(now)

    def _step(self, run: _Run, now: float) -> bool:
        if run.unsaved:
            self._save(run)
        changed = False
        if run.status == "initiating" and run.resolution is not None:
            changed |= self._initiate(run, now)
        if run.status == "running":
            changed |= self._advance(run, now)
        if run.status == "stopping" and not run.workers:
            # (resource actions first undo what they did: stopped instances started again)
            stop = run.state.stop or StopRequest(status="stopped", reason=STOPPED)
            self._end(run, now, stop.status, stop.reason)
            changed = True
        return changed

    def _resolve_pending(self) -> None:
        with self._lock:
            waiting = [r for r in self._runs.values()
                       if r.owned and r.status == "initiating" and r.resolution is None]
            rng_seed = [self._rng.random() for _ in waiting]  # one draw each, in a stable order
        for run, seed in zip(waiting, rng_seed, strict=True):
            run.resolution = self._resolve(run, random.Random(seed))

    def _resolve(self, run: _Run, rng: random.Random) -> dict[str, ResolvedTarget] | _Failure:
        """Assume the experiment role if the experiment needs the upstream, then resolve every
        target with it. Blocking (upstream calls): outside the lock."""
        e = run.experiment
        skipping = not self._fail_unperformable and run.options.actions_mode != "skip-all"
        idle = targets_of_skipped_only(e.actions) if skipping else frozenset()
        if run.options.actions_mode != "skip-all" and any(
            ACTIONS.get(a.action_id) is not None and ACTIONS[a.action_id].kind == "resource"
            for a in e.actions.values()
        ) or any(_needs_upstream(t) for n, t in (e.targets or {}).items() if n not in idle):
            try:
                run.session = self._sessions.session(run.role_arn, run.state.region, e.id)
            except RoleError as err:
                return _Failure(err.reason, err.code, "roleArn")
        out: dict[str, ResolvedTarget] = {}
        for name, target in (e.targets or {}).items():
            if name in idle:
                run.unresolved[name] = f'Target "{name}" is used only by actions fisproxy skips: not resolved.'
                continue
            try:
                out[name] = resolve_target(name, target, run.session, run.state.region, rng)
            except targets.TargetError as err:
                if err.skippable and skipping:
                    run.unresolved[name] = err.reason
                    continue
                return _Failure(err.reason, err.code, name)
        for name, action in e.actions.items():
            used = {key: out[t] for key, t in (action.targets or {}).items() if t in out}
            try:
                facts = lookup_facts(action.action_id, action.parameters or {}, used, run.session,
                                     run.state.region)
            except ActionError as err:
                return _Failure(f'Action "{name}": {err.reason}', err.code, name, action=name)
            if facts:
                run.facts[name] = facts
        return out

    def _initiate(self, run: _Run, now: float) -> bool:
        e = run.experiment
        self._write(run, "experiment-start", now, experiment_template_id=e.experiment_template_id,
                    experiment_start_time=explog.timestamp(now))
        skip_all = run.options.actions_mode == "skip-all"
        try:
            if not skip_all:
                self._check_actions(run)
            run.state.resolved = self._record_resolution(run, now)
        except _Failure as f:
            self._fail(run, now, f)
            return True
        if skip_all:
            for name in e.actions:
                self._set_action(run, name, now, "skipped", ACTION_SKIPPED, started=False)
            self._end(run, now, "completed", COMPLETED)
            return True
        e.state = ExperimentState(status="running", reason=RUNNING)
        run.state.ends = {}
        self._save(run)
        return True

    def _check_actions(self, run: _Run) -> None:
        # Refuse what fisproxy cannot do before anything runs: never a silent success.
        e = run.experiment
        for name, action in e.actions.items():
            spec = ACTIONS.get(action.action_id)
            if spec is None:
                raise _Failure(f'Action "{name}": {action.action_id} is not a FIS action.',
                               "ConfigurationFailure", name, action=name)
            if not spec.performable and self._fail_unperformable:
                raise _Failure(f'Action "{name}": {spec.failure_reason}', "ConfigurationFailure",
                               name, action=name)
            try:
                spec.validate(action.parameters or {})
                spec.duration(action.parameters or {})
                spec.rule(action.parameters or {})
            except ValueError as err:
                raise _Failure(f'Action "{name}" ({action.action_id}): {err}',
                               "ConfigurationFailure", name, action=name) from err
            for key, target_name in (action.targets or {}).items():
                if target_name not in (e.targets or {}):
                    raise _Failure(
                        f'Action "{name}" targets "{key}": target "{target_name}" is not defined.',
                        "ConfigurationFailure", name, action=name)
            for before in action.start_after or []:
                if before not in e.actions:
                    raise _Failure(
                        f'Action "{name}" starts after "{before}", which is not an action.',
                        "ConfigurationFailure", name, action=name)

    def _record_resolution(self, run: _Run, now: float) -> dict[str, ResolvedSet]:
        """Log what the targets resolved to; _Failure for a target that failed or came out
        empty where that is not allowed."""
        e = run.experiment
        empty_mode = run.options.empty_target_resolution_mode or "fail"
        resolution = run.resolution
        resolved: dict[str, ResolvedSet] = {}
        run.state.unresolved, run.state.facts = dict(run.unresolved), dict(run.facts)
        for name, target in (e.targets or {}).items():
            self._write(run, "target-resolution-start", now, target_name=name,
                        target_resolution_start_time=explog.timestamp(now))
            detail = {"target_name": name, "target_type": target.resource_type,
                      "account_id": self._account,
                      "target_resolution_end_time": explog.timestamp(now)}
            if name in run.unresolved:  # the actions using it are skipped
                self._write(run, "target-resolution-detail", now, **detail, resolved_targets_count=0,
                            status="skipped", error_information=run.unresolved[name])
                continue
            if isinstance(resolution, _Failure):
                if resolution.location == name:
                    self._write(run, "target-resolution-detail", now, **detail, resolved_targets_count=0,
                                status="failed", error_information=resolution.reason)
                    raise resolution
                continue
            assert isinstance(resolution, dict)
            res = resolution[name]
            self._write(run, "target-resolution-detail", now, **detail,
                        resolved_targets_count=len(res.arns), status="completed")
            self._write(run, "target-resolution-end", now,
                        **{k: v for k, v in detail.items() if k != "account_id"},
                        resolved_targets=[{"arn": a} for a in res.arns], page=1, total_pages=1)
            if res.empty and (res.by_arn or empty_mode != "skip"):
                raise _Failure(f'Target "{name}" resolved to no resources.', "InvalidTarget", name)
            resolved[name] = ResolvedSet.of(res)
        if isinstance(resolution, _Failure):
            raise resolution  # not a target's failure: the role could not be assumed
        return resolved

    def _advance(self, run: _Run, now: float) -> bool:
        """Complete due actions and start ready ones until nothing changes; end when all done."""
        e = run.experiment
        ends = run.state.ends
        changed = False
        progress = True
        while progress:
            progress = False
            for name, action in e.actions.items():
                status = action.state.status
                if status == "running":
                    end = ends.get(name)
                    if end is not None and now >= end:
                        self._set_action(run, name, now, "completed", ACTION_COMPLETED)
                        progress = True
                elif status == "pending" and all(
                    e.actions[b].state.status in _ACTION_DONE for b in action.start_after or []
                ):
                    self._start_action(run, name, now)
                    progress = True
            changed |= progress
        if all(a.state.status in _ACTION_DONE for a in e.actions.values()):
            self._end(run, now, "completed", COMPLETED)
            return True
        if changed:
            self._save(run)
        return changed

    def _start_action(self, run: _Run, name: str, now: float) -> None:
        e = run.experiment
        action = e.actions[name]
        skipped = skip_reason(action.action_id, action.targets, run.state.unresolved)
        if skipped is not None:  # what fisproxy (or the upstream) cannot do; the rest runs on
            log.info("experiment %s, action %s: %s", run.id, name, skipped)
            self._set_action(run, name, now, "skipped", skipped, started=False)
            return
        resolved = run.state.resolved
        used = list((action.targets or {}).values())
        if used and any(resolved.get(t) is None or resolved[t].empty for t in used):
            self._set_action(run, name, now, "skipped", ACTION_NO_TARGETS, started=False)
            return
        spec = ACTIONS[action.action_id]
        params = action.parameters or {}
        notes = start_notes(action.action_id, params)
        for note in notes:
            log.info("experiment %s, action %s: %s", run.id, name, note)
        duration = spec.duration(params)
        planned_end = None if duration is None else now + duration.total_seconds()
        action.state = ExperimentActionState(status="running", reason="")
        action.start_time = ids.timestamp(now)
        run.signals[name] = self._signal()
        ignored = spec.ignored_parameters(params)
        self._write(run, "action-start", now, action_name=name, action_id=action.action_id,
                    action_start_time=explog.timestamp(now), action_targets=dict(action.targets or {}),
                    parameters=dict(params) or None,
                    ignored_parameters=list(ignored) or None, notes=list(notes) or None)
        if spec.kind == "resource":
            # Its worker ends it (the effect done, or its time up): not the engine's clock.
            run.state.ends[name] = None
            run.state.action_deadlines[name] = planned_end
            self._perform(run, name, spec, resumed=False)
            return
        run.state.ends[name] = planned_end
        self._activate(run, name)

    def _activate(self, run: _Run, name: str) -> None:
        """Put a running action's rule into the index (rebuilt by the caller)."""
        action = run.experiment.actions[name]
        spec = ACTIONS[action.action_id]
        if spec.kind == "proxy-fault":
            resolved = {key: run.state.resolved[t].target() for key, t in (action.targets or {}).items()
                        if t in run.state.resolved}
            rule = compile_rule(action.action_id, action.parameters or {}, resolved,
                                region=run.state.region, placement=self.placement,
                                iterators=self.shard_iterators, facts=run.state.facts.get(name, {}))
        else:
            rule = spec.rule(action.parameters or {})
        if rule is None or not self.placement.in_zones(rule.zones):
            return  # (a fault for another Availability Zone's proxies)
        if rule.region is None and rule.regional and action.action_id.startswith(REGIONAL_ACTION_PREFIXES):
            rule = dataclasses.replace(rule, region=run.state.region)
        roles: set[RoleRef] = set()
        keys: set[str] = set()
        role_targeted = False
        for target_name in (action.targets or {}).values():
            res = run.state.resolved.get(target_name)
            if res is None or res.resource_type != targets.ROLE:
                continue
            role_targeted = True
            keys.update(res.access_keys)
            roles.update(r for r in map(role_ref, res.arns) if r is not None)
        callers = CallerFilter(frozenset(roles), frozenset(keys), self._identities) if role_targeted else None
        self._rules[(run.id, name)] = ActiveRule(run.id, name, rule, run.signals[name], callers)

    def _set_action(self, run: _Run, name: str, now: float, status: str, reason: str,
                    *, started: bool = True) -> None:
        action = run.experiment.actions[name]
        action.state = ExperimentActionState(status=status, reason=reason)  # type: ignore[arg-type]
        if started or action.start_time is not None:
            action.end_time = ids.timestamp(now)
        run.state.ends.pop(name, None)
        run.state.action_state.pop(name, None)
        run.state.action_deadlines.pop(name, None)
        self._rules.pop((run.id, name), None)
        signal = run.signals.pop(name, None)
        if signal is not None:
            signal.set()
        if status == "failed":
            self._write(run, "action-error", now, action_name=name, action_id=action.action_id,
                        account_id=self._account,
                        action_state={"status": status, "reason": reason})
        self._write(run, "action-end", now, action_name=name, action_id=action.action_id,
                    action_end_time=explog.timestamp(now),
                    action_state={"status": status, "reason": reason})

    def _request_stop(self, run: _Run, reason: str, final: StopRequest) -> None:
        """The faults end now (index rebuilt, waits cut short); the model shows `stopping`
        (actions still as they were) until the next tick ends it. Then saved (may raise)."""
        run.experiment.state = ExperimentState(status="stopping", reason=reason)
        run.state.stop = final
        for _, ctx in run.workers.values():
            ctx.cancelled.set()  # resource actions undo what they did, then end
        for name in list(run.signals):
            self._rules.pop((run.id, name), None)
            run.signals[name].set()
        self._rebuild_index()
        self._save(run)

    def _end(self, run: _Run, now: float, status: str, reason: str,
             error: dict[str, str] | None = None) -> None:
        """Terminal state: running actions stopped, pending ones cancelled, logs, saved."""
        e = run.experiment
        for name, action in e.actions.items():
            if action.state.status == "running":
                self._set_action(run, name, now, "stopped", ACTION_STOPPED)
            elif action.state.status not in _ACTION_TERMINAL:
                self._set_action(run, name, now, "cancelled", ACTION_CANCELLED, started=False)
        state: dict[str, Any] = {"status": status, "reason": reason}
        if error:
            state["error"] = error
        e.state = ExperimentState.model_validate(state)
        e.end_time = ids.timestamp(now)
        run.state.ends = {}
        self._write(run, "experiment-end", now, experiment_end_time=explog.timestamp(now),
                    experiment_state={"status": status, "reason": reason},
                    error_information=run.state.stop_condition)
        if e.log_configuration is not None:
            # Remembered in the store until delivered: a crash before delivery retries it.
            self._store.put_doc(LOG_DELIVERY_DOC, run.id, {"ended": now})
            self._uploads.append(run.id)
        self._save(run)

    def _fail(self, run: _Run, now: float, f: _Failure) -> None:
        if f.action is not None:
            self._set_action(run, f.action, now, "failed", f.reason, started=False)
        self._end(run, now, "failed", f.reason,
                  {"code": f.code, "location": f.location, "accountId": self._account})

    # ---- one FIS, many proxies: schedules by lease, faults everywhere ---------------------
    #
    # Every proxy on a store applies the faults of every running action. Exactly one proxy
    # runs each experiment's schedule (durations, startAfter, stop conditions, resource
    # actions): the holder of its lease, renewed every LEASE_RENEW_SECONDS. The others mirror
    # what the holder saves (change feed, and a periodic resync); if the holder dies, its
    # lease expires and another proxy takes the schedule over where it was.

    def _claim_leases(self, now: float) -> bool:
        changed = False
        for run in list(self._runs.values()):
            if run.status in TERMINAL:
                continue
            if run.owned and now - run.lease_renewed < self._lease_ttl / 3:
                continue
            try:
                held = self._store.acquire_lease(_lease(run.id), self.proxy_id, self._lease_ttl)
            except StoreUnavailable as e:
                if run.owned:  # nobody can take it over either: carry on, loudly
                    log.warning("experiment %s: cannot renew its lease (%s); running on", run.id, e)
                continue
            if held:
                run.lease_renewed = now
                if not run.owned:
                    if self._ended_meanwhile(run):  # its holder ended it, then let the lease go
                        continue
                    self._take_over(run, now)
                    changed = True
            elif run.owned:
                log.warning("experiment %s: another proxy runs its schedule now", run.id)
                self._give_up(run)
                changed = True
        return changed

    def _ended_meanwhile(self, run: _Run) -> bool:
        """A lease just taken for an experiment this proxy mirrors: true (lease given back, the
        mirror forgotten) if the store says it has ended, which this mirror has not heard yet.
        Taking its schedule over would resume and save a stale copy over the ended one."""
        stored = self._store.get_experiment(run.id)
        if stored is None or stored.state.status not in TERMINAL:
            return False
        self._store.release_lease(_lease(run.id), self.proxy_id)
        self._forget(run)
        return True

    def _take_over(self, run: _Run, now: float) -> None:
        """Run the schedule of an experiment from where the store says it is."""
        run.owned = True
        if run.shift:
            state, shift = run.state, run.shift
            state.ends = {k: (None if v is None else v + shift) for k, v in state.ends.items()}
            state.action_deadlines = {k: (None if v is None else v + shift)
                                      for k, v in state.action_deadlines.items()}
            state.heartbeat = None
            run.shift = 0.0
        log.info("experiment %s: this proxy runs its schedule", run.id)
        for name, action in run.experiment.actions.items():
            spec = ACTIONS.get(action.action_id)
            if action.state.status == "running" and spec is not None and spec.kind == "resource":
                if name not in run.workers:
                    # Waited for, then undone; started again only if it had not finished starting.
                    run.signals.setdefault(name, self._signal())
                    self._perform(run, name, spec, resumed=name in run.state.action_state)
                    if run.status != "running":
                        run.workers[name][1].cancelled.set()
        self._try_save(run)

    def _give_up(self, run: _Run) -> None:
        """Another proxy holds the lease now: stop acting (without undoing: it carries on)."""
        run.owned = False
        for _, ctx in run.workers.values():
            ctx.abandoned.set()
            ctx.cancelled.set()
        run.workers.clear()

    def _reconcile(self, run: _Run, now: float) -> bool:
        """Make this proxy's rules for a mirrored experiment match its running actions (those
        not past their planned end: a stale store cannot keep a fault on longer)."""
        e = run.experiment
        running = set()
        if e.state.status == "running":
            for name, action in e.actions.items():
                end = run.state.ends.get(name)
                if action.state.status == "running" and (end is None or end + run.shift > now):
                    running.add(name)
        changed = False
        for name in [n for n in run.signals if n not in running]:
            self._rules.pop((run.id, name), None)
            run.signals.pop(name).set()
            changed = True
        for name in running - run.signals.keys():
            run.signals[name] = self._signal()
            if ACTIONS[e.actions[name].action_id].kind != "resource":
                self._activate(run, name)
            changed = True
        return changed

    def _deactivate(self, run: _Run) -> None:
        for name in list(run.signals):
            self._rules.pop((run.id, name), None)
            run.signals.pop(name).set()

    def _forget(self, run: _Run) -> None:
        self._deactivate(run)
        self._runs.pop(run.id, None)
        if run.owned:
            try:
                self._store.release_lease(_lease(run.id), self.proxy_id)
                self._store.delete_doc(STOP_REQUEST_DOC, run.id)
            except Exception as e:  # the lease expires anyway; the request names an ended run
                log.debug("experiment %s: could not tidy up its lease: %s", run.id, e)

    def subscribe(self) -> Any:
        """Follow the store's change feed (experiments and identities changed by any proxy);
        returns the subscription (close it to stop)."""
        return self._store.subscribe((EXPERIMENT_CHANGES, IDENTITY_CHANGES), self._on_change)

    def _on_change(self, kind: str, key: str | None) -> None:
        try:
            if kind == IDENTITY_CHANGES:
                if key is None:
                    self._load_identities()
                elif (doc := self._store.get_doc(IDENTITY_DOC, key)) and doc.get("principalArn"):
                    self._identities.learn(key, doc["principalArn"])
            elif kind == EXPERIMENT_CHANGES:
                self.sync(key)
        except StoreUnavailable as e:
            log.warning("change feed: the store is unavailable (%s); resyncing later", e)

    def sync(self, experiment_id: str | None = None) -> None:
        """Bring what other proxies changed into this one: one experiment, or (None) all
        active ones (the periodic resync). Blocking reads, outside the lock."""
        if experiment_id is None:
            known = set(self._runs)
            found = [e for e in self._store.list_experiments() if e.state.status in ACTIVE or e.id in known]
        else:
            one = self._store.get_experiment(experiment_id)
            found = [one] if one is not None else []
        loaded = [(e, RunState.model_validate(self._store.get_runtime(e.id) or {}),
                   self._store.get_doc(STOP_REQUEST_DOC, e.id)) for e in found]
        with self._lock:
            now = self._clock()
            changed = False
            for experiment, state, stop in loaded:
                changed |= self._apply_sync(experiment, state, stop, now)
            if changed:
                self._rebuild_index()

    def _apply_sync(self, experiment: Experiment, state: RunState, stop: dict[str, Any] | None,
                    now: float) -> bool:
        run = self._runs.get(experiment.id)
        if run is not None and run.owned:
            if stop is not None and run.status in ("initiating", "running"):
                try:
                    self._request_stop(run, STOPPING, StopRequest.model_validate(stop))
                except SaveError as e:  # the faults ended; the save is retried by tick
                    log.error("%s; retrying", e)
                return True
            return False
        if experiment.state.status in TERMINAL:
            if run is not None:
                self._forget(run)
                return True
            return False
        if run is None:
            run = self._runs[experiment.id] = _Run(experiment, state)
        else:
            run.experiment, run.state = experiment, state
        if stop is not None:
            self._deactivate(run)
            return True
        return self._reconcile(run, now)

    # ---- resource actions (their own worker threads) ------------------------------------

    def _perform(self, run: _Run, name: str, spec: ActionSpec, *, resumed: bool) -> None:
        """Start a resource action on a worker thread (called under the lock)."""
        action = run.experiment.actions[name]
        deadline = run.state.action_deadlines.get(name)
        ctx = ActionContext(
            experiment_id=run.id, action_name=name, action_id=action.action_id,
            clients=run.session,
            targets={key: run.state.resolved[t].target()
                     for key, t in (action.targets or {}).items() if t in run.state.resolved},
            parameters=dict(action.parameters or {}), region=run.state.region,
            log=lambda message: log.info("experiment %s, action %s: %s", run.id, name, message),
            deadline=None if deadline is None else time.monotonic() + max(0.0, deadline - self._clock()),
            rng=random.Random(self._rng.random()),
            state=dict(run.state.action_state.get(name, {})),
        )
        future = self._workers.submit(self._run_action, run.id, run.role_arn, name, ctx, resumed)
        run.workers[name] = (future, ctx)

    def _run_action(self, run_id: str, role_arn: str, name: str, ctx: ActionContext, resumed: bool) -> None:
        error: ActionError | None = None
        try:
            if ctx.clients is None:  # resumed after a restart: assume the role again
                ctx.clients = self._sessions.session(role_arn, ctx.region, run_id)
            perform(implementation(ctx.action_id), ctx, started=resumed,
                    on_started=lambda: self._action_started(run_id, name, ctx))
        except ActionError as err:
            error = err
        except RoleError as err:
            error = ActionError(err.reason, err.code)
        except Exception as err:  # a bug in an action: its failure, not the engine's
            log.exception("experiment %s, action %s failed", run_id, name)
            error = ActionError(f"{ctx.action_id} failed in fisproxy: {err}", "InternalFailure")
        if not ctx.abandoned.is_set():
            self._action_finished(run_id, name, error)

    def _action_started(self, run_id: str, name: str, ctx: ActionContext) -> None:
        """Save what the action needs to undo, before waiting: a restart can still undo it."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                run.state.action_state[name] = dict(ctx.state)
                self._try_save(run)

    def _action_finished(self, run_id: str, name: str, error: ActionError | None) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or self._closing:
                return
            run.workers.pop(name, None)
            action = run.experiment.actions.get(name)
            if action is None or action.state.status != "running":
                return
            now = self._clock()
            try:
                if error is not None and error.skippable and not self._fail_unperformable:
                    if run.status == "running":  # the upstream lacks an API it needs; undone
                        self._set_action(run, name, now, "skipped", f"Skipped: {error.reason}")
                        self._save(run)
                elif error is not None and run.status == "running":
                    self._fail(run, now, _Failure(error.reason, error.code, name, action=name))
                    self._rebuild_index()
                elif run.status == "running":
                    self._set_action(run, name, now, "completed", ACTION_COMPLETED)
                    self._save(run)
                # stopping: the next tick ends the experiment (its actions `stopped`)
            except SaveError as err:
                log.error("%s; retrying", err)

    # ---- stop conditions -----------------------------------------------------------------

    def watched_alarms(self) -> dict[str, list[str]]:
        """Experiment id -> the alarm ARNs of its stop conditions, for active experiments."""
        with self._lock:
            return {
                run.id: arns for run in self._runs.values()
                if run.owned and run.status in ("initiating", "running")
                and (arns := alarm_arns(run.experiment.stop_conditions))
            }

    def on_alarms(self, firing: set[str]) -> None:
        """Stop every experiment whose stop-condition alarm is among `firing`."""
        with self._lock:
            for exp_id, arns in self.watched_alarms().items():
                fired = [a for a in arns if a in firing]
                run = self._runs.get(exp_id)
                if fired and run is not None and run.status in ("initiating", "running"):
                    log.info("experiment %s: stop condition %s is in ALARM", exp_id, fired[0])
                    run.state.stop_condition = f"Stop condition {fired[0]} is in ALARM state."
                    try:
                        self._request_stop(run, HALTED_REASON,
                                           StopRequest(status="stopped", reason=HALTED_REASON))
                    except SaveError as e:  # the faults ended; the save is retried by tick
                        log.error("%s; retrying", e)

    # ---- log delivery --------------------------------------------------------------------

    def next_log_delivery(self) -> str | None:
        with self._lock:
            return self._uploads.pop(0) if self._uploads else None

    def log_delivered(self, experiment_id: str) -> None:
        self._store.delete_doc(LOG_DELIVERY_DOC, experiment_id)

    def deliver_logs(self, experiment_id: str) -> list[str]:
        """Send an ended experiment's records where its logConfiguration says. Blocking."""
        e = self._store.get_experiment(experiment_id)
        if e is None or e.log_configuration is None:
            return []
        state = RunState.model_validate(self._store.get_runtime(experiment_id) or {})
        return explog.upload(
            self._store.logs(experiment_id), experiment_id=experiment_id,
            log_configuration=e.log_configuration, region=state.region,
            account_id=self._account, endpoint=self._endpoint, t=self._clock())

    def pending_log_deliveries(self) -> list[str]:
        return list(self._uploads)

    def close(self) -> None:
        """Save what is still unsaved and a last heartbeat, so a restart resumes from here.
        Resource actions under way are abandoned, not undone: the next start resumes them."""
        with self._lock:
            self._closing = True
            for run in self._runs.values():
                for _, ctx in run.workers.values():
                    ctx.abandoned.set()
                    ctx.cancelled.set()
                self._try_save(run)
                if run.owned and not run.unsaved:
                    try:  # another proxy on the store takes the schedule over at once
                        self._store.release_lease(_lease(run.id), self.proxy_id)
                    except Exception as e:
                        log.debug("experiment %s: lease not released: %s", run.id, e)
            self._save_identities()
            self._heartbeat(self._clock(), force=True)
        self._workers.shutdown(wait=False, cancel_futures=True)

    # ---- helpers -------------------------------------------------------------------------

    def _signal(self) -> StopSignal:
        return StopSignal(self._loop)

    def _write(self, run: _Run, log_type: explog.LogType, now: float, **details: Any) -> None:
        try:
            self._log.write(run.id, log_type, now, **details)
        except Exception:  # a lost log record must not stop the experiment's lifecycle
            log.exception("experiment %s: could not write a %s log record", run.id, log_type)

    def _save(self, run: _Run) -> None:
        try:
            self._store.put_experiment(run.experiment, run.state.model_dump(mode="json"))
        except Exception as e:
            run.unsaved = True
            raise SaveError(f"could not save experiment {run.id}: {e}") from e
        run.unsaved = False
        try:
            self._store.publish_change(EXPERIMENT_CHANGES, run.id)
        except Exception as e:  # saved: the others see it at their next resync
            log.debug("experiment %s: change not announced: %s", run.id, e)

    def _try_save(self, run: _Run) -> None:
        try:
            self._save(run)
        except SaveError as e:
            log.error("%s; retrying", e)

    def _save_identities(self) -> None:
        pending = self._unsaved_identities
        while pending:
            key, arn = pending[0]
            try:
                self._store.put_doc(IDENTITY_DOC, key, {"principalArn": arn})
                self._store.publish_change(IDENTITY_CHANGES, key)
            except Exception:
                log.exception("could not save a learned identity; retrying")
                return
            pending.popleft()

    def _heartbeat(self, now: float, *, force: bool = False) -> None:
        if not force and (now - self._last_heartbeat < HEARTBEAT_SECONDS or not self._runs):
            return
        try:
            self._store.put_doc(*HEARTBEAT_DOC, {"time": now})
        except Exception:
            log.exception("could not write the engine heartbeat")
            return
        self._last_heartbeat = now

    def _rebuild_index(self) -> None:
        self._index = RuleIndex.build(self._rules.values())

    @staticmethod
    def _copy(e: Experiment) -> Experiment:
        return e.model_copy(deep=True)


def _needs_upstream(target: Any) -> bool:
    """Whether resolving a target asks the upstream (an IAM role given by ARN does not)."""
    return target.resource_type != targets.ROLE or bool(target.resource_tags or target.filters)


def _lease(experiment_id: str) -> str:
    return f"experiment/{experiment_id}"
