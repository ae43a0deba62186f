"""The experiment engine: runs FIS experiments and answers, per proxied request, which faults apply.

Lifecycle (fis-spec 4): StartExperiment creates the experiment `initiating`; the next `tick`
resolves its targets once and makes it `running`; actions start when every `startAfter`
predecessor is done and end after `ActionSpec.duration` (never, for actions without one: they run
until the experiment stops). The experiment ends `completed`, `stopping` -> `stopped` (StopExperiment
or a stop condition), `failed` (bad target, unsupported action), or `cancelled` (safety lever).

Everything happens in `tick()` at `clock()`: tests drive it with a fake clock, `run()` calls it every
0.1 s on the event loop and keeps blocking upstream calls (alarm polling, log delivery, IAM role
lookups) in worker threads.

Per request, `match` must cost microseconds: the rules of running actions are kept in an index by
service name, rebuilt only when an action starts or stops.

Durability: every state change is written to the store with the engine's runtime data (resolved
targets, planned action ends, a heartbeat written every second while running). `resume()` after a
restart shifts the planned ends of running actions by the downtime, so they keep the time they had
left (up to the heartbeat interval more).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fisproxy.aws.call import AwsCall
from fisproxy.fis import explog, ids, targets
from fisproxy.fis.actions import ACTIONS
from fisproxy.fis.faults import Fault, RuleSpec
from fisproxy.fis.identities import Identities, RoleRef, role_ref
from fisproxy.fis.models import (
    Experiment,
    ExperimentActionState,
    ExperimentState,
    ExperimentTemplate,
    ResolvedTarget,
)
from fisproxy.fis.stopconditions import HALTED_REASON, AlarmPoller, alarm_arns

if TYPE_CHECKING:
    from fisproxy.store import Store

log = logging.getLogger(__name__)

TERMINAL = frozenset({"completed", "stopped", "failed", "cancelled"})
ACTIVE = frozenset({"pending", "initiating", "running", "stopping"})
_ACTION_DONE = frozenset({"completed", "skipped"})
_ACTION_TERMINAL = frozenset({"completed", "skipped", "cancelled", "stopped", "failed"})

TICK_SECONDS = 0.1
HEARTBEAT_SECONDS = 1.0
# FIS experiments are regional: AWS and LocalStack actions that name no region act in the
# experiment's region (LocalStack's documented default). fisproxy's own actions that name no
# region act in every region.
REGIONAL_ACTION_PREFIXES = ("aws:", "localstack:")
IDENTITY_DOC = "identity"
LOG_DELIVERY_DOC = "log-delivery"  # ended experiments whose logs still have to go upstream

# Reasons as real FIS words them (fis-spec 4.3, 4.4); the rest follow the same style.
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


@dataclass(slots=True)
class _Rule:
    """A running action's RuleSpec with its caller filter; `roles`/`keys` None = every caller."""

    experiment_id: str
    action_name: str
    rule: RuleSpec
    stopped: asyncio.Event
    roles: frozenset[RoleRef] | None = None
    keys: frozenset[str] = frozenset()
    source: str = field(init=False)

    def __post_init__(self) -> None:
        self.source = f"{self.experiment_id}/{self.action_name}"


@dataclass
class _Run:
    """An active experiment: the model (what the API shows) plus the engine's runtime data.

    runtime (JSON, persisted): `region`, `heartbeat`, `resolved` {target name: {resource_type,
    arns, access_keys, by_arn}}, `ends` {running action: planned end or None}, `stop` {status,
    reason} once a stop was asked, `stop_condition` (the alarm that fired).
    """

    experiment: Experiment
    runtime: dict[str, Any]
    events: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.experiment.id

    @property
    def status(self) -> str:
        return self.experiment.state.status


