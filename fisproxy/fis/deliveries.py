"""Experiment logs delivered upstream once the experiment ended, as its `logConfiguration` asks.

The engine queues an ended experiment (`queue`, once its final state and the record of the
pending delivery are saved); the upstream thread (`fis/loops.py`) takes the next one (`next`),
delivers its records (`deliver`: CloudWatch Logs, S3; blocking) and, when that worked, forgets
it (`delivered`). The store keeps a `log-delivery` document per experiment until then, so a
crash before delivery delivers it after the restart (`resume`), once.

Logs go out with the experiment role's credentials, as FIS does (`explog.upload`): the role is
assumed for the delivery; a role that cannot be assumed is a failure like any other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fisproxy.fis import explog
from fisproxy.fis.failure import Failure
from fisproxy.fis.ports import FisStore
from fisproxy.fis.runstate import RunState
from fisproxy.fis.upstream import RoleSessions

LOG_DELIVERY_DOC = "log-delivery"  # ended experiments whose logs still have to go upstream


class LogDeliveries:
    def __init__(self, store: FisStore, sessions: RoleSessions, *, account_id: str,
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._sessions = sessions  # the experiment roles, assumed on the upstream
        self._account = account_id
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: list[str] = []

    def record(self, experiment_id: str) -> None:
        """Remember in the store that `experiment_id`'s logs must go out (before it is saved
        as ended: a crash then still delivers them)."""
        self._store.put_doc(LOG_DELIVERY_DOC, experiment_id, {"ended": self._clock()})

    def queue(self, experiment_id: str) -> None:
        with self._lock:
            if experiment_id not in self._queue:
                self._queue.append(experiment_id)

    def resume(self) -> None:
        """At start-up: the deliveries a previous run had not done."""
        for experiment_id in self._store.list_docs(LOG_DELIVERY_DOC):
            self.queue(experiment_id)

    def next(self) -> str | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else None

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._queue)

    def delivered(self, experiment_id: str) -> None:
        self._store.delete_doc(LOG_DELIVERY_DOC, experiment_id)

    def deliver(self, experiment_id: str) -> list[str]:
        """Send an ended experiment's records where its logConfiguration says, with its role's
        credentials; the failures. Blocking (the upstream)."""
        e = self._store.get_experiment(experiment_id)
        if e is None or e.log_configuration is None:
            return []
        state = self._store.get_runtime(experiment_id) or RunState()
        if not e.role_arn:
            return [f"experiment {experiment_id} has no role to deliver its logs with"]
        try:
            session = self._sessions.session(e.role_arn, state.region, experiment_id)
        except Failure as err:  # the role cannot be assumed
            return [err.reason]
        return explog.upload(
            self._store.logs(experiment_id), experiment_id=experiment_id,
            log_configuration=e.log_configuration, region=state.region,
            account_id=self._account, clients=session, t=self._clock())
