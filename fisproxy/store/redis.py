"""Shared persistence in Redis (`--store redis://host:port/db`): every proxy on one Redis is
one FIS, with one set of templates and experiments, one report and one set of counters.

Layout: every key starts with `fisproxy:`; values are the same JSON the SQLite store writes.

| key | type | holds |
|---|---|---|
| `fisproxy:template` | hash | template id -> ExperimentTemplate JSON |
| `fisproxy:template:order` | sorted set | template id, scored by creation number (list order) |
| `fisproxy:experiment` | hash | experiment id -> Experiment JSON |
| `fisproxy:experiment:order` | sorted set | experiment id, scored by creation number |
| `fisproxy:experiment:runtime` | hash | experiment id -> the engine's runtime JSON |
| `fisproxy:doc:<kind>` | hash | key -> JSON document (client tokens, chaos config, levers...) |
| `fisproxy:doc-order:<kind>` | sorted set | key, scored by creation number |
| `fisproxy:seq` | string | the counter behind every creation number |
| `fisproxy:log:<experiment id>` | list | experiment log records (JSON), oldest first |
| `fisproxy:requests` | sorted set | request records scored by time; member: 16 hex digits of a write counter, then the record as a JSON array (ties keep the order written) |
| `fisproxy:requests:seq` | string | that write counter |
| `fisproxy:lease:<name>` | string | the holder; the key expires with the lease |
| `fisproxy:proxies` | sorted set | proxy id, scored by its expiry (ms, Redis server time) |
| `fisproxy:proxy` | hash | proxy id -> "<last seen, ms> <info JSON>" |
| `fisproxy:counters` | set | counter metric names |
| `fisproxy:counter:<metric>` | hash | label values (JSON array) -> count |
| `fisproxy:changes` | pub/sub channel | change notices, JSON `[kind, key]` |

Creation order is a sorted set beside each hash (SQLite's `seq`): an update keeps its place, a
delete and re-create goes last. Nothing grows beyond what SQLite would keep: deleting a
template, doc or key removes its entries (an empty hash or set disappears), request records are
pruned by time (`delete_requests_before`), proxies and leases expire, counters keep at most
MAX_COUNTER_SERIES label sets per metric.

Writes: each method is one command, one Lua script or one MULTI/EXEC transaction, so it is
applied whole or not at all (`append_requests` takes its write numbers first, then adds the
records in one transaction), and returns once Redis has applied it. What survives a Redis
restart is the server's persistence setting: with `appendonly yes` a restart (SIGTERM,
SHUTDOWN) loses no acknowledged write, and with `appendfsync always` neither does a crash or
power loss (the default `everysec` may lose the last second); RDB snapshots alone lose
everything since the last snapshot. Opening a store on a Redis without AOF logs a warning.

Errors: a Redis that cannot be reached (at construction or later), is out of memory, read-only
or refuses writes raises `StoreUnavailable`, whose message names the URL without its password.
Reads, and writes that are safe to repeat, are tried once more on a fresh connection when the
old one turns out to be closed (a Redis restart); appends (logs, request records, counters) are
not, so an ambiguous failure never writes them twice.

Change notices: `publish_change` is a PUBLISH; the first `subscribe` starts one listener thread
with its own connection, which reconnects with backoff, and after each reconnection tells every
subscriber to resync (notices published meanwhile are lost: pub/sub does not keep them).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

import redis
from redis import exceptions as rx  # (its ConnectionError and TimeoutError are not the builtins)
from redis.backoff import NoBackoff
from redis.retry import Retry

from fisproxy.fis.models import Experiment, ExperimentTemplate
from fisproxy.fis.outage import StoreOutage
from fisproxy.fis.ports import ChangeCallback, StoreUnavailable, Subscription
from fisproxy.fis.runstate import RunState
from fisproxy.requestlog import RequestRecord
from fisproxy.store.base import MAX_COUNTER_SERIES, CounterKey, Subscribers, counter_field
from fisproxy.store.url import redacted

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 10.0
HEALTH_CHECK_SECONDS = 10  # a connection idle this long is pinged before use
SUBSCRIBE_WAIT_SECONDS = 2.0  # how long `subscribe` waits for the listener's first connection
RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 0.5  # a stop reaches every proxy within a second of Redis answering again
REQUEST_CHUNK = 5000  # request records per ZADD (all of a batch in one MULTI/EXEC)
RANGE_CHUNK = 10_000  # records per read in requests_between
MIN_SERVER_VERSION = (5, 0)  # scripts replicated by effects (TIME before writes)

# Failures of the store rather than bugs: the server is gone, full, read-only or refuses.
_UNAVAILABLE: tuple[type[rx.RedisError], ...] = (
    rx.ConnectionError, rx.TimeoutError, rx.OutOfMemoryError, rx.ReadOnlyError, rx.NoPermissionError,
    rx.ClusterDownError, rx.TryAgainError,
)
_UNAVAILABLE_CODES = ("MISCONF", "BUSY", "NOREPLICAS")  # ResponseErrors redis-py does not map

P = "fisproxy:"
TEMPLATE, TEMPLATE_ORDER = P + "template", P + "template:order"
EXPERIMENT, EXPERIMENT_ORDER, RUNTIME = P + "experiment", P + "experiment:order", P + "experiment:runtime"
SEQ = P + "seq"
REQUESTS, REQUESTS_SEQ = P + "requests", P + "requests:seq"
PROXIES, PROXY = P + "proxies", P + "proxy"
COUNTERS = P + "counters"
CHANGES = P + "changes"


def doc_key(kind: str) -> str:
    return f"{P}doc:{kind}"


def doc_order_key(kind: str) -> str:
    return f"{P}doc-order:{kind}"


def log_key(experiment_id: str) -> str:
    return f"{P}log:{experiment_id}"


def lease_key(name: str) -> str:
    return f"{P}lease:{name}"


def bucket_key(name: str) -> str:
    return f"{P}bucket:{name}"


def counter_key(metric: str) -> str:
    return f"{P}counter:{metric}"


# KEYS: hash, order set, creation counter[, runtime hash]; ARGV: id, doc[, runtime]
_PUT_ORDERED = """
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], 'NX', redis.call('INCR', KEYS[3]), ARGV[1])
end
if ARGV[3] then redis.call('HSET', KEYS[4], ARGV[1], ARGV[3]) end
return 1
"""

# KEYS: hash, order set -> {id, doc, id, doc, ...} in creation order
_LIST_ORDERED = """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local doc = redis.call('HGET', KEYS[1], id)
  if doc then out[#out + 1] = id; out[#out + 1] = doc end
end
return out
"""

# KEYS: records; ARGV: time (exclusive), batch -> how many went
_DELETE_BEFORE = """
local n = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1])
if n > tonumber(ARGV[2]) then n = tonumber(ARGV[2]) end
if n > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1) end
return n
"""

# KEYS: lease; ARGV: holder, ttl ms. Take a free lease or renew one's own, atomically.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease; ARGV: holder. Only the holder may release.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: proxies set, proxy hash; ARGV: id, info JSON, ttl ms. Expired proxies go on the way.
_REGISTER = _NOW_MS + """
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', now) .. ' ' .. ARGV[2])
return 1
"""

# KEYS: proxies set, proxy hash -> {id, value, ...} of proxies not expired (read-only)
_LIVE_PROXIES = _NOW_MS + """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then out[#out + 1] = id; out[#out + 1] = v end
end
return out
"""

# KEYS: counter hash, metric names; ARGV: metric, max series, field, n, field, n, ...
_INCR_COUNTERS = """
local dropped = 0
local size = redis.call('HLEN', KEYS[1])
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  elseif size < tonumber(ARGV[2]) then
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
    size = size + 1
  else
    dropped = dropped + 1
  end
end
if size > 0 then redis.call('SADD', KEYS[2], ARGV[1]) end
return dropped
"""


# A token bucket (fisproxy:api:rate-limit, scope fleet): refilled by the server's clock, so the
# proxies' clocks do not matter. KEYS[1] the bucket; ARGV rate, burst, want, ttl in ms.
_TAKE_TOKENS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens, stamp = tonumber(b[1]), tonumber(b[2])
if tokens == nil or stamp == nil then tokens = burst; stamp = now end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local taken = math.max(0, math.min(want, math.floor(tokens)))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - taken), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return taken
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        self.url = redacted(url)  # the only form of the URL this object keeps or shows
        try:
            self._redis: redis.Redis = redis.Redis.from_url(
                url, decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT_SECONDS, socket_timeout=COMMAND_TIMEOUT_SECONDS,
                socket_keepalive=True, health_check_interval=HEALTH_CHECK_SECONDS,
                retry=Retry(NoBackoff(), 0),  # retried here, only where repeating is safe
            )
        except ValueError as e:  # an option in the query string redis-py cannot use
            raise ValueError(f"--store {self.url}: {e}") from None
        script = self._redis.register_script
        self._put_ordered = script(_PUT_ORDERED)
        self._list_ordered = script(_LIST_ORDERED)
        self._delete_before = script(_DELETE_BEFORE)
        self._acquire = script(_ACQUIRE)
        self._release = script(_RELEASE)
        self._register = script(_REGISTER)
        self._live_proxies = script(_LIVE_PROXIES)
        self._incr_counters = script(_INCR_COUNTERS)
        self._take_tokens = script(_TAKE_TOKENS)
        self._lock = threading.Lock()
        self._subscribers = Subscribers()
        self._listener: _Listener | None = None
        # An outage is one warning when it starts and one when it ends (fis/outage.py); set
        # once the server answered, so a store that cannot be opened is one error, not three.
        self.outage: StoreOutage | None = None
        try:
            self._check_server()
        except BaseException:
            self._redis.close()
            raise
        self.outage = StoreOutage(f"the store (Redis at {self.url})")

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r})"

    def _check_server(self) -> None:
        try:
            server = self._do(lambda: self._redis.info("server"))
        except StoreUnavailable as e:
            raise StoreUnavailable(f"cannot use the store: {e}") from e.__cause__
        version = str(server.get("redis_version", "0"))
        if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) < MIN_SERVER_VERSION:
            raise StoreUnavailable(f"Redis at {self.url} is version {version}; fisproxy needs "
                                   f"{'.'.join(map(str, MIN_SERVER_VERSION))} or later")
        try:
            aof = self._do(lambda: self._redis.info("persistence")).get("aof_enabled")
        except rx.ResponseError:  # INFO disabled by the provider: nothing to say
            return
        if aof == 0:
            logger.warning(
                "fisproxy: Redis at %s runs without appendonly: a Redis restart loses what was "
                "written since its last snapshot (set appendonly yes)", self.url)

    def _do(self, call: Callable[[], T], *, repeatable: bool = True) -> T:
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
                self._raise_unavailable(e)
                raise
        try:
            return call()
        except rx.RedisError as e:
            self._raise_unavailable(e)
            raise

    def _raise_unavailable(self, e: rx.RedisError) -> None:
        """StoreUnavailable for a failure of the store; nothing for a bug (wrong type, bad
        script), which the caller re-raises as it is."""
        if isinstance(e, _UNAVAILABLE) or (
            isinstance(e, rx.ResponseError) and str(e).startswith(_UNAVAILABLE_CODES)
        ):
            if self.outage is not None:
                self.outage.failed(e)
            raise StoreUnavailable(f"Redis at {self.url} is unavailable: {e}") from e

    # ---- ordered hashes (templates, experiments, docs) ----

    def _put(self, keys: list[str], args: list[str]) -> None:
        self._do(lambda: self._put_ordered(keys=keys, args=args))

    def _list(self, hash_key: str, order_key: str) -> list[tuple[str, str]]:
        flat = self._do(lambda: self._list_ordered(keys=[hash_key, order_key]))
        return list(zip(flat[::2], flat[1::2], strict=True))

    def _delete(self, hash_key: str, order_key: str, member: str) -> None:
        def call() -> None:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(hash_key, member)
                pipe.zrem(order_key, member)
                pipe.execute()

        self._do(call)

    # ---- templates ----

    def put_template(self, t: ExperimentTemplate) -> None:
        self._put([TEMPLATE, TEMPLATE_ORDER, SEQ], [t.id, _dumps(t.wire())])

    def get_template(self, template_id: str) -> ExperimentTemplate | None:
        doc = self._do(lambda: self._redis.hget(TEMPLATE, template_id))
        return ExperimentTemplate.model_validate_json(doc) if doc is not None else None

    def delete_template(self, template_id: str) -> None:
        self._delete(TEMPLATE, TEMPLATE_ORDER, template_id)

    def list_templates(self) -> list[ExperimentTemplate]:
        return [ExperimentTemplate.model_validate_json(doc)
                for _, doc in self._list(TEMPLATE, TEMPLATE_ORDER)]

    # ---- experiments ----

    def put_experiment(self, e: Experiment, runtime: RunState | None = None) -> None:
        """Insert or replace `e`; `runtime` None keeps the stored runtime."""
        args = [e.id, _dumps(e.wire())]
        if runtime is not None:
            args.append(runtime.model_dump_json())
        self._put([EXPERIMENT, EXPERIMENT_ORDER, SEQ, RUNTIME], args)

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        doc = self._do(lambda: self._redis.hget(EXPERIMENT, experiment_id))
        return Experiment.model_validate_json(doc) if doc is not None else None

    def get_runtime(self, experiment_id: str) -> RunState | None:
        doc = self._do(lambda: self._redis.hget(RUNTIME, experiment_id))
        return RunState.model_validate_json(doc) if doc is not None else None

    def list_experiments(self) -> list[Experiment]:
        return [Experiment.model_validate_json(doc)
                for _, doc in self._list(EXPERIMENT, EXPERIMENT_ORDER)]

    # ---- small JSON documents ----

    def put_doc(self, kind: str, key: str, value: dict[str, Any]) -> None:
        self._put([doc_key(kind), doc_order_key(kind), SEQ], [key, _dumps(value)])

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None:
        doc = self._do(lambda: self._redis.hget(doc_key(kind), key))
        return json.loads(doc) if doc is not None else None

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]:
        return {key: json.loads(doc) for key, doc in self._list(doc_key(kind), doc_order_key(kind))}

    def delete_doc(self, kind: str, key: str) -> None:
        self._delete(doc_key(kind), doc_order_key(kind), key)

    # ---- experiment logs ----

    def append_log(self, experiment_id: str, record: dict[str, Any]) -> None:
        self._do(lambda: self._redis.rpush(log_key(experiment_id), _dumps(record)), repeatable=False)

    def logs(self, experiment_id: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self._do(lambda: self._redis.lrange(log_key(experiment_id), 0, -1))]

    # ---- request records ----

    def append_requests(self, records: list[RequestRecord]) -> None:
        """Store `records` in one MULTI/EXEC transaction (all or none). Their write numbers are
        taken first: a failure after that only leaves a gap in the numbering."""
        if not records:
            return
        first = int(self._do(lambda: self._redis.incrby(REQUESTS_SEQ, len(records)))) - len(records)
        scored: dict[str, float] = {}
        for i, r in enumerate(records, start=first + 1):
            record = _dumps([r.time, r.duration_ms, r.service, r.operation, r.region, list(r.faults),
                             r.status, r.invocation_id, r.attempt])
            scored[f"{i:016x}{record}"] = float(r.time)
        members = list(scored.items())

        def call() -> None:
            with self._redis.pipeline(transaction=True) as pipe:
                for i in range(0, len(members), REQUEST_CHUNK):
                    pipe.zadd(REQUESTS, dict(members[i:i + REQUEST_CHUNK]))
                pipe.execute()

        self._do(call, repeatable=False)

    def requests_between(self, start: float, end: float) -> list[RequestRecord]:
        """Records with `start <= time <= end`, oldest first, read RANGE_CHUNK at a time."""
        out: list[RequestRecord] = []
        low, skip = float(start), 0  # next read: scores >= low, skipping `skip` of them
        while True:
            def read(low: float = low, skip: int = skip) -> list[str]:  # str: decode_responses
                return cast(list[str], self._redis.zrangebyscore(
                    REQUESTS, low, end, start=skip, num=RANGE_CHUNK))

            page = self._do(read)
            records = [_record(member) for member in page]
            out.extend(records)
            if len(records) < RANGE_CHUNK:
                return out
            last = float(records[-1].time)  # the member's score: the same float, written once
            ties = sum(1 for r in records if r.time == last)
            low, skip = (low, skip + len(records)) if last == low else (last, ties)

    def delete_requests_before(self, t: float, *, batch: int = 5000) -> int:
        """Drop records older than `t` (retention), `batch` per script call so that Redis never
        stalls its other clients behind one long delete; how many went."""
        deleted = 0
        while True:
            n = int(self._do(lambda: self._delete_before(keys=[REQUESTS], args=[repr(float(t)), batch])))
            deleted += n
            if n < batch:
                return deleted

    # ---- leases ----

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        ms = _ttl_ms(ttl_seconds)
        return bool(self._do(lambda: self._acquire(keys=[lease_key(name)], args=[holder, ms])))

    def release_lease(self, name: str, holder: str) -> None:
        self._do(lambda: self._release(keys=[lease_key(name)], args=[holder]))

    def lease_holder(self, name: str) -> str | None:
        return self._do(lambda: cast(str | None, self._redis.get(lease_key(name))))  # decode_responses

    # ---- change notices ----

    def publish_change(self, kind: str, key: str) -> None:
        self._do(lambda: self._redis.publish(CHANGES, _dumps([kind, key])))

    def subscribe(self, kinds: Iterable[str], callback: ChangeCallback) -> Subscription:
        sub = self._subscribers.add(kinds, callback)
        with self._lock:
            if self._listener is None:
                self._listener = _Listener(self._redis, self._subscribers, self.url, self.outage)
            listener = self._listener
        listener.added(sub)
        return sub

    # ---- shared token buckets ----

    def take_tokens(self, key: str, per_second: float, burst: float, want: int, ttl_seconds: float) -> int:
        args: list[str | int] = [repr(float(per_second)), repr(float(burst)), max(0, int(want)),
                                 _ttl_ms(ttl_seconds)]
        # Not repeated on a lost answer: tokens taken twice would be lost to the fleet.
        return int(self._do(lambda: self._take_tokens(keys=[bucket_key(key)], args=args), repeatable=False))

    # ---- proxy registry ----

    def register_proxy(self, proxy_id: str, info: Mapping[str, Any], ttl_seconds: float) -> None:
        ms = _ttl_ms(ttl_seconds)
        self._do(lambda: self._register(keys=[PROXIES, PROXY], args=[proxy_id, _dumps(dict(info)), ms]))

    def list_proxies(self) -> list[dict[str, Any]]:
        flat = self._do(lambda: self._live_proxies(keys=[PROXIES, PROXY]))
        out = []
        for proxy_id, value in sorted(zip(flat[::2], flat[1::2], strict=True)):
            seen_ms, _, info = value.partition(" ")
            out.append({**json.loads(info), "id": proxy_id, "last_seen": int(seen_ms) / 1000})
        return out

    # ---- shared counters ----

    def incr_counters(self, counts: Mapping[CounterKey, int]) -> int:
        by_metric: dict[str, list[str]] = defaultdict(list)
        for key, n in counts.items():
            metric, labels = counter_field(key)
            if int(n):
                by_metric[metric] += [_dumps(labels), str(int(n))]
        if not by_metric:
            return 0

        def call() -> int:
            with self._redis.pipeline(transaction=True) as pipe:
                for metric, fields in by_metric.items():
                    self._incr_counters(keys=[counter_key(metric), COUNTERS],
                                        args=[metric, MAX_COUNTER_SERIES, *fields], client=pipe)
                return sum(int(d) for d in pipe.execute())

        return self._do(call, repeatable=False)

    def read_counters(self) -> dict[CounterKey, int]:
        def call() -> dict[CounterKey, int]:
            metrics = sorted(cast(set[str], self._redis.smembers(COUNTERS)))  # decode_responses
            with self._redis.pipeline(transaction=False) as pipe:
                for metric in metrics:
                    pipe.hgetall(counter_key(metric))
                values = pipe.execute()
            return {(metric, *json.loads(field)): int(n)
                    for metric, fields in zip(metrics, values, strict=True) for field, n in fields.items()}

        return self._do(call)

    def close(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._redis.close()


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
                kind, key = json.loads(message["data"])
            except (ValueError, TypeError):
                logger.warning("fisproxy: ignored a malformed change notice: %.200r", message["data"])
                return
            self._subscribers.deliver(str(kind), str(key))

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


def _record(member: str) -> RequestRecord:
    t, d, service, operation, region, faults, status, invocation, attempt = json.loads(member[16:])
    return RequestRecord(t, d, service, operation, region, tuple(faults), status, invocation, attempt)


def _ttl_ms(ttl_seconds: float) -> int:
    if not ttl_seconds > 0:
        raise ValueError(f"a TTL must be positive, not {ttl_seconds!r}")
    return max(1, math.ceil(ttl_seconds * 1000))


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
