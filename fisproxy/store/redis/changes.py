"""Change notices in Redis (`fis.ports.ChangeFeed`): pub/sub on `fisproxy:changes`.

`publish_change` is a PUBLISH of `[kind, key]` or, with what changed, `[kind, key, data]`; a
saved experiment is announced by its save itself, with what was saved (`experiments.py`). The first `subscribe` starts one listener thread
with its own connection, which reconnects with backoff and after each reconnection tells every
subscriber to resync (notices published meanwhile are lost: pub/sub does not keep them). At
idle a subscriber costs Redis nothing but a PING every HEALTH_CHECK_SECONDS.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

import redis
from redis import exceptions as rx

from fisproxy.fis.outage import StoreOutage
from fisproxy.fis.ports import ChangeCallback, DataCallback, Subscription
from fisproxy.store.base import Subscribers
from fisproxy.store.redis.connection import Connection, StorePart, dumps
from fisproxy.store.redis.keys import CHANGES

logger = logging.getLogger(__name__)

SUBSCRIBE_WAIT_SECONDS = 2.0  # how long `subscribe` waits for the listener's first connection
RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 0.5  # a stop reaches every proxy within a second of Redis answering again


class RedisChanges(StorePart):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._subscribers = Subscribers()
        self._listener: _Listener | None = None
        self._listener_lock = threading.Lock()

    def publish_change(self, kind: str, key: str, data: dict[str, Any] | None = None) -> None:
        notice = dumps([kind, key] if data is None else [kind, key, data])
        self._conn.do(lambda: self._conn.redis.publish(CHANGES, notice))

    def subscribe(self, kinds: Iterable[str], callback: ChangeCallback,
                  with_data: DataCallback | None = None) -> Subscription:
        sub = self._subscribers.add(kinds, callback, with_data)
        with self._listener_lock:
            if self._listener is None:
                self._listener = _Listener(self._conn.redis, self._subscribers, self._conn.url,
                                           self._conn.outage)
            listener = self._listener
        listener.added(sub)
        return sub

    def _stop_listening(self) -> None:
        with self._listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()


class _Listener:
    """The thread that receives change notices for one store's subscribers, on its own
    connection. It reconnects with backoff; after a reconnection every subscriber resyncs, and
    a subscriber that joined while it was disconnected resyncs once it is connected."""

    def __init__(self, client: redis.Redis, subscribers: Subscribers, url: str,
                 outage: StoreOutage | None = None) -> None:
        self._client = client
        self._outage = outage  # told at once when the connection drops: the outage's start
        self._subscribers = subscribers
        self._url = url
        self._lock = threading.Lock()
        self._live = threading.Event()
        self._pending: list[Any] = []  # subscriptions added while not connected
        self._connected_before = False
        self._down = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fisproxy-store-changes", daemon=True)
        self._thread.start()

    def added(self, sub: Any) -> None:
        with self._lock:
            if self._live.is_set():
                return  # notices already flow to it
            self._pending.append(sub)
        self._live.wait(SUBSCRIBE_WAIT_SECONDS)

    def _run(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while not self._stop.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(CHANGES)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.25)
                    if message is not None:
                        self._handle(message)
                        delay = RECONNECT_MIN_SECONDS
            except (rx.RedisError, OSError) as e:
                self._lost(e)
            except Exception:  # this thread's error boundary: log, reconnect, resync
                logger.exception("fisproxy: the change listener failed; reconnecting")
                self._lost(None)
            finally:
                try:
                    pubsub.close()
                except (rx.RedisError, OSError):
                    pass
            self._stop.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _handle(self, message: dict[str, Any]) -> None:
        if message.get("type") == "subscribe":
            with self._lock:
                self._live.set()
                resync = None if self._connected_before else self._pending  # None: everyone
                self._connected_before = True
                self._pending = []
                came_back, self._down = self._down, False
            if came_back:  # (the outage itself is announced by the store's StoreOutage)
                logger.debug("fisproxy: change notices from Redis at %s flow again", self._url)
            self._subscribers.resync(resync)
        elif message.get("type") == "message":
            try:
                kind, key, *data = json.loads(message["data"])
                if data and not isinstance(data[0], dict):
                    raise ValueError("data is not an object")
            except (ValueError, TypeError):
                logger.warning("fisproxy: ignored a malformed change notice: %.200r", message["data"])
                return
            self._subscribers.deliver(str(kind), str(key), data[0] if data else None)

    def _lost(self, error: Exception | None) -> None:
        with self._lock:
            self._live.clear()
            was_down, self._down = self._down, True
        if error is not None and self._outage is not None and not self._stop.is_set():
            self._outage.failed(error)
        if not was_down and not self._stop.is_set():
            logger.debug("fisproxy: change notices from Redis at %s interrupted (%s); reconnecting, "
                         "and resyncing once back", self._url, error)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)
