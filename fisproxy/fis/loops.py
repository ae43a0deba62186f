"""The engine's background work, on its own threads (never the proxy's event loop).

- `fisproxy-engine`: `Engine.step()` every 0.1 s: lifecycle steps and planned ends, in memory
  (never waits on the store or the upstream, so faults end on time whatever they do).
- `fisproxy-store`: `Engine.persist()` every 0.1 s: leases, saves, log records, identities.
- `fisproxy-upstream`: the calls that wait on the upstream: stop-condition alarms every
  `alarm_poll_seconds`, and delivering the logs of ended experiments (CloudWatch Logs, S3).
- `fisproxy-housekeeping`: every `HOUSEKEEPING_SECONDS`, the owner's `housekeeping` callback
  (`fisproxy/housekeeping.py`: this proxy in the fleet listing, shared metrics, the periodic
  resync with the store).

Each loop is its own error boundary: an exception is logged and the loop goes on. `stop()`
asks them all to end and waits for them; the engine is then closed by its owner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fisproxy.fis.engine import Engine
from fisproxy.fis.outage import log_failure

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1
PERSIST_SECONDS = 0.1
UPSTREAM_SECONDS = 0.5  # how soon an ended experiment's logs start going out
HOUSEKEEPING_SECONDS = 2.0


class EngineLoops:
    def __init__(self, engine: Engine, *, alarm_poll_seconds: float = 5.0,
                 housekeeping: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.alarm_poll_seconds = alarm_poll_seconds
        self.housekeeping = housekeeping
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next_poll = 0.0

    def start(self) -> None:
        loops = [("fisproxy-engine", self._tick_loop), ("fisproxy-store", self._store_loop),
                 ("fisproxy-upstream", self._upstream_loop)]
        if self.housekeeping is not None:
            loops.append(("fisproxy-housekeeping", self._housekeeping_loop))
        for name, body in loops:
            thread = threading.Thread(target=self._guarded(body), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _guarded(self, body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not self._stopping.is_set():
                try:
                    body()
                except Exception as e:  # the loop's error boundary: log, keep experiments moving
                    log_failure(log, e, "engine background step failed")
                    self._stopping.wait(1.0)
        return run

    def _tick_loop(self) -> None:
        self.engine.step()
        self._stopping.wait(TICK_SECONDS)

    def _store_loop(self) -> None:
        self.engine.persist()
        self._stopping.wait(PERSIST_SECONDS)

    def _housekeeping_loop(self) -> None:
        assert self.housekeeping is not None
        self.housekeeping()
        self._stopping.wait(HOUSEKEEPING_SECONDS)

    def _upstream_loop(self) -> None:
        self.upstream_round()
        self._stopping.wait(min(UPSTREAM_SECONDS, self.alarm_poll_seconds))

    def upstream_round(self) -> None:
        """What the upstream thread does each time round: stop-condition alarms when due, the
        log deliveries waiting."""
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self.alarm_poll_seconds
            watched = self.engine.watched_alarms()
            if watched:
                arns = {a for v in watched.values() for a in v}
                self.engine.on_alarms(self.engine.poller.firing(arns))
        deliveries = self.engine.deliveries
        while (experiment_id := deliveries.next()) is not None:
            failures = deliveries.deliver(experiment_id)
            if failures:
                log.warning("experiment %s: log delivery failed (retried at next start): %s",
                            experiment_id, "; ".join(failures))
            else:
                deliveries.delivered(experiment_id)


def drive(engine: Engine, resolutions_timeout: float = 60.0) -> None:
    """What the loops do in one round, on the calling thread (tests, tools): persist, step,
    wait for the target resolutions that started, step, persist."""
    engine.persist()
    engine.step()
    engine.runner.wait_resolutions(resolutions_timeout)
    engine.step()
    engine.persist()
