"""One FIS, many proxies: what the proxies sharing a store tell each other through it.

Every proxy on a store applies the faults of every running action. Exactly one runs each
experiment's schedule (durations, startAfter, stop conditions, resource actions): the holder of
its lease (`experiment/<id>`), renewed every third of its lifetime. The others mirror what the
holder saves (the change feed, and a resync) and end each action's faults at its planned end by
their own clock (`mirrored_actions`: a stale or silent store cannot keep a fault on). A stop
asked on a proxy that does not hold the lease ends the faults there at once and is handed to the
holder as a stop request in the store; every proxy that reads it ends the faults too. When a
holder dies its lease expires and another proxy takes the schedule over where the store says it
is (planned ends are absolute: it ends on time).

What this costs the store does not grow with history. A save is announced by the store with
what was saved, a stop request and a learned identity with what they are: a proxy takes them in
without reading (`ChangeFollower.on_notice`, `following.py`), in the order of the saves (`RunState.revision`). The
resync under the change feed reads the store's data version, and the active experiments only
when it moved (`data_version`, `load`). A mirror asks for a schedule's lease about when the
holder's would expire (`claim` says when), not every half second.

`Fleet` is the store side of that (blocking calls, made with no engine lock held): leases, stop
requests, reading what changed. `SharedIdentities` shares the roles learned from STS answers.
Which thread calls what is in `fis/engine.py`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fisproxy.fis.identities import Identities
from fisproxy.fis.lifecycle import ACTIVE, STOPPABLE, STOPPING, TERMINAL, is_resource
from fisproxy.fis.models import Experiment, ExperimentState
from fisproxy.fis.outage import announced
from fisproxy.fis.ports import (
    EXPERIMENT_CHANGES,
    ChangeCallback,
    DataCallback,
    FleetStore,
    SaveError,
    StoreUnavailable,
    Subscription,
)
from fisproxy.fis.runstate import RunState, StopRequest

log = logging.getLogger(__name__)

STOP_REQUEST_DOC = "stop-request"  # a stop asked on a proxy that does not run the schedule
IDENTITY_DOC = "identity"
IDENTITY_CHANGES = "identity"  # change-feed kind (experiments: ports.EXPERIMENT_CHANGES)
LEASE_TTL_SECONDS = 6.0  # a schedule holder that stops renewing is replaced after this


@dataclass(frozen=True, slots=True)
class Stored:
    """An experiment as the store has it: the model, the engine's state, a pending stop request."""

    experiment: Experiment
    state: RunState
    stop: StopRequest | None


def mirrored_actions(experiment: Experiment, state: RunState, now: float, stop_asked: bool) -> set[str]:
    """The actions whose faults a proxy that does not run the schedule applies at `now`:
    running, not past their planned end, the experiment not asked to stop."""
    if experiment.state.status != "running" or stop_asked:
        return set()
    return {name for name, a in experiment.actions.items()
            if a.state.status == "running" and not is_resource(a.action_id)
            and ((end := state.ends.get(name)) is None or end > now)}


def lease_name(experiment_id: str) -> str:
    return f"experiment/{experiment_id}"


class Ended:
    """Experiments that ended on this proxy -> the revision they ended at: a notice or a read
    of an older save, arriving late, must not bring one back. Bounded: the oldest go first."""

    def __init__(self, kept: int = 4096) -> None:
        self._kept = kept
        self._revisions: OrderedDict[str, int] = OrderedDict()

    def add(self, experiment_id: str, revision: int) -> None:
        self._revisions[experiment_id] = revision
        self._revisions.move_to_end(experiment_id)
        while len(self._revisions) > self._kept:
            self._revisions.popitem(last=False)

    def covers(self, experiment_id: str, revision: int) -> bool:
        """Whether a save at `revision` is one from before the experiment ended here."""
        return revision <= self._revisions.get(experiment_id, -1)


