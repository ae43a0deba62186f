"""Leases in Redis (`fis.ports.LeaseStore`): one key per lease holding its holder, expiring
with the lease (Redis's clock: the proxies' clocks do not matter)."""

from __future__ import annotations

from typing import cast

from fisproxy.store.redis.connection import StorePart, ttl_ms
from fisproxy.store.redis.keys import lease_key

# KEYS: lease; ARGV: holder, ttl ms. Take a free lease or renew one's own, atomically: 0; or,
# held by another, the ms it has left.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
return math.max(1, redis.call('PTTL', KEYS[1]))
"""

# KEYS: lease; ARGV: holder. Only the holder may release.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLeases(StorePart):
    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        return self.claim_lease(name, holder, ttl_seconds) == 0.0

    def claim_lease(self, name: str, holder: str, ttl_seconds: float) -> float:
        ms = ttl_ms(ttl_seconds)
        left = self._conn.do(lambda: self._conn.script(_CLAIM)(keys=[lease_key(name)], args=[holder, ms]))
        return int(left) / 1000

    def release_lease(self, name: str, holder: str) -> None:
        self._conn.do(lambda: self._conn.script(_RELEASE)(keys=[lease_key(name)], args=[holder]))

    def lease_holder(self, name: str) -> str | None:
        return self._conn.do(lambda: cast(str | None, self._conn.redis.get(lease_key(name))))  # decode_responses
