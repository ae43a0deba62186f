"""Fixtures: one real redis-server for the session, and stores on both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from fisproxy.store import StoreBackend, open_store
from tests.helpers import redis_server_binary, start_redis, stop

BACKENDS = ("sqlite", "redis")

OpenStore = Callable[[], StoreBackend]


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server with AOF, shared by the session's tests (each test starts on an empty
    database: see `redis_url`)."""
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server): "
                    "the Redis store is not tested")
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield port
    finally:
        stop(proc)


@pytest.fixture
def redis_url(redis_port: int) -> str:
    with redis.Redis(host="127.0.0.1", port=redis_port) as r:
        r.flushall()
    return f"redis://127.0.0.1:{redis_port}/0"


@pytest.fixture(params=BACKENDS)
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores on one backend, all on the same data (one SQLite file, as `--workers`
    processes share it; one Redis, as a fleet does); closes them after the test."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    opened: list[StoreBackend] = []

    def open_() -> StoreBackend:
        s = open_store(url, tmp_path / "deep" / "dir" / "state.sqlite")
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


@pytest.fixture
def store(open_backend: OpenStore) -> StoreBackend:
    return open_backend()
