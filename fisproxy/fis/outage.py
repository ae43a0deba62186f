"""A store outage in the log: one warning when it starts, one when it ends.

A Redis that is down fails every call made to it: the engine's tick (ten a second), lease
renewals, the heartbeat, housekeeping, the request recorder. Logged at every failure, that was a
traceback per tick (188 KB in 5 s per proxy). Instead the store reports the outcome of its
calls to one `StoreOutage`, which logs a WARNING when calls start failing and one when they
work again, saying how long the outage lasted and how many calls failed. Callers log a failure
the store has announced (`announced(error)`) at DEBUG, without a traceback: `log_failure`.

A store that refuses writes but answers reads (Redis out of memory, or read-only) must not
flap between the two lines: an outage ends only once no call has failed for `settle_seconds`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fisproxy.fis.ports import StoreUnavailable

log = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0


class StoreOutage:
    """The availability of one store, as its calls report it. Thread-safe."""

    def __init__(self, name: str, *, settle_seconds: float = SETTLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.name = name  # says which store, never its password
        self._settle = settle_seconds
        self._clock = clock
        self._log = logger
        self._lock = threading.Lock()
        self._began: float | None = None  # when the outage began; None while the store answers
        self._last_failure = 0.0
        self._back: float | None = None  # the first success since the last failure
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._began is not None

    def failed(self, error: BaseException) -> None:
        """A call failed because the store is unavailable."""
        now = self._clock()
        with self._lock:
            self._last_failure, self._back = now, None
            self._failures += 1
            if self._began is not None:
                return
            self._began, self._failures = now, 1
        self._log.warning("fisproxy: %s is unavailable (%s): carrying on with what this proxy "
                          "knows and retrying; one line when it answers again", self.name, error)

    def answered(self) -> None:
        """A call succeeded. Cheap when there is no outage (called after every store call)."""
        if self._began is None:
            return
        now = self._clock()
        with self._lock:
            began = self._began
            if began is None:
                return
            if self._back is None:
                self._back = now
            if now - self._last_failure < self._settle:
                return
            length, failures = self._back - began, self._failures
            self._began = self._back = None
            self._failures = 0
        self._log.warning("fisproxy: %s answers again after %.1f s unavailable (%d calls failed)",
                          self.name, length, failures)


def announced(error: BaseException | None) -> bool:
    """Whether `error` is (or was caused by) a `StoreUnavailable`: an outage the store's
    `StoreOutage` has logged already."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, StoreUnavailable):
            return True
        error, seen = error.__cause__, seen + 1
    return False


def log_failure(logger: logging.Logger, error: BaseException, message: str, *args: object) -> None:
    """Log a failed store call: at DEBUG when it is part of an outage the store announced,
    else as an error with its traceback (a bug, or a store that does not announce)."""
    if announced(error):
        logger.debug(message + ": %s", *args, error)
    else:
        logger.error(message, *args, exc_info=error)
