"""Shared persistence in Redis (`--store redis://host:port/db`): every proxy on one Redis is
one FIS, with one set of templates and experiments, one report and one set of counters.

`RedisStore` is the `StoreBackend` made of parts with one job each, on one connection:

| module | part |
|---|---|
| `connection.py` | the client, Redis errors as `StoreUnavailable`, scripts, the server check |
| `keys.py` | the layout: every key, what it holds |
| `documents.py` | templates, small JSON documents, experiment logs |
| `experiments.py` | experiments, the active index and data version; each save announced with what was saved |
| `requests.py` | request records (the report) |
| `leases.py` | leases (one schedule holder per experiment) |
| `changes.py` | change notices (pub/sub) and their listener thread |
| `registry.py` | the proxy registry (heartbeats) and the shared counters |

Writes: each method is one command, one Lua script or one MULTI/EXEC transaction, so it is
applied whole or not at all (`append_requests` takes its write numbers first, then adds the
records in one transaction), and returns once Redis has applied it. What survives a Redis
restart is the server's persistence setting: with `appendonly yes` a restart (SIGTERM,
SHUTDOWN) loses no acknowledged write, and with `appendfsync always` neither does a crash or
power loss (the default `everysec` may lose the last second); RDB snapshots alone lose
everything since the last snapshot. Opening a store on a Redis without AOF logs a warning.

A proxy's steady cost on Redis does not grow with history: at idle it is a heartbeat every few
seconds, the data version read at each resync, a change-feed PING (`bench/fleet.py` measures it).
"""

from __future__ import annotations

from fisproxy.store.redis.changes import RedisChanges
from fisproxy.store.redis.connection import Connection
from fisproxy.store.redis.documents import RedisDocuments
from fisproxy.store.redis.experiments import RedisExperiments, upgrade_layout
from fisproxy.store.redis.leases import RedisLeases
from fisproxy.store.redis.registry import RedisRegistry
from fisproxy.store.redis.requests import RedisRequests

__all__ = ["RedisStore"]


class RedisStore(RedisDocuments, RedisExperiments, RedisRequests, RedisLeases, RedisChanges, RedisRegistry):
    def __init__(self, url: str) -> None:
        conn = Connection(url)
        try:
            conn.check_server()
            upgrade_layout(conn)
        except BaseException:
            conn.close()
            raise
        conn.watch_outages()
        super().__init__(conn)
        self.url = conn.url  # without its password

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    def close(self) -> None:
        self._stop_listening()
        self._conn.close()
