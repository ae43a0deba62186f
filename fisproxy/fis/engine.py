"""The experiment engine: the thin facade that runs the parts around the lifecycle.

The parts, each with one job:

- `lifecycle.py`: the experiment lifecycle, a pure function (events in, state and effects out).
- `activation.py`: running actions made into rules (from the action registry), and the
  immutable index the proxy reads per request.
- `runner.py`: target resolution and resource actions on worker threads, undone however the
  experiment ends, at most once.
- `fleet.py`: leases, the change feed and resync, stop requests: one FIS on many proxies.
- `deliveries.py`: ended experiments' logs delivered upstream.

This facade holds the engine's lock, feeds events to the lifecycle and carries its effects out,
and saves what changed. Which thread calls what:

| thread | calls | waits on |
|---|---|---|
| `fisproxy-engine` (`loops.py`, every 0.1 s) | `step`: lifecycle ticks, mirrors' planned ends | nothing: memory only |
| `fisproxy-store` (`loops.py`, every 0.1 s) | `persist`: leases, saves, log records, identities, a resync that failed | the store (its calls time out) |
| `fisproxy-upstream` (`loops.py`) | `watched_alarms`, `on_alarms`, `deliveries` (`deliveries.py`) | the upstream, the store |
| control API workers | `start_experiment`, `stop_experiment`, `cancel_all`, `resolved_targets` | the store (a stop ends the faults first) |
| the store's change listener | `_on_notice` (what changed, carried by the notice), `_on_change` -> `sync(id)` | the store, for notices without data (read before the lock) |
| `fisproxy-housekeeping` (`fisproxy/housekeeping.py`) | `resync`: the data version, `sync()` only if it moved | the store (read before the lock) |
| `fisproxy-action-N` (`runner.py`) | `worker_event` | an intent's save |
| the proxy's event loop | `candidates`, `match`, `learn_identity` | nothing: no lock, memory only |

The lock is never held across a store or upstream call, so no end waits on the store: a fault
ends at its planned end on this proxy's clock whatever the store does (hung, refused, restarted),
and a stop ends the faults here before anything is saved.

Durability. Every change is saved (experiment model + `RunState`, log records first) by the
store thread, or before it is acknowledged where the API answers (start, stop, cancel) or an
action is about to act (its intent). A save that fails is tried again at every persist: an
experiment is forgotten only once its final state is saved. Planned ends are absolute, so a
restarted proxy or a proxy that takes the schedule over ends every action on time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fisproxy.aws.call import AwsCall
from fisproxy.fis import explog, ids, lifecycle, reportstate
from fisproxy.fis.activation import Rules
from fisproxy.fis.decide import decide
from fisproxy.fis.deliveries import LogDeliveries
from fisproxy.fis.faults import Fault
from fisproxy.fis.fleet import (
    IDENTITY_CHANGES,
    LEASE_TTL_SECONDS,
    Ended,
    Fleet,
    SharedIdentities,
    Stored,
    lease_name,
    mirrored_actions,
)
from fisproxy.fis.lifecycle import (
    ACTIVE,
    STOPPABLE,
    STOPPED,
    TERMINAL,
    ActionEnded,
    ActionProgress,
    Cancel,
    Event,
    Resolved,
    Stop,
    TakeOver,
    Tick,
)
from fisproxy.fis.models import Experiment, ExperimentTemplate
from fisproxy.fis.models import ResolvedTarget as ResolvedTargetInfo
from fisproxy.fis.outage import announced
from fisproxy.fis.ports import (
    EXPERIMENT_CHANGES,
    FleetStore,
    SaveError,
    StoreUnavailable,
    Subscription,
)
from fisproxy.fis.proxyfaults import Placement, Where
from fisproxy.fis.resources.scoped import ShardIterators
from fisproxy.fis.rules import ActiveRule
from fisproxy.fis.runner import ActionRunner
from fisproxy.fis.runstate import RunState, StopRequest
from fisproxy.fis.stopconditions import HALTED_REASON, AlarmPoller, alarm_arns
from fisproxy.fis.upstream import RoleSessions

log = logging.getLogger(__name__)

CLAIM_SECONDS = 0.5  # how often a proxy retries a claim the store could not answer


@dataclass
class _Run:
    """An experiment this proxy knows: the model and state (replaced whole by each lifecycle
    step, never changed in place), and what this proxy does about it."""

    experiment: Experiment
    state: RunState
    # This proxy runs the experiment's schedule (holds its lease); otherwise it mirrors what
    # the holder saves and applies the faults of the running actions.
    owned: bool = False
    lease_renewed: float = 0.0
    # When to try to take the schedule over: when the holder's lease would expire unless
    # renewed (a mirror asks about once per lease lifetime, not every half second).
    next_claim: float = 0.0
    # A stop asked while another proxy runs the schedule: its faults stay off here.
    stop_request: StopRequest | None = None
    version: int = 0  # changes made here
    saved: int = 0  # the version last saved
    save_failing: bool = False  # said once in the log, not at every retry
    logs: list[tuple[explog.LogType, float, dict[str, Any]]] = field(default_factory=list)
    deliver: bool = False  # its log delivery is still to be recorded
    report: bool = False  # its FIS report is still to be queued (reports/delivery.py makes it)

    @property
    def id(self) -> str:
        return self.experiment.id

    @property
    def status(self) -> str:
        return self.experiment.state.status

    @property
    def unsaved(self) -> bool:
        return self.saved < self.version or bool(self.logs) or self.deliver or self.report


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
        # Actions fisproxy cannot perform fail the experiments started here instead of being
        # skipped (kept in each experiment's RunState, so whoever runs it decides the same).
        self._fail_unperformable = fail_unperformable
        self._rng = rng
        self._clock = clock
        self._account = account_id
        self.proxy_id = proxy_id  # the lease holder name of this proxy
        self._log = explog.ExperimentLog(store, state_dir)
        self.placement = placement or Placement()
        self.shard_iterators = ShardIterators()  # Kinesis GetRecords -> stream, for scoped faults
        self.poller = alarm_poller or AlarmPoller(upstream_endpoint)
        self.fleet = Fleet(store, proxy_id, lease_ttl_seconds)
        # Experiment roles are assumed on the upstream (AssumeRole) when an experiment needs to
        # look at or act on resources, or delivers its logs; API faults on roles given by ARN
        # need no upstream.
        sessions = sessions or RoleSessions(upstream_endpoint)
        self.deliveries = LogDeliveries(store, sessions, account_id=account_id, clock=clock)
        self.identities = SharedIdentities(store)
        self.identities.load()
        self.rules = Rules(Where("", self.placement, self.shard_iterators), self.identities.identities, loop)
        self.runner = ActionRunner(self, sessions, clock=clock, max_workers=max_action_workers)
        self._lock = threading.RLock()  # the runs, the rules: held for memory work only
        self._save_lock = threading.Lock()  # saves in order, one at a time (never under _lock)
        self._runs: dict[str, _Run] = {}
        self._ended = Ended()  # forgotten here: a late notice or read must not revive one
        self._resync_due = False
        self._synced_version: str | None = None
        self._synced = False  # a resync has read the store at `_synced_version`
        self._closing = False

    # ---- control API (worker threads) ----------------------------------------------------

    def start_experiment(
        self, template: ExperimentTemplate, *, region: str, tags: dict[str, str], actions_mode: str
    ) -> Experiment:
        """A new experiment, `initiating`; saved (and its lease taken) before it is returned.
        SaveError (nothing kept) if it could not be saved."""
        now = self._clock()
        exp_id = ids.new_experiment_id()
        created = lifecycle.create(template, experiment_id=exp_id, arn=ids.experiment_arn(region, self._account, exp_id),
                                   now=now, region=region, tags=tags, actions_mode=actions_mode,
                                   fail_unperformable=self._fail_unperformable)
        run = _Run(created.experiment, created.state, owned=True, lease_renewed=now, version=1)
        self.fleet.claim(exp_id)
        self._save(run)  # not acknowledged (and not kept) unless saved
        with self._lock:
            self._runs[exp_id] = run
            self._apply(run, created, now)
            return run.experiment.model_copy(deep=True)

    def stop_experiment(self, experiment_id: str) -> Experiment:
        """Ask an active experiment to stop: its faults end now on this proxy; `stopping` now,
        ended at the next step of whichever proxy runs its schedule (another proxy is asked
        through the store). KeyError if unknown; a terminal experiment is returned unchanged.
        SaveError if the stop could not be saved: the faults have ended anyway, and asking
        again retries the save."""
        final = StopRequest(status="stopped", reason=STOPPED)
        with self._lock:
            run = self._runs.get(experiment_id)
            if run is not None and run.owned:
                self._apply(run, Stop(final), self._clock())
            elif run is not None:  # another proxy runs it: its faults end here at once
                run.stop_request = final
                self._reconcile(run, self._clock())
                self.rules.publish()
        if run is not None and run.owned:
            self._save(run)
            return run.experiment.model_copy(deep=True)
        return self.fleet.ask_to_stop(experiment_id, final)

    def cancel_all(self, reason: str) -> None:
        """Safety lever: every active experiment ends `cancelled`, its faults at once."""
        final = StopRequest(status="cancelled", reason=reason)
        with self._lock:
            runs = [r for r in self._runs.values() if r.status in ACTIVE]
            for run in runs:
                if run.owned:
                    self._apply(run, Cancel(reason), self._clock())
                else:  # another proxy runs it: its faults end here at once
                    run.stop_request = final
                    self._reconcile(run, self._clock())
            self.rules.publish()
        failed = []
        for run in runs:
            try:
                if run.owned:
                    self._save(run)
                else:
                    self.fleet.ask_to_stop(run.id, final)
            except (KeyError, SaveError, StoreUnavailable):
                failed.append(run.id)
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
            state = self._store.get_runtime(experiment_id) or RunState()
        return [
            ResolvedTargetInfo.model_validate({
                "resourceType": res.resource_type, "targetName": name, "targetInformation": {"arn": arn}})
            for name, res in state.resolved.items() for arn in res.arns
        ]

    # ---- proxy (event loop, per request: memory only) ------------------------------------

    def candidates(self, call: AwsCall) -> tuple[ActiveRule, ...]:
        """The running actions' rules that could apply to `call`. Lock-free."""
        index = self.rules.index
        return index.candidates(call) if index else ()

    def other_candidates(self) -> tuple[ActiveRule, ...]:
        """The running actions' rules that also apply to requests that are not AWS calls
        (network disruption of a subnet). Lock-free."""
        return self.rules.index.other_traffic

    def match(self, call: AwsCall) -> list[Fault]:
        """The faults for one request: latency faults first, then at most one error/disconnect."""
        return list(decide(call, self.candidates(call), self._rng).faults)

    def learn_identity(self, access_key: str, principal_arn: str) -> None:
        """Remember who an access key belongs to (from an STS answer): in memory at once,
        saved by the store thread."""
        self.identities.learn(access_key, principal_arn)

    # ---- the engine's threads ------------------------------------------------------------

    def resume(self) -> None:
        """At start-up: take in the active experiments of the store. Their faults apply at once
        (until their planned ends); the store thread claims the schedules no other proxy runs,
        and resumes them where they were. Log deliveries not done yet are queued again."""
        self.deliveries.resume()
        loaded = self.fleet.load(None)
        with self._lock:
            now = self._clock()
            for stored in loaded:
                if stored.experiment.state.status in ACTIVE and stored.experiment.id not in self._runs:
                    self._mirror(stored, now)
                    if (run := self._runs.get(stored.experiment.id)) is not None:
                        run.next_claim = now  # its holder may be gone (this very proxy): ask now
                    log.info("resumed experiment %s (%s)", stored.experiment.id, stored.experiment.state.status)
            self.rules.publish()

    def step(self) -> None:
        """The tick thread: one lifecycle step at `clock()` for the experiments this proxy runs;
        the others' faults end at their planned ends here. Memory only."""
        with self._lock:
            now = self._clock()
            for run in list(self._runs.values()):
                if run.owned:
                    self._apply(run, Tick(), now)
                else:
                    self._reconcile(run, now)
            self.rules.publish()

    def persist(self) -> None:
        """The store thread: renew or claim leases, save what changed, forget what ended and is
        saved, share learned identities, and redo a resync that failed. Waits on the store."""
        self._claim_leases()
        if self._resync_due:
            try:
                self.sync()
            except StoreUnavailable as e:
                log.debug("resync: the store is still unavailable (%s)", e)
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            if run.unsaved:
                try:
                    self._save(run)
                except SaveError as e:
                    if not run.save_failing:
                        log.error("%s; retrying until it is saved", e)
                    run.save_failing = True
                else:
                    if run.save_failing:
                        log.warning("experiment %s: saved again", run.id)
                    run.save_failing = False
        with self._lock:
            ended = [r for r in self._runs.values() if r.status in TERMINAL and not r.unsaved
                     and r.owned and not self.runner.running(r.id)]
            for run in ended:
                self._forget(run, run.version)
            self.rules.publish()
        for run in ended:
            self.fleet.release(run.id)
        self.identities.save()

    def action_detail(self, experiment_id: str, details: dict[str, Any]) -> None:
        """A resource action's `action-detail` record (runner threads): saved with the run."""
        with self._lock:
            run = self._runs.get(experiment_id)
            if run is not None:
                run.logs.append(("action-detail", self._clock(), details))

    def worker_event(self, experiment_id: str, event: Resolved | ActionProgress | ActionEnded) -> None:
        """A worker's answer (`runner.py`): targets resolved, an action's progress (an intent is
        saved before this returns: SaveError if it could not be), an action ended."""
        with self._lock:
            now = self._clock()
            run = self._runs.get(experiment_id)
            if run is None or not run.owned or self._closing:
                if isinstance(event, ActionProgress):
                    raise SaveError(f"experiment {experiment_id}: this proxy no longer runs its schedule")
                return
            if isinstance(event, ActionProgress) and event.phase == "intent" and (
                    now - run.lease_renewed > self.fleet.lease_ttl):
                # The lease may have gone to another proxy meanwhile: act only once it is renewed.
                raise SaveError(f"experiment {experiment_id}: its lease was not renewed for "
                                f"{now - run.lease_renewed:.1f} s; not acting until it is")
            self._apply(run, event, now)
        if isinstance(event, ActionProgress) and event.phase == "intent":
            self._save(run)

    # ---- one FIS, many proxies -----------------------------------------------------------

    def subscribe(self) -> Subscription:
        """Follow the store's change feed (experiments and identities changed by any proxy)."""
        return self.fleet.subscribe(self._on_change, self._on_notice)

    def _on_notice(self, kind: str, key: str, data: dict[str, Any]) -> None:
        """A notice that carries what changed (a save, a stop request, an identity) on any
        proxy: taken in without reading the store (a thousand proxies, one message)."""
        if kind == IDENTITY_CHANGES:
            return self.identities.changed(key, data)
        with self._lock:
            run = self._runs.get(key)
            stored = self.fleet.from_notice(data, (run.experiment, run.state) if run else None)
            if stored is not None:
                self._mirror(stored, self._clock())
                self.rules.publish()
        if stored is None:  # one this version cannot read, or a stop of one not known here
            self._on_change(kind, key)

    def _on_change(self, kind: str, key: str | None) -> None:
        try:
            if kind == IDENTITY_CHANGES:
                self.identities.changed(key)
            elif kind == EXPERIMENT_CHANGES:
                self.sync(key)
        except StoreUnavailable as e:
            # Missed: the store thread resyncs every experiment as soon as the store answers.
            self._resync_due = True
            log.debug("change feed: the store is unavailable (%s); resyncing once it answers", e)

    def resync(self) -> None:
        """The periodic safety net under the change feed (a notice lost, or the store's data
        lost): one small read of the store's data version, and a full `sync` only if it moved
        since the last one. StoreUnavailable if the store cannot say."""
        version = self.fleet.data_version()
        if self._synced and version == self._synced_version:
            return
        self.sync()
        self._synced_version, self._synced = version, True

    def sync(self, experiment_id: str | None = None) -> None:
        """Bring what other proxies changed into this one: one experiment, or (None) every
        active one (a resync). Blocking reads, outside the lock. An experiment this proxy runs
        that the store lost (a Redis restarted without its data) is saved again."""
        if experiment_id is None:
            self._resync_due = False
        try:
            loaded = self.fleet.load(experiment_id, known=list(self._runs))
        except StoreUnavailable:
            self._resync_due = True
            raise
        with self._lock:
            now = self._clock()
            for stored in loaded:
                self._mirror(stored, now)
            if experiment_id is None:
                found = {s.experiment.id for s in loaded}
                for run in self._runs.values():
                    if run.owned and run.id not in found:
                        run.version += 1
            self.rules.publish()

    def _mirror(self, stored: Stored, now: float) -> None:
        """Take in what the store says of an experiment (a read, or a save's notice). Saves
        are applied in their order: an older one arriving late (a notice and a read may cross)
        is ignored, and an experiment that ended here is never brought back by one."""
        exp_id, revision = stored.experiment.id, stored.state.revision
        run = self._runs.get(exp_id)
        if run is not None and run.owned:
            stop = stored.stop
            ended = stored.experiment.state
            if stop is None and ended.status in TERMINAL:
                # Ended by another proxy that held the schedule meanwhile (a store that lost
                # its leases: a Redis restarted without its data). An end is final: this proxy
                # ends it the same way, through the one end path (its faults off, its resource
                # actions undone).
                stop = StopRequest(status=ended.status, reason=ended.reason or STOPPED,
                                   error=ended.error.model_dump(by_alias=True, exclude_none=True)
                                   if ended.error else None)
            if stop is not None and run.status in STOPPABLE:
                self._apply(run, Stop(stop), now)
            return
        if revision < (run.state.revision if run is not None else 0) or (
                run is None and self._ended.covers(exp_id, revision)):
            return
        if stored.experiment.state.status in TERMINAL:
            if run is not None:
                self._forget(run, revision)
            return
        if run is None:
            # First asks for its lease a lifetime of it from now (its holder just saved it, mostly:
            # a thousand proxies must not all ask at its start), then when it would expire.
            run = self._runs[exp_id] = _Run(stored.experiment, stored.state,
                                            next_claim=now + self.fleet.lease_ttl * random.uniform(1.0, 1.05))
        else:
            run.experiment, run.state = stored.experiment, stored.state
        # Taking the schedule over goes on counting saves from here.
        run.version = run.saved = revision
        if stored.stop is not None:
            run.stop_request = stored.stop
        self._reconcile(run, now)

    def _forget(self, run: _Run, revision: int) -> None:
        """An experiment that ended: no rule left, remembered as ended at `revision`."""
        self.rules.deactivate_all(run.id)
        del self._runs[run.id]
        self._ended.add(run.id, revision)

    def _reconcile(self, run: _Run, now: float) -> None:
        """This proxy's rules for an experiment it mirrors: its running actions not past their
        planned end (a stale or silent store cannot keep a fault on), none once a stop was asked."""
        wanted = mirrored_actions(run.experiment, run.state, now, run.stop_request is not None)
        active = self.rules.active(run.id)
        for name in active - wanted:
            self.rules.deactivate(run.id, name)
        for name in wanted - active:
            self.rules.activate(run.id, name, run.experiment.actions[name], run.state)

    def _claim_leases(self) -> None:
        """Renew the leases of the schedules this proxy runs, try to take those nobody runs;
        the store calls outside the lock, their outcome applied under it. A schedule is taken
        over from where the store says it is, read once the lease is ours: what this proxy
        mirrored may be older (it may even have ended: nothing is taken over then)."""
        with self._lock:
            now = self._clock()
            ttl = self.fleet.lease_ttl
            due = [r for r in self._runs.values() if r.status not in TERMINAL and (
                now - r.lease_renewed >= ttl / 3 if r.owned else now >= r.next_claim)]
        held: list[tuple[_Run, bool, list[Stored]]] = []
        for run in due:
            run.next_claim = now + min(CLAIM_SECONDS, ttl / 3)
            try:
                left = self.fleet.claim(run.id)
                held.append((run, left == 0.0, self.fleet.load(run.id) if left == 0.0 and not run.owned else []))
            except StoreUnavailable as e:
                if run.owned and not announced(e):  # nobody can take it over either: carry on
                    log.warning("experiment %s: cannot renew its lease (%s); running on", run.id, e)
                continue
            if left:  # just after its expiry, spread a little: one proxy takes it, at once
                run.next_claim = now + min(left, ttl) + random.uniform(0.0, 0.05) * ttl
        ended = []
        with self._lock:
            for run, ours, stored in held:
                if ours and not run.owned:
                    # Its holder may have ended it and let the lease go before this proxy heard
                    # of the end: resuming a stale copy would save it over the end.
                    for fresh in stored:  # none if the store lost it: taken over as known here
                        self._mirror(fresh, now)
                if self._runs.get(run.id) is not run:
                    if ours:
                        ended.append(run.id)
                    continue
                if ours:
                    run.lease_renewed = now
                    if not run.owned:
                        log.info("experiment %s: this proxy runs its schedule", run.id)
                        run.owned = True
                        self._apply(run, TakeOver(), now)
                        if run.stop_request is not None:
                            self._apply(run, Stop(run.stop_request), now)
                elif run.owned:
                    log.warning("experiment %s: another proxy runs its schedule now", run.id)
                    run.owned = False
                    self.runner.abandon(run.id)  # without undoing: the new holder carries on
            self.rules.publish()
        for experiment_id in ended:  # it had ended meanwhile: the lease goes back at once
            self.fleet.release(experiment_id)

    # ---- stop conditions (the upstream thread) -------------------------------------------

    def watched_alarms(self) -> dict[str, list[str]]:
        """Experiment id -> the alarm ARNs of its stop conditions, for active experiments."""
        with self._lock:
            return {
                run.id: arns for run in self._runs.values()
                if run.owned and run.status in STOPPABLE and (arns := alarm_arns(run.experiment.stop_conditions))
            }

    def on_alarms(self, firing: set[str]) -> None:
        """Stop every experiment whose stop-condition alarm is among `firing`."""
        stopped = []
        with self._lock:
            for exp_id, arns in self.watched_alarms().items():
                fired = [a for a in arns if a in firing]
                run = self._runs[exp_id]
                if fired:
                    log.info("experiment %s: stop condition %s is in ALARM", exp_id, fired[0])
                    self._apply(run, Stop(StopRequest(status="stopped", reason=HALTED_REASON), HALTED_REASON,
                                          condition=f"Stop condition {fired[0]} is in ALARM state."),
                                self._clock())
                    stopped.append(run)
        for run in stopped:
            try:
                self._save(run)
            except SaveError as e:  # the faults ended; the store thread saves it later
                log.error("%s; retrying", e)

    def close(self) -> None:
        """Save what is still unsaved, so a restart resumes from here, and hand the schedules
        over. Resource actions under way are abandoned, not undone: whoever resumes them does."""
        with self._lock:
            self._closing = True
            runs = list(self._runs.values())
        self.runner.close()
        for run in runs:
            try:
                self._save(run)
            except SaveError as e:
                log.error("%s", e)
                continue
            if run.owned:
                try:  # another proxy on the store takes the schedule over at once
                    self._store.release_lease(lease_name(run.id), self.proxy_id)
                except Exception as e:
                    log.debug("experiment %s: lease not released: %s", run.id, e)
        self.identities.save()

    # ---- effects -------------------------------------------------------------------------

    def _apply(self, run: _Run, event: Event | lifecycle.Step, now: float) -> None:
        """Feed an event to the lifecycle (or take a step it made) and carry out what it says.
        Under the lock: memory work and hand-offs only."""
        step = event if isinstance(event, lifecycle.Step) else lifecycle.step(
            run.experiment, run.state, now, event, self._account)
        run.experiment, run.state = step.experiment, step.state
        for effect in step.effects:
            match effect:
                case lifecycle.Log(log_type, details):
                    run.logs.append((log_type, now, dict(details)))
                case lifecycle.Activate(name):
                    self.rules.activate(run.id, name, run.experiment.actions[name], run.state)
                case lifecycle.Deactivate(name):
                    self.rules.deactivate(run.id, name)
                case lifecycle.Resolve():
                    self.runner.resolve(run.experiment, run.state.region, random.Random(self._rng.random()),
                                        strict=run.state.fail_unperformable)
                case lifecycle.Perform(name):
                    self.runner.perform(run.experiment, run.state, name, rng=random.Random(self._rng.random()))
                case lifecycle.Undo(name):
                    self.runner.undo(run.id, name)
                case lifecycle.DeliverLogs():
                    run.deliver = True
                case lifecycle.QueueReport():
                    run.report = True
        if any(isinstance(effect, lifecycle.Save) for effect in step.effects):
            run.version += 1
        self.rules.publish()

    def _queue_report(self, run: _Run, experiment: Experiment) -> None:
        """FIS's report of an ended experiment, made later by reports/delivery.py; if the store
        refuses now, that module's sweep queues it (the end itself is saved)."""
        try:
            reportstate.queue_report(self._store, experiment, self._clock())
        except Exception as err:
            log.warning("experiment %s: report not queued yet (%s)", run.id, err)
        with self._lock:
            run.report = False

    def _save(self, run: _Run) -> None:
        """Write the run's log records, then the experiment and its state, as they are now;
        SaveError if the store refused (kept, and saved again later). Store I/O: never under
        the engine's lock; saves of one engine go one at a time, in order."""
        with self._save_lock:
            with self._lock:
                if not run.unsaved:
                    return
                experiment, state, version = run.experiment, run.state, run.version
                records, deliver, report = list(run.logs), run.deliver, run.report
            written = 0
            try:
                for log_type, t, details in records:
                    self._log.write(run.id, log_type, t, **details)
                    written += 1
                if deliver:
                    self.deliveries.record(run.id)
                # Announced by the store with the save (ports.ExperimentStore.put_experiment).
                self._store.put_experiment(experiment, state.model_copy(update={"revision": version}))
            except Exception as e:
                with self._lock:
                    del run.logs[:written]
                raise SaveError(f"could not save experiment {run.id}: {e}") from e
            with self._lock:
                del run.logs[:written]
                run.saved = max(run.saved, version)
                if deliver:
                    run.deliver = False
                    self.deliveries.queue(run.id)
            if report:
                self._queue_report(run, experiment)
