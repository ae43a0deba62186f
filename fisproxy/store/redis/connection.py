"""One Redis store's connection to the server, and what every part of the store shares: the
client, Redis errors made into `StoreUnavailable`, the Lua scripts, JSON encoding.

Errors: a Redis that cannot be reached (at construction or later), is out of memory, read-only
or refuses writes raises `StoreUnavailable`, whose message names the URL without its password.
Once the server has answered, every outcome is reported to `outage` (`fis/outage.py`): an
outage is one warning when it starts and one when it ends.
Reads, and writes that are safe to repeat, are tried once more on a fresh connection when the
old one turns out to be closed (a Redis restart); appends (logs, request records, counters) are
not, so an ambiguous failure never writes them twice.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis import exceptions as rx  # (its ConnectionError and TimeoutError are not the builtins)
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from fisproxy.fis.outage import StoreOutage
from fisproxy.fis.ports import StoreUnavailable
from fisproxy.store.url import redacted

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 10.0
HEALTH_CHECK_SECONDS = 10  # a connection idle this long is pinged before use
MIN_SERVER_VERSION = (5, 0)  # scripts replicated by effects (TIME before writes)

# Failures of the store rather than bugs: the server is gone, full, read-only or refuses.
_UNAVAILABLE: tuple[type[rx.RedisError], ...] = (
    rx.ConnectionError, rx.TimeoutError, rx.OutOfMemoryError, rx.ReadOnlyError, rx.NoPermissionError,
    rx.ClusterDownError, rx.TryAgainError,
)
_UNAVAILABLE_CODES = ("MISCONF", "BUSY", "NOREPLICAS")  # ResponseErrors redis-py does not map


class Connection:
    """The client of one store (a pool of connections, thread-safe) and how it is used."""

    def __init__(self, url: str) -> None:
        self.url = redacted(url)  # the only form of the URL this object keeps or shows
        try:
            self.redis: redis.Redis = redis.Redis.from_url(
                url, decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_timeout=COMMAND_TIMEOUT_SECONDS,
                socket_keepalive=True, health_check_interval=HEALTH_CHECK_SECONDS,
                retry=Retry(NoBackoff(), 0),  # retried here, only where repeating is safe
            )
        except ValueError as e:  # an option in the query string redis-py cannot use
            raise ValueError(f"--store {self.url}: {e}") from None
        self._scripts: dict[str, Script] = {}
        self._lock = threading.Lock()
        # Set once the server answered (`watch_outages`), so that a store that cannot be opened
        # is one error, not three.
        self.outage: StoreOutage | None = None

    def watch_outages(self) -> None:
        self.outage = StoreOutage(f"the store (Redis at {self.url})")

    def script(self, source: str) -> Script:
        """The script of `source`, registered once (sent by its SHA1, loaded again if Redis
        lost it)."""
        with self._lock:
            if source not in self._scripts:
                self._scripts[source] = self.redis.register_script(source)
            return self._scripts[source]

    def do(self, call: Callable[[], T], *, repeatable: bool = True) -> T:
        """Run `call` (a complete operation); Redis failures become StoreUnavailable. A
        connection found closed is retried once if `repeatable` (applying it twice is harmless).
        Every outcome is reported to `outage`."""
        result = self._attempt(call, repeatable)
        if self.outage is not None:
            self.outage.answered()
        return result

    def _attempt(self, call: Callable[[], T], repeatable: bool) -> T:
        try:
            return call()
        except rx.RedisError as e:
            if not (repeatable and type(e) is rx.ConnectionError):
                self.raise_unavailable(e)
                raise
        try:
            return call()
        except rx.RedisError as e:
            self.raise_unavailable(e)
            raise

    def raise_unavailable(self, e: rx.RedisError) -> None:
        """StoreUnavailable for a failure of the store; nothing for a bug (wrong type, bad
        script), which the caller re-raises as it is."""
        if isinstance(e, _UNAVAILABLE) or (
            isinstance(e, rx.ResponseError) and str(e).startswith(_UNAVAILABLE_CODES)
        ):
            if self.outage is not None:
                self.outage.failed(e)
            raise StoreUnavailable(f"Redis at {self.url} is unavailable: {e}") from e

    def check_server(self) -> None:
        """The server answers, is recent enough, and (a warning otherwise) keeps an AOF."""
        try:
            server = self.do(lambda: self.redis.info("server"))
        except StoreUnavailable as e:
            raise StoreUnavailable(f"cannot use the store: {e}") from e.__cause__
        version = str(server.get("redis_version", "0"))
        if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < MIN_SERVER_VERSION:
            raise StoreUnavailable(f"Redis at {self.url} is version {version}; fisproxy needs "
                                   f"{'.'.join(map(str, MIN_SERVER_VERSION))} or later")
        try:
            aof = self.do(lambda: self.redis.info("persistence")).get("aof_enabled")
        except rx.ResponseError:  # INFO disabled by the provider: nothing to say
            return
        if aof == 0:
            logger.warning(
                "fisproxy: Redis at %s runs without appendonly: a Redis restart loses what was "
                "written since its last snapshot (set appendonly yes)", self.url)

    def close(self) -> None:
        self.redis.close()


class StorePart:
    """Base of the parts a `RedisStore` is made of (one job each), sharing one connection.
    A part with state of its own extends `__init__` (cooperatively: super first)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn


def ttl_ms(ttl_seconds: float) -> int:
    if not ttl_seconds > 0:
        raise ValueError(f"a TTL must be positive, not {ttl_seconds!r}")
    return max(1, math.ceil(ttl_seconds * 1000))


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
