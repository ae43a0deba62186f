"""The proxy registry, the shared counters and token buckets in Redis (`store.base.
ProxyRegistry`, `CounterStore`, `TokenStore`).

A registration writes what the proxy is (its info) and when it expires, by Redis's clock; the
same registration again (a heartbeat) only moves its expiry: one small script, whatever the
info's size. Expired proxies are swept by the next full registration."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, cast

from fisproxy.store.base import MAX_COUNTER_SERIES, CounterKey, counter_field
from fisproxy.store.redis.connection import Connection, StorePart, dumps, ttl_ms
from fisproxy.store.redis.keys import COUNTERS, PROXIES, PROXY, bucket_key, counter_key

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
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3] .. ' ' .. ARGV[2])
return 1
"""

# KEYS: proxies set; ARGV: id, ttl ms -> 1, or 0 if it is not registered (register it again)
_BEAT = _NOW_MS + """
return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
"""

# KEYS: proxies set, proxy hash -> {id, value, expiry ms, ...} of proxies not expired (read-only)
_LIVE_PROXIES = _NOW_MS + """
local out = {}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
for i = 1, #live, 2 do
  local v = redis.call('HGET', KEYS[2], live[i])
  if v then out[#out + 1] = live[i]; out[#out + 1] = v; out[#out + 1] = live[i + 1] end
end
return out
"""

# KEYS: proxies set -> how many proxies have not expired (read-only; O(log N))
_COUNT_LIVE = _NOW_MS + """
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
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


class RedisRegistry(StorePart):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._registered: dict[str, tuple[str, int]] = {}  # proxy id -> (info, ttl) written here

    # ---- proxy registry ----

    def register_proxy(self, proxy_id: str, info: Mapping[str, Any], ttl_seconds: float) -> None:
        ms, doc = ttl_ms(ttl_seconds), dumps(dict(info))
        conn = self._conn
        if self._registered.get(proxy_id) == (doc, ms) and conn.do(
                lambda: conn.script(_BEAT)(keys=[PROXIES], args=[proxy_id, ms])):
            return  # a heartbeat: registered as it is, the expiry moved
        conn.do(lambda: conn.script(_REGISTER)(keys=[PROXIES, PROXY], args=[proxy_id, doc, ms]))
        self._registered[proxy_id] = (doc, ms)

    def list_proxies(self) -> list[dict[str, Any]]:
        flat = self._conn.do(lambda: self._conn.script(_LIVE_PROXIES)(keys=[PROXIES, PROXY]))
        out = []
        for proxy_id, value, expires_ms in sorted(zip(flat[::3], flat[1::3], flat[2::3], strict=True)):
            ttl, _, info = value.partition(" ")
            out.append({**json.loads(info), "id": proxy_id, "last_seen": (float(expires_ms) - int(ttl)) / 1000})
        return out

    def count_proxies(self) -> int:
        return int(self._conn.do(lambda: self._conn.script(_COUNT_LIVE)(keys=[PROXIES])))

    # ---- shared counters ----

    def incr_counters(self, counts: Mapping[CounterKey, int]) -> int:
        by_metric: dict[str, list[str]] = defaultdict(list)
        for key, n in counts.items():
            metric, labels = counter_field(key)
            if int(n):
                by_metric[metric] += [dumps(labels), str(int(n))]
        if not by_metric:
            return 0
        conn = self._conn

        def call() -> int:
            with conn.redis.pipeline(transaction=True) as pipe:
                for metric, fields in by_metric.items():
                    conn.script(_INCR_COUNTERS)(keys=[counter_key(metric), COUNTERS],
                                                args=[metric, MAX_COUNTER_SERIES, *fields], client=pipe)
                return sum(int(d) for d in pipe.execute())

        return conn.do(call, repeatable=False)

    def read_counters(self) -> dict[CounterKey, int]:
        conn = self._conn

        def call() -> dict[CounterKey, int]:
            metrics = sorted(cast(set[str], conn.redis.smembers(COUNTERS)))  # decode_responses
            with conn.redis.pipeline(transaction=False) as pipe:
                for metric in metrics:
                    pipe.hgetall(counter_key(metric))
                values = pipe.execute()
            return {(metric, *json.loads(field)): int(n)
                    for metric, fields in zip(metrics, values, strict=True) for field, n in fields.items()}

        return conn.do(call)

    # ---- shared token buckets ----

    def take_tokens(self, key: str, per_second: float, burst: float, want: int, ttl_seconds: float) -> int:
        args: list[str | int] = [repr(float(per_second)), repr(float(burst)), max(0, int(want)),
                                 ttl_ms(ttl_seconds)]
        conn = self._conn
        # Not repeated on a lost answer: tokens taken twice would be lost to the fleet.
        return int(conn.do(lambda: conn.script(_TAKE_TOKENS)(keys=[bucket_key(key)], args=args), repeatable=False))
