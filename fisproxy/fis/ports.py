"""What the FIS domain needs from storage, as small protocols.

The engine, the FIS API and the experiment log are written against these, never against a
concrete store: `fisproxy/store/` provides them (SQLite embedded, Redis for a fleet). Every
method is blocking and may raise on I/O errors; callers run them off the proxy's event loop.
A networked store that cannot be reached raises `StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from fisproxy.fis.models import Experiment, ExperimentTemplate
from fisproxy.fis.runstate import RunState


class StoreUnavailable(Exception):
    """The store cannot be reached, or refuses writes (a Redis that is down, out of memory or
    read-only). Callers keep enforcing what they already know and try again later; the control
    API answers 503. The message names the store, never its password."""


class SaveError(Exception):
    """A change could not be saved (disk full, store down). Nothing was acknowledged; what the
    engine already did in memory (faults ended by a stop) stands, and the save is retried."""


class DocStore(Protocol):
    """Small JSON documents by (kind, key): client tokens, tags, levers, identities..."""

    def put_doc(self, kind: str, key: str, value: dict[str, Any]) -> None: ...

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]: ...

    def delete_doc(self, kind: str, key: str) -> None: ...


class TemplateStore(Protocol):
    def put_template(self, t: ExperimentTemplate) -> None: ...

    def get_template(self, template_id: str) -> ExperimentTemplate | None: ...

    def delete_template(self, template_id: str) -> None: ...

    def list_templates(self) -> list[ExperimentTemplate]: ...


class ExperimentStore(Protocol):
    def put_experiment(self, e: Experiment, runtime: RunState | None = None) -> None:
        """Insert or replace `e` and, unless `runtime` is None, the engine's state beside it.
        In the same write, the store keeps its index of active experiments (`list_active_
        experiments`) and announces the save to the change feed (kind EXPERIMENT_CHANGES, key
        `e.id`): a save is never left unannounced, and notices come in the order of the saves.
        A store that can carry it (Redis) gives the notice what was saved as its data:
        `{"experiment": e's wire JSON, "runtime": RunState JSON or null}`."""
        ...

    def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    def get_runtime(self, experiment_id: str) -> RunState | None: ...

    def list_experiments(self) -> list[Experiment]: ...

    def list_active_experiments(self) -> list[Experiment]:
        """The experiments whose last saved status is not final (ACTIVE_STATUSES), in no
        particular order, read from an index the store keeps: the cost of reading what runs does
        not grow with the experiments that ended."""
        ...


class LogStore(Protocol):
    def append_log(self, experiment_id: str, record: dict[str, Any]) -> None: ...

    def logs(self, experiment_id: str) -> list[dict[str, Any]]: ...


class FisStore(DocStore, TemplateStore, ExperimentStore, LogStore, Protocol):
    """Everything the FIS domain stores."""

    def data_version(self) -> str | None:
        """A token that changes whenever an experiment or a document is written or deleted, and
        when the store loses its data; None on a store where neither was ever written. A reader
        that sees the token it saw before knows that none of them changed in between: the
        periodic resync costs one small read when nothing changed, whatever the history."""
        ...


class LeaseStore(Protocol):
    """Named leases with expiry: at most one holder per name at a time, across every process
    on the store (one experiment's schedule runs on one proxy). A holder that dies simply stops
    renewing; its lease expires after `ttl_seconds`."""

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take `name` for `holder` until `ttl_seconds` from now, or renew it if `holder`
        already has it. False if another holder's lease has not expired. Atomic."""
        ...

    def claim_lease(self, name: str, holder: str, ttl_seconds: float) -> float:
        """`acquire_lease`, saying when to try again: 0.0 if `holder` has the lease now, else
        the seconds until the other holder's lease expires unless it renews it: a proxy waiting
        to take a schedule over asks again about when it could take it, not twice a second."""
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give `name` up if `holder` holds it; a lease someone else took over is left alone."""
        ...

    def lease_holder(self, name: str) -> str | None:
        """Who holds `name` now; None if nobody (or the lease expired)."""
        ...


EXPERIMENT_CHANGES = "experiment"
"""The change-feed kind of experiments: `put_experiment` announces each save with it."""

ChangeCallback = Callable[[str, str | None], None]
"""Called as `callback(kind, key)` when (kind, key) changed; `key` None means "changes of
this kind may have been missed (a reconnection, a subscriber that fell behind): read them all
again"."""

DataCallback = Callable[[str, str, dict[str, Any]], None]
"""Called as `with_data(kind, key, data)` for a notice that carries what changed (`data`, a
JSON object): the subscriber takes it in without reading the store."""


class Subscription(Protocol):
    def close(self) -> None:
        """No more callbacks after this returns (one already running may finish)."""
        ...


class ChangeFeed(Protocol):
    """"Something changed" notices between the processes sharing a store. An optimisation on
    top of reading the store: a subscriber that resyncs periodically (`data_version`, then
    `list_active_experiments` if it changed) stays correct when a notice is lost."""

    def publish_change(self, kind: str, key: str, data: dict[str, Any] | None = None) -> None:
        """Tell every subscriber of `kind` (in every process, this one included) that the
        record `key` changed; `data`, if given, is what changed (small JSON), which a store
        that can carry it hands to `with_data` subscribers. Call it after the write is
        acknowledged."""
        ...

    def subscribe(self, kinds: Iterable[str], callback: ChangeCallback,
                  with_data: DataCallback | None = None) -> Subscription:
        """Call `callback` for each change of one of `kinds`, on a background thread (never
        the event loop), one call at a time, in publication order. Right after subscribing,
        and after a reconnection, it may be called with key None for each kind.

        With `with_data`, a notice that carries what changed is given to `with_data` instead
        (Redis carries it: a thousand proxies get one message instead of each reading the
        store back); notices without data (all of SQLite's: reading the file costs what the
        notice would) go to `callback`, which reads the store."""
        ...


class FleetStore(FisStore, LeaseStore, ChangeFeed, Protocol):
    """What the engine needs to share experiments with other proxies on the same store."""
