"""The experiment engine: the thin facade that runs the parts around the lifecycle.

The parts, each with one job:

- `lifecycle.py`: the experiment lifecycle, a pure function (events in, state and effects out).
- `activation.py`: running actions made into rules (from the action registry), and the
  immutable index the proxy reads per request.
- `runner.py`: target resolution and resource actions on worker threads, undone however the
  experiment ends, at most once.
- `fleet.py`: leases, the change feed and resync, stop requests: one FIS on many proxies.
- `following.py`: when and what to read of what other proxies changed (change notices, the
  resync), handed to this facade to mirror.
- `deliveries.py`: ended experiments' logs delivered upstream.
- `saving.py`: what this proxy knows of each experiment (`Run`), and saving what changed of it
  (log records first), one save at a time, never under the lock.

This facade holds the engine's lock, feeds events to the lifecycle and carries its effects out,
and has what changed saved. Which thread calls what:

| thread | calls | waits on |
|---|---|---|
| `fisproxy-engine` (`loops.py`, every 0.1 s) | `step`: lifecycle ticks, mirrors' planned ends | nothing: memory only |
| `fisproxy-store` (`loops.py`, every 0.1 s) | `persist`: leases, saves (`saving.py`), log records, identities, a resync that failed (`follower.redo_failed`) | the store (its calls time out) |
| `fisproxy-upstream` (`loops.py`) | `watched_alarms`, `on_alarms`, `deliveries` (`deliveries.py`) | the upstream, the store |
| control API workers | `start_experiment`, `stop_experiment`, `cancel_all`, `resolved_targets` | the store (a stop ends the faults first) |
| the store's change listener | `follower.on_notice` -> `take_in_notice` (what changed, carried by the notice), `follower.on_change` -> `follower.sync(id)` -> `take_in` | the store, for notices without data (read before the lock) |
| `fisproxy-housekeeping` (`fisproxy/housekeeping.py`) | `follower.resync`: the data version, `follower.sync()` -> `take_in` only if it moved | the store (read before the lock) |
| `fisproxy-action-N` (`runner.py`) | `worker_event` | an intent's save |
| the proxy's event loop | `rules.candidates`, `rules.other_candidates` (`activation.py`), `identities.learn` (`fleet.py`) | nothing: no lock, memory only |

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
from pathlib import Path
from typing import Any

from fisproxy.aws.call import AwsCall
from fisproxy.fis import explog, ids, lifecycle
from fisproxy.fis.activation import Rules
from fisproxy.fis.decide import decide
from fisproxy.fis.deliveries import LogDeliveries
from fisproxy.fis.faults import Fault
from fisproxy.fis.fleet import (
    LEASE_TTL_SECONDS,
    Ended,
    Fleet,
    SharedIdentities,
    Stored,
    lease_name,
    mirrored_actions,
)
from fisproxy.fis.following import ChangeFollower
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
from fisproxy.fis.ports import FleetStore, SaveError, StoreUnavailable
from fisproxy.fis.proxyfaults import Placement, Where
from fisproxy.fis.resources.scoped import ShardIterators
from fisproxy.fis.runner import ActionRunner
from fisproxy.fis.runstate import RunState, StopRequest
from fisproxy.fis.saving import Run, RunSaver
from fisproxy.fis.stopconditions import HALTED_REASON, AlarmPoller, alarm_arns
from fisproxy.fis.upstream import RoleSessions

log = logging.getLogger(__name__)

CLAIM_SECONDS = 0.5  # how often a proxy retries a claim the store could not answer


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
        self._saver = RunSaver(store, explog.ExperimentLog(store, state_dir), self.deliveries,
                               lock=self._lock, clock=clock)
        self._runs: dict[str, Run] = {}
        self._ended = Ended()  # forgotten here: a late notice or read must not revive one
        self.follower = ChangeFollower(self.fleet, self.identities, self)  # the change feed, resyncs
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
        run = Run(created.experiment, created.state, owned=True, lease_renewed=now, version=1)
        self.fleet.claim(exp_id)
        self._saver.save(run)  # not acknowledged (and not kept) unless saved
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
            self._saver.save(run)
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
                    self._saver.save(run)
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

    # ---- the faults of one call (memory only) -----------------------------------------------

    def match(self, call: AwsCall) -> list[Fault]:
        """The faults of this engine's rules for one request: latency faults first, then at most
        one error/disconnect (tests, tools; the proxy decides over `rules.candidates` and the
        Chaos API's rules together, in `proxy/inject.py`)."""
        return list(decide(call, self.rules.candidates(call), self._rng).faults)

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
        self.follower.redo_failed()
        with self._lock:
            runs = list(self._runs.values())
        self._saver.save_changed(runs)
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
            self._saver.save(run)

    # ---- one FIS, many proxies -----------------------------------------------------------

    def known(self) -> list[str]:
        """The experiments this proxy knows (`following.py` reads them again at a resync)."""
        return list(self._runs)

    def take_in(self, loaded: list[Stored], *, complete: bool) -> None:
        """What `following.py` read of the store, mirrored. `complete` (every active experiment
        was read): one this proxy runs that the store lost (a Redis restarted without its data)
        is saved again."""
        with self._lock:
            now = self._clock()
            for stored in loaded:
                self._mirror(stored, now)
            if complete:
                found = {s.experiment.id for s in loaded}
                for run in self._runs.values():
                    if run.owned and run.id not in found:
                        run.version += 1
            self.rules.publish()

    def take_in_notice(self, experiment_id: str, data: dict[str, Any]) -> bool:
        """A change notice that carries a save or a stop request (`following.py`), taken in
        without reading the store; False if it cannot be (a notice this version cannot read,
        or a stop of an experiment not known here): then it is read."""
        with self._lock:
            run = self._runs.get(experiment_id)
            stored = self.fleet.from_notice(data, (run.experiment, run.state) if run else None)
            if stored is None:
                return False
            self._mirror(stored, self._clock())
            self.rules.publish()
        return True

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
            run = self._runs[exp_id] = Run(stored.experiment, stored.state,
                                            next_claim=now + self.fleet.lease_ttl * random.uniform(1.0, 1.05))
        else:
            run.experiment, run.state = stored.experiment, stored.state
        # Taking the schedule over goes on counting saves from here.
        run.version = run.saved = revision
        if stored.stop is not None:
            run.stop_request = stored.stop
        self._reconcile(run, now)

    def _forget(self, run: Run, revision: int) -> None:
        """An experiment that ended: no rule left, remembered as ended at `revision`."""
        self.rules.deactivate_all(run.id)
        del self._runs[run.id]
        self._ended.add(run.id, revision)

    def _reconcile(self, run: Run, now: float) -> None:
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
        held: list[tuple[Run, bool, list[Stored]]] = []
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
                self._saver.save(run)
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
                self._saver.save(run)
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

    def _apply(self, run: Run, event: Event | lifecycle.Step, now: float) -> None:
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
