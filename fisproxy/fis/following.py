"""Following what the other proxies on the store change: the change feed, and the resync under it.

Which thread calls what:

| thread | calls | waits on |
|---|---|---|
| the store's change listener | `on_notice`: a notice that carries what changed (a save, a stop request, an identity), taken in without reading the store; `on_change`: one without, `sync(id)` | the store, for notices without data |
| `fisproxy-housekeeping` (`fisproxy/housekeeping.py`) | `resync`: one small read of the store's data version, `sync()` of every active experiment only if it moved | the store |
| `fisproxy-store` (`Engine.persist`) | `redo_failed`: a sync the store could not answer, done again | the store |

The reads are blocking and made with no engine lock held (`fleet.Fleet`); what they bring is
handed to the engine (`Mirror`), which applies it under its lock, in the order of the saves
(`RunState.revision`: a notice and a read that cross never bring an older save back).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from fisproxy.fis.fleet import IDENTITY_CHANGES, Fleet, SharedIdentities, Stored
from fisproxy.fis.ports import EXPERIMENT_CHANGES, StoreUnavailable, Subscription

log = logging.getLogger(__name__)


class Mirror(Protocol):
    """Where what is read goes (the engine): applied under its lock, never waiting there."""

    def known(self) -> list[str]:
        """The experiments this proxy knows (read again by a full sync, whatever their status)."""
        ...

    def take_in(self, loaded: list[Stored], *, complete: bool) -> None:
        """What was read; `complete`: every active experiment of the store was read."""
        ...

    def take_in_notice(self, experiment_id: str, data: dict[str, Any]) -> bool:
        """A notice's data; False if it cannot be taken in without reading the store."""
        ...


class ChangeFollower:
    def __init__(self, fleet: Fleet, identities: SharedIdentities, mirror: Mirror) -> None:
        self._fleet = fleet
        self._identities = identities
        self._mirror = mirror
        self._resync_due = False  # a change was missed (the store was down): sync everything
        self._synced_version: str | None = None
        self._synced = False  # a resync has read the store at `_synced_version`

    def subscribe(self) -> Subscription:
        """Follow the store's change feed (experiments and identities changed by any proxy)."""
        return self._fleet.subscribe(self.on_change, self.on_notice)

    def on_notice(self, kind: str, key: str, data: dict[str, Any]) -> None:
        """A notice that carries what changed (a save, a stop request, an identity) on any
        proxy: taken in without reading the store (a thousand proxies, one message)."""
        if kind == IDENTITY_CHANGES:
            return self._identities.changed(key, data)
        if not self._mirror.take_in_notice(key, data):
            # One this version cannot read, or a stop of one not known here: read it.
            self.on_change(kind, key)

    def on_change(self, kind: str, key: str | None) -> None:
        """A notice without what changed: read it (None: maybe several, read them all)."""
        try:
            if kind == IDENTITY_CHANGES:
                self._identities.changed(key)
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
        version = self._fleet.data_version()
        if self._synced and version == self._synced_version:
            return
        self.sync()
        self._synced_version, self._synced = version, True

    def sync(self, experiment_id: str | None = None) -> None:
        """Bring what other proxies changed into this one: one experiment, or (None) every
        active one and those this proxy knows (a resync). Blocking reads, outside the engine's
        lock. StoreUnavailable if the store cannot answer (a full sync is then due)."""
        if experiment_id is None:
            self._resync_due = False
        try:
            loaded = self._fleet.load(experiment_id, known=self._mirror.known())
        except StoreUnavailable:
            self._resync_due = True
            raise
        self._mirror.take_in(loaded, complete=experiment_id is None)

    def redo_failed(self) -> None:
        """The store thread: a sync missed while the store was unavailable, tried again."""
        if not self._resync_due:
            return
        try:
            self.sync()
        except StoreUnavailable as e:
            log.debug("resync: the store is still unavailable (%s)", e)
