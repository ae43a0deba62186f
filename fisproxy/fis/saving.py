"""What the engine knows of each experiment (`Run`), and saving what changed of it (`RunSaver`).

A save writes, in this order: the run's log records (the store and the JSON-lines file), the
record that its logs are still to be delivered (`deliveries.py`), then the experiment and its
`RunState` (announced by the store with the save, `ports.ExperimentStore.put_experiment`); then
it queues the log delivery and the FIS report. A save that fails keeps what was not written
(SaveError): the next save writes it.

Store I/O: never under the engine's lock, which `RunSaver` takes only to read a run and to mark
what was saved; the saves of one engine go one at a time, in order. Who saves (which thread
calls what: `engine.py`): the store thread, every run with unsaved changes (`save_changed`);
the control API workers and the upstream thread before they answer (start, stop, cancel, a stop
condition); a runner thread, an action's intent before it acts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fisproxy.fis import explog, reportstate
from fisproxy.fis.deliveries import LogDeliveries
from fisproxy.fis.models import Experiment
from fisproxy.fis.ports import FisStore, SaveError
from fisproxy.fis.runstate import RunState, StopRequest

log = logging.getLogger(__name__)


@dataclass
class Run:
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


class RunSaver:
    def __init__(self, store: FisStore, experiment_log: explog.ExperimentLog, deliveries: LogDeliveries, *,
                 lock: threading.RLock, clock: Callable[[], float]) -> None:
        self._store = store
        self._log = experiment_log
        self._deliveries = deliveries
        self._lock = lock  # the engine's: held for memory work only
        self._clock = clock
        self._save_lock = threading.Lock()  # saves in order, one at a time (never under _lock)

    def save(self, run: Run) -> None:
        """Write the run's log records, then the experiment and its state, as they are now;
        SaveError if the store refused (kept, and saved again later)."""
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
                    self._deliveries.record(run.id)
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
                    self._deliveries.queue(run.id)
            if report:
                self._queue_report(run, experiment)

    def save_changed(self, runs: Iterable[Run]) -> None:
        """The store thread: save every run with unsaved changes; a save that keeps failing is
        said once in the log, and once when it works again."""
        for run in runs:
            if not run.unsaved:
                continue
            try:
                self.save(run)
            except SaveError as e:
                if not run.save_failing:
                    log.error("%s; retrying until it is saved", e)
                run.save_failing = True
            else:
                if run.save_failing:
                    log.warning("experiment %s: saved again", run.id)
                run.save_failing = False

    def _queue_report(self, run: Run, experiment: Experiment) -> None:
        """FIS's report of an ended experiment, made later by reports/delivery.py; if the store
        refuses now, that module's sweep queues it (the end itself is saved)."""
        try:
            reportstate.queue_report(self._store, experiment, self._clock())
        except Exception as err:
            log.warning("experiment %s: report not queued yet (%s)", run.id, err)
        with self._lock:
            run.report = False
