"""Persistence behind one interface (`StoreBackend`, in `base.py`): SQLite embedded by default
(`sqlite/`), Redis for a fleet of proxies sharing one FIS (`redis/`). `open_store` picks one
from the `--store` option. The Redis client is an extra (`pip install 'fisproxy[redis]'`),
imported only when a `redis://` store is opened."""

from __future__ import annotations

from pathlib import Path

from fisproxy.store.base import STORE_ERRORS, StoreBackend, StoreUnavailable
from fisproxy.store.sqlite import SqliteStore, Store
from fisproxy.store.url import redacted, redis_url

__all__ = [
    "STORE_ERRORS", "SqliteStore", "Store", "StoreBackend", "StoreUnavailable", "open_store",
    "redacted",
]


def open_store(url: str | None, state_path: Path) -> StoreBackend:
    """The store `--store URL` names: None (or empty) is the SQLite file at `state_path`;
    `redis://[user:password@]host:port/db` or `rediss://...` a Redis server (StoreUnavailable
    if it cannot be reached). Anything else, or a Redis URL without the Redis client installed:
    ValueError naming `--store`."""
    if url is None or not url.strip():
        return SqliteStore(state_path)
    try:
        checked = redis_url(url)
    except ValueError as e:
        raise ValueError(f"--store: {e}") from None
    try:
        from fisproxy.store.redis import RedisStore
    except ImportError as e:
        if e.name != "redis":
            raise
        raise ValueError(f"--store {redacted(url)}: the Redis client is not installed "
                         f"(pip install 'fisproxy[redis]')") from None
    return RedisStore(checked)