class Fleet:
    def __init__(self, store: FleetStore, proxy_id: str, lease_ttl: float = LEASE_TTL_SECONDS) -> None:
        self.store = store
        self.proxy_id = proxy_id  # the lease holder name of this proxy
        self.lease_ttl = lease_ttl

    def claim(self, experiment_id: str) -> float:
        """Take or renew the experiment's lease: 0.0 if this proxy holds it now, else the
        seconds until the holder's lease expires unless renewed (when to try again).
        StoreUnavailable if the store cannot say."""
        return self.store.claim_lease(lease_name(experiment_id), self.proxy_id, self.lease_ttl)

    def release(self, experiment_id: str) -> None:
        """Give the lease up and forget the stop request of an experiment that ended here."""
        try:
            self.store.release_lease(lease_name(experiment_id), self.proxy_id)
            self.store.delete_doc(STOP_REQUEST_DOC, experiment_id)
        except Exception as e:  # the lease expires anyway; the request names an ended run
            log.debug("experiment %s: could not tidy up its lease: %s", experiment_id, e)

    def ask_to_stop(self, experiment_id: str, final: StopRequest) -> Experiment:
        """Hand a stop to whichever proxy runs the schedule, through the store: the experiment,
        `stopping` (as it was if it already ended). KeyError if unknown, SaveError if the
        request could not be saved."""
        stored = self.store.get_experiment(experiment_id)
        if stored is None:
            raise KeyError(experiment_id)
        if stored.state.status not in ACTIVE:
            return stored
        try:
            self.store.put_doc(STOP_REQUEST_DOC, experiment_id, final.model_dump())
            self.store.publish_change(EXPERIMENT_CHANGES, experiment_id, {"stop": final.model_dump()})
        except StoreUnavailable:
            raise
        except Exception as e:
            raise SaveError(f"could not save the stop of experiment {experiment_id}: {e}") from e
        if stored.state.status in STOPPABLE:
            stored.state = ExperimentState(status="stopping", reason=STOPPING)
        return stored

    def data_version(self) -> str | None:
        """The store's data version: the same as at the last resync means nothing to read."""
        return self.store.data_version()

    def load(self, experiment_id: str | None, known: Iterable[str] = ()) -> list[Stored]:
        """One experiment, or (None) the active ones and those in `known` (to see them end):
        what runs, never the history. Blocking."""
        if experiment_id is None:
            found = self.store.list_active_experiments()
            for missing in set(known) - {e.id for e in found}:
                if (e := self.store.get_experiment(missing)) is not None:
                    found.append(e)
        else:
            one = self.store.get_experiment(experiment_id)
            found = [one] if one is not None else []
        out = []
        for e in found:
            stop = None
            if e.state.status not in TERMINAL and (doc := self.store.get_doc(STOP_REQUEST_DOC, e.id)):
                stop = StopRequest.model_validate(doc)
            out.append(Stored(e, self.store.get_runtime(e.id) or RunState(), stop))
        return out

    def subscribe(self, callback: ChangeCallback, with_data: DataCallback) -> Subscription:
        """Follow what changes: `with_data` takes the notices that carry what changed (a save,
        a stop request, an identity: nothing to read), `callback` the others."""
        return self.store.subscribe((EXPERIMENT_CHANGES, IDENTITY_CHANGES), callback, with_data)

    @staticmethod
    def from_notice(data: dict[str, Any], known: tuple[Experiment, RunState] | None) -> Stored | None:
        """What an experiment's notice carries: a save (`ports.ExperimentStore.put_experiment`)
        or a stop request (`ask_to_stop`) of the experiment `known` here. None if it cannot be
        taken in so (a stop of one not known here, something this version cannot read): read
        the store instead."""
        try:
            if "stop" in data and known is not None:
                return Stored(*known, StopRequest.model_validate(data["stop"]))
            if "experiment" in data:
                runtime = data.get("runtime")
                return Stored(Experiment.model_validate(data["experiment"]),
                              RunState.model_validate(runtime) if runtime is not None else RunState(), None)
        except ValueError as e:
            log.debug("a change notice this version cannot read (%s); reading the store", e)
        return None


class SharedIdentities:
    """Who each access key belongs to, learned from STS answers on any proxy of the store.

    `learn` runs on the proxy's event loop (memory only: a deque is safe between threads);
    `save` on the engine's store thread; `load` / `changed` on the change feed's thread."""

    def __init__(self, store: FleetStore) -> None:
        self.store = store
        self.identities = Identities()
        self._unsaved: deque[tuple[str, str]] = deque()

    def learn(self, access_key: str, principal_arn: str) -> None:
        if self.identities.learn(access_key, principal_arn):
            self._unsaved.append((access_key, principal_arn))

    def load(self) -> None:
        for key, doc in self.store.list_docs(IDENTITY_DOC).items():
            if arn := doc.get("principalArn"):
                self.identities.learn(key, arn)

    def changed(self, key: str | None, data: dict[str, Any] | None = None) -> None:
        """Another proxy learned `key` (None: maybe several: read them all); its notice's
        `data`, when it carries it, is what it learned."""
        if key is None:
            self.load()
        elif (doc := data or self.store.get_doc(IDENTITY_DOC, key)) and isinstance(doc.get("principalArn"), str):
            self.identities.learn(key, doc["principalArn"])

    def save(self) -> None:
        """Write what was learned here, in order; stops at the first failure (tried again)."""
        while self._unsaved:
            key, arn = self._unsaved[0]
            try:
                self.store.put_doc(IDENTITY_DOC, key, {"principalArn": arn})
                self.store.publish_change(IDENTITY_CHANGES, key, {"principalArn": arn})
            except Exception as e:
                if not announced(e):  # (an outage the store announced once)
                    log.warning("could not save a learned identity (%s); trying again", e)
                return
            self._unsaved.popleft()