class _Failure(Exception):
    def __init__(self, reason: str, code: str, location: str, action: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.code, self.location, self.action = reason, code, location, action


class Engine:
    def __init__(
        self,
        store: Store,
        *,
        state_dir: Path,
        rng: random.Random,
        clock: Callable[[], float] = time.time,
        upstream_endpoint: str | None = None,
        account_id: str = "123456789012",
        alarm_poll_seconds: float = 5.0,
        role_lookup: targets.RoleLookup | None = None,
        alarm_poller: AlarmPoller | None = None,
    ) -> None:
        self._store = store
        self._rng = rng
        self._clock = clock
        self._endpoint = upstream_endpoint
        self._account = account_id
        self._alarm_poll_seconds = alarm_poll_seconds
        self._log = explog.ExperimentLog(store, state_dir)
        # Roles by tags/filters need the upstream's IAM; offline they fail with a clear reason.
        if role_lookup is None and upstream_endpoint is not None:
            role_lookup = targets.iam_role_lookup(upstream_endpoint)
        self._role_lookup = role_lookup
        # run() fetches ListRoles in a thread before the tick that resolves the targets.
        self._prefetched_roles: dict[str, targets.RoleLookup] = {}
        self._poller = alarm_poller or AlarmPoller(upstream_endpoint)
        self._identities = Identities()
        self._runs: dict[str, _Run] = {}
        self._uploads: list[str] = []
        # The match() index: replaced wholesale (never mutated) when an action starts or stops.
        self._rules: dict[tuple[str, str], _Rule] = {}
        self._by_service: dict[str, tuple[_Rule, ...]] = {}
        self._any_service: tuple[_Rule, ...] = ()
        self._has_rules = False
        self._load_identities()

    # ---- control API ---------------------------------------------------------------------

    def start_experiment(
        self, template: ExperimentTemplate, *, region: str, tags: dict[str, str], actions_mode: str
    ) -> Experiment:
        now = self._clock()
        exp_id = ids.new_experiment_id()
        experiment = Experiment.from_template(
            template, experiment_id=exp_id, arn=ids.experiment_arn(region, self._account, exp_id),
            created=ids.timestamp(now), tags=tags, actions_mode=actions_mode or "run-all")  # type: ignore[arg-type]
        experiment.start_time = None  # set when it starts running
        experiment.state = ExperimentState(status="initiating", reason=INITIATING)
        for action in experiment.actions.values():
            action.state = ExperimentActionState(status="pending", reason=ACTION_INITIAL)
        run = _Run(experiment, {"region": region, "heartbeat": now})
        self._runs[exp_id] = run
        self._persist(run)
        return self._copy(run.experiment)

    def stop_experiment(self, experiment_id: str) -> Experiment:
        """Ask an active experiment to stop: `stopping` now, `stopped` at the next tick.

        KeyError if unknown. A terminal experiment is returned unchanged (the API decides whether
        that is a conflict)."""
        run = self._runs.get(experiment_id)
        if run is None:
            stored = self._store.get_experiment(experiment_id)
            if stored is None:
                raise KeyError(experiment_id)
            return stored
        if run.status in ("initiating", "running"):
            self._request_stop(run, STOPPING, {"status": "stopped", "reason": STOPPED})
        return self._copy(run.experiment)

    def cancel_all(self, reason: str) -> None:
        """Safety lever: every active experiment ends `cancelled` at once."""
        now = self._clock()
        for run in list(self._runs.values()):
            if run.status in ACTIVE:
                self._end(run, now, "cancelled", reason)
        self._rebuild_index()

    def active_count(self) -> int:
        return sum(1 for run in self._runs.values() if run.status in ACTIVE)

    def resolved_targets(self, experiment_id: str) -> list[ResolvedTarget]:
        run = self._runs.get(experiment_id)
        if run is not None:
            runtime = run.runtime
        else:
            if self._store.get_experiment(experiment_id) is None:
                raise KeyError(experiment_id)
            runtime = self._store.get_runtime(experiment_id) or {}
        out = []
        for name, res in (runtime.get("resolved") or {}).items():
            for arn in res["arns"]:
                out.append(ResolvedTarget.model_validate(
                    {"resourceType": res["resource_type"], "targetName": name,
                     "targetInformation": {"arn": arn}}))
        return out

    # ---- proxy ---------------------------------------------------------------------------

    def match(self, call: AwsCall) -> list[Fault]:
        """The faults for one request: latency faults first, then at most one error/disconnect."""
        if not self._has_rules:
            return []
        by_service = self._by_service
        candidates: Iterable[_Rule]
        if len(call.names) == 1:
            candidates = by_service.get(call.service, ())
        else:
            seen: dict[int, _Rule] = {}
            for name in call.names:
                for r in by_service.get(name, ()):
                    seen[id(r)] = r
            candidates = seen.values()
        latencies: list[Fault] = []
        error: Fault | None = None
        rng = self._rng
        for group in (candidates, self._any_service):
            for r in group:
                spec = r.rule
                if spec.operations is not None and call.operation not in spec.operations:
                    continue
                if spec.region is not None and call.region != spec.region:
                    continue
                if r.roles is not None and not self._caller_targeted(r, call.access_key):
                    continue
                if spec.percentage < 100 and rng.random() * 100 >= spec.percentage:
                    continue
                for fs in spec.faults:
                    if fs.kind == "latency":
                        ms = fs.latency_ms + (rng.uniform(0, fs.jitter_ms) if fs.jitter_ms else 0.0)
                        latencies.append(Fault(r.source, fs, ms, r.stopped))
                    elif error is None:
                        error = Fault(r.source, fs, fs.latency_ms, r.stopped)
        if error is not None:
            latencies.append(error)
        return latencies

    def _caller_targeted(self, r: _Rule, access_key: str | None) -> bool:
        if access_key is None:
            return False
        if access_key in r.keys:
            return True
        role = self._identities.role_of(access_key)
        return role is not None and role in r.roles  # type: ignore[operator]

    def learn_identity(self, access_key: str, principal_arn: str) -> None:
        if self._identities.learn(access_key, principal_arn):
            self._store.put_doc(IDENTITY_DOC, access_key, {"principalArn": principal_arn})

    def _load_identities(self) -> None:
        for key, doc in self._store.list_docs(IDENTITY_DOC).items():
            arn = doc.get("principalArn")
            if arn:
                self._identities.learn(key, arn)

    # ---- lifecycle -----------------------------------------------------------------------

    def resume(self) -> None:
        """After a restart: reload active experiments; running actions keep the time they had
        left; log deliveries that had not gone out yet are queued again."""
        now = self._clock()
        self._uploads.extend(k for k in self._store.list_docs(LOG_DELIVERY_DOC) if k not in self._uploads)
        for experiment in self._store.list_experiments():
            if experiment.state.status not in ACTIVE or experiment.id in self._runs:
                continue
            runtime = dict(self._store.get_runtime(experiment.id) or {})
            downtime = max(0.0, now - float(runtime.get("heartbeat", now)))
            ends = runtime.get("ends") or {}
            runtime["ends"] = {k: (None if v is None else v + downtime) for k, v in ends.items()}
            runtime["heartbeat"] = now
            run = _Run(experiment, runtime)
            self._runs[experiment.id] = run
            for name, action in experiment.actions.items():
                if action.state.status == "running":
                    run.events[name] = asyncio.Event()
                    if experiment.state.status == "running":
                        self._activate(run, name)
            log.info("resumed experiment %s (%s, down %.1f s)", experiment.id,
                     experiment.state.status, downtime)
            self._persist(run)
        self._rebuild_index()

    def tick(self) -> None:
        """One deterministic lifecycle step at `clock()`."""
        now = self._clock()
        changed = False
        for run in list(self._runs.values()):
            status = run.status
            if status == "initiating":
                changed |= self._initiate(run, now)
            if run.status == "running":
                changed |= self._advance(run, now)
            if run.status == "stopping":
                self._end(run, now, **run.runtime["stop"])
                changed = True
            if run.status == "running" and now - run.runtime["heartbeat"] >= HEARTBEAT_SECONDS:
                run.runtime["heartbeat"] = now
                self._persist(run)
        for exp_id in [i for i, r in self._runs.items() if r.status in TERMINAL]:
            del self._runs[exp_id]
            self._prefetched_roles.pop(exp_id, None)
        if changed:
            self._rebuild_index()

    def _initiate(self, run: _Run, now: float) -> bool:
        e = run.experiment
        e.start_time = ids.timestamp(now)
        self._write(run, "experiment-start", now, experiment_template_id=e.experiment_template_id,
                    experiment_start_time=explog.timestamp(now))
        skip_all = e.experiment_options.actions_mode == "skip-all"
        try:
            if not skip_all:
                self._check_actions(run)
            run.runtime["resolved"] = self._resolve_targets(run, now)
        except _Failure as f:
            self._fail(run, now, f)
            return True
        if skip_all:
            for name in e.actions:
                self._set_action(run, name, now, "skipped", ACTION_SKIPPED, started=False)
            self._end(run, now, "completed", COMPLETED)
            return True
        e.state = ExperimentState(status="running", reason=RUNNING)
        run.runtime["ends"] = {}
        run.runtime["heartbeat"] = now
        self._persist(run)
        return True

    def _check_actions(self, run: _Run) -> None:
        # Refuse what fisproxy cannot do before anything runs: never a silent success.
        e = run.experiment
        for name, action in e.actions.items():
            spec = ACTIONS.get(action.action_id)
            if spec is None or not spec.runnable:
                raise _Failure(
                    f'Action "{name}" ({action.action_id}) is not supported by fisproxy.',
                    "ConfigurationFailure", name, action=name)
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

    def _resolve_targets(self, run: _Run, now: float) -> dict[str, dict[str, Any]]:
        e = run.experiment
        empty_mode = e.experiment_options.empty_target_resolution_mode or "fail"
        lookup = self._prefetched_roles.get(run.id, self._role_lookup)
        resolved: dict[str, dict[str, Any]] = {}
        for name, target in (e.targets or {}).items():
            self._write(run, "target-resolution-start", now, target_name=name,
                        target_resolution_start_time=explog.timestamp(now))
            detail = {"target_name": name, "target_type": target.resource_type,
                      "account_id": self._account,
                      "target_resolution_end_time": explog.timestamp(now)}
            try:
                res = targets.resolve(name, target, self._rng, lookup)
            except targets.TargetError as err:
                self._write(run, "target-resolution-detail", now, **detail,
                            resolved_targets_count=0, status="failed", error_information=err.reason)
                raise _Failure(err.reason, err.code, name) from err
            self._write(run, "target-resolution-detail", now, **detail,
                        resolved_targets_count=len(res.arns), status="completed")
            self._write(run, "target-resolution-end", now,
                        **{k: v for k, v in detail.items() if k != "account_id"},
                        resolved_targets=[{"arn": a} for a in res.arns], page=1, total_pages=1)
            if res.empty and (res.by_arn or empty_mode != "skip"):
                raise _Failure(f'Target "{name}" resolved to no resources.', "InvalidTarget", name)
            resolved[name] = {"resource_type": res.resource_type, "arns": list(res.arns),
                              "access_keys": list(res.access_keys), "by_arn": res.by_arn}
        return resolved

    def _advance(self, run: _Run, now: float) -> bool:
        """Complete due actions and start ready ones until nothing changes; end when all done."""
        e = run.experiment
        ends = run.runtime.setdefault("ends", {})
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
            self._persist(run)
        return changed

    def _start_action(self, run: _Run, name: str, now: float) -> None:
        e = run.experiment
        action = e.actions[name]
        resolved = run.runtime.get("resolved") or {}
        used = list((action.targets or {}).values())
        if used and any(resolved.get(t) is None or _empty(resolved[t]) for t in used):
            self._set_action(run, name, now, "skipped", ACTION_NO_TARGETS, started=False)
            return
        spec = ACTIONS[action.action_id]
        params = action.parameters or {}
        duration = spec.duration(params)
        action.state = ExperimentActionState(status="running", reason="")
        action.start_time = ids.timestamp(now)
        run.runtime["ends"][name] = None if duration is None else now + duration.total_seconds()
        run.events[name] = asyncio.Event()
        self._write(run, "action-start", now, action_name=name, action_id=action.action_id,
                    action_start_time=explog.timestamp(now), action_targets=dict(action.targets or {}),
                    parameters=dict(params) or None)
        self._activate(run, name)

    def _activate(self, run: _Run, name: str) -> None:
        """Put a running action's rule into the match() index (rebuilt by the caller)."""
        action = run.experiment.actions[name]
        rule = ACTIONS[action.action_id].rule(action.parameters or {})
        if rule is None:
            return
        if rule.region is None and action.action_id.startswith(REGIONAL_ACTION_PREFIXES):
            rule = dataclasses.replace(rule, region=run.runtime.get("region"))
        resolved = run.runtime.get("resolved") or {}
        roles: set[RoleRef] = set()
        keys: set[str] = set()
        role_targeted = False
        for target_name in (action.targets or {}).values():
            res = resolved.get(target_name)
            if res is None or res["resource_type"] != targets.ROLE:
                continue
            role_targeted = True
            keys.update(res["access_keys"])
            roles.update(r for r in map(role_ref, res["arns"]) if r is not None)
        self._rules[(run.id, name)] = _Rule(
            run.id, name, rule, run.events[name],
            roles=frozenset(roles) if role_targeted else None, keys=frozenset(keys))

    def _set_action(self, run: _Run, name: str, now: float, status: str, reason: str,
                    *, started: bool = True) -> None:
        action = run.experiment.actions[name]
        action.state = ExperimentActionState(status=status, reason=reason)  # type: ignore[arg-type]
        if started or action.start_time is not None:
            action.end_time = ids.timestamp(now)
        run.runtime.get("ends", {}).pop(name, None)
        self._rules.pop((run.id, name), None)
        event = run.events.pop(name, None)
        if event is not None:
            event.set()
        if status == "failed":
            self._write(run, "action-error", now, action_name=name, action_id=action.action_id,
                        account_id=self._account,
                        action_state={"status": status, "reason": reason})
        self._write(run, "action-end", now, action_name=name, action_id=action.action_id,
                    action_end_time=explog.timestamp(now),
                    action_state={"status": status, "reason": reason})

    def _request_stop(self, run: _Run, reason: str, final: dict[str, str]) -> None:
        # Faults end now; the model shows `stopping` (actions still as they were) until the tick.
        run.experiment.state = ExperimentState(status="stopping", reason=reason)
        run.runtime["stop"] = final
        for name in list(run.events):
            self._rules.pop((run.id, name), None)
            run.events[name].set()
        self._rebuild_index()
        self._persist(run)

    def _end(self, run: _Run, now: float, status: str, reason: str,
             error: dict[str, str] | None = None) -> None:
        """Terminal state: running actions stopped, pending ones cancelled, logs, persisted."""
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
        run.runtime.pop("ends", None)
        self._write(run, "experiment-end", now, experiment_end_time=explog.timestamp(now),
                    experiment_state={"status": status, "reason": reason},
                    error_information=run.runtime.get("stop_condition"))
        self._persist(run)
        if e.log_configuration is not None:
            # Remembered in the store until delivered: a crash before delivery retries it.
            self._store.put_doc(LOG_DELIVERY_DOC, run.id, {"ended": now})
            self._uploads.append(run.id)

    def _fail(self, run: _Run, now: float, f: _Failure) -> None:
        if f.action is not None:
            self._set_action(run, f.action, now, "failed", f.reason, started=False)
        self._end(run, now, "failed", f.reason,
                  {"code": f.code, "location": f.location, "accountId": self._account})

    # ---- stop conditions -----------------------------------------------------------------

    def _watched_alarms(self) -> dict[str, list[str]]:
        return {
            run.id: arns for run in self._runs.values()
            if run.status in ("initiating", "running")
            and (arns := alarm_arns(run.experiment.stop_conditions))
        }

    def _on_alarms(self, firing: set[str]) -> None:
        for exp_id, arns in self._watched_alarms().items():
            fired = [a for a in arns if a in firing]
            run = self._runs.get(exp_id)
            if fired and run is not None and run.status in ("initiating", "running"):
                log.info("experiment %s: stop condition %s is in ALARM", exp_id, fired[0])
                run.runtime["stop_condition"] = f"Stop condition {fired[0]} is in ALARM state."
                self._request_stop(run, HALTED_REASON, {"status": "stopped", "reason": HALTED_REASON})

    def poll_stop_conditions(self) -> None:
        """Read the watched alarms now (blocking) and stop experiments whose alarm fired."""
        watched = self._watched_alarms()
        if watched:
            self._on_alarms(self._poller.firing({a for arns in watched.values() for a in arns}))

    # ---- background loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Tick every 0.1 s, poll alarms and deliver logs in threads, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._tick_loop(), name="fisproxy-engine-tick")
            tg.create_task(self._alarm_loop(), name="fisproxy-engine-alarms")

    async def _tick_loop(self) -> None:
        while True:
            try:
                await self._prefetch_roles()
                self.tick()
                await self._deliver_logs()
            except Exception:  # the loop's error boundary: log, keep experiments moving
                log.exception("engine tick failed")
            await asyncio.sleep(TICK_SECONDS)

    async def _alarm_loop(self) -> None:
        while True:
            watched = self._watched_alarms()
            if watched:
                arns = {a for v in watched.values() for a in v}
                try:
                    firing = await asyncio.to_thread(self._poller.firing, arns)
                    self._on_alarms(firing)
                except Exception:  # boundary as above
                    log.exception("stop-condition polling failed")
            await asyncio.sleep(self._alarm_poll_seconds)

    async def _prefetch_roles(self) -> None:
        # Tag/filter role targets need ListRoles: fetch in a thread, before the tick uses it.
        if self._role_lookup is None:
            return
        for run in list(self._runs.values()):
            if run.status != "initiating" or run.id in self._prefetched_roles:
                continue
            if any(t.resource_tags or t.filters for t in (run.experiment.targets or {}).values()):
                try:
                    roles = await asyncio.to_thread(self._role_lookup)
                except Exception as err:  # resolution reports it as the target's failure
                    self._prefetched_roles[run.id] = _raiser(err)
                else:
                    self._prefetched_roles[run.id] = lambda roles=roles: roles

    async def _deliver_logs(self) -> None:
        while self._uploads:
            experiment_id = self._uploads.pop(0)
            failures = await asyncio.to_thread(self.deliver_logs, experiment_id)
            if failures:
                log.warning("experiment %s: log delivery failed (retried at next start): %s",
                            experiment_id, "; ".join(failures))
            else:
                self._store.delete_doc(LOG_DELIVERY_DOC, experiment_id)

    def deliver_logs(self, experiment_id: str) -> list[str]:
        """Send an ended experiment's records where its logConfiguration says. Blocking."""
        e = self._store.get_experiment(experiment_id)
        if e is None or e.log_configuration is None:
            return []
        runtime = self._store.get_runtime(experiment_id) or {}
        return explog.upload(
            self._store.logs(experiment_id), experiment_id=experiment_id,
            log_configuration=e.log_configuration, region=runtime.get("region", "us-east-1"),
            account_id=self._account, endpoint=self._endpoint, t=self._clock())

    def pending_log_deliveries(self) -> list[str]:
        return list(self._uploads)

    def close(self) -> None:
        """Persist what is active (a heartbeat now), so a restart resumes from here."""
        now = self._clock()
        for run in self._runs.values():
            if run.status == "running":
                run.runtime["heartbeat"] = now
                self._persist(run)

    # ---- helpers -------------------------------------------------------------------------

    def _write(self, run: _Run, log_type: explog.LogType, now: float, **details: Any) -> None:
        self._log.write(run.id, log_type, now, **details)

    def _persist(self, run: _Run) -> None:
        self._store.put_experiment(run.experiment, run.runtime)

    def _rebuild_index(self) -> None:
        by_service: dict[str, list[_Rule]] = {}
        any_service: list[_Rule] = []
        for r in self._rules.values():
            if r.rule.services is None:
                any_service.append(r)
            else:
                for s in r.rule.services:
                    by_service.setdefault(s, []).append(r)
        self._by_service = {k: tuple(v) for k, v in by_service.items()}
        self._any_service = tuple(any_service)
        self._has_rules = bool(self._rules)

    @staticmethod
    def _copy(e: Experiment) -> Experiment:
        return e.model_copy(deep=True)


def _raiser(err: Exception) -> targets.RoleLookup:
    def lookup() -> Sequence[targets.RoleInfo]:
        raise err

    return lookup


def _empty(res: dict[str, Any]) -> bool:
    return not res["arns"] and not res["access_keys"]
