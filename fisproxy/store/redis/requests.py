"""Request records in Redis, for the report: one sorted set scored by time (`store.base.
RequestStore`). Written in batches by the recorder, never per request."""

from __future__ import annotations

import json
from typing import cast

from fisproxy.requestlog import RequestRecord
from fisproxy.store.redis.connection import StorePart, dumps
from fisproxy.store.redis.keys import REQUESTS, REQUESTS_SEQ

REQUEST_CHUNK = 5000  # request records per ZADD (all of a batch in one MULTI/EXEC)
RANGE_CHUNK = 10_000  # records per read in requests_between

# KEYS: records; ARGV: time (exclusive), batch -> how many went
_DELETE_BEFORE = """
local n = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1])
if n > tonumber(ARGV[2]) then n = tonumber(ARGV[2]) end
if n > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1) end
return n
"""


class RedisRequests(StorePart):

    def append_requests(self, records: list[RequestRecord]) -> None:
        """Store `records` in one MULTI/EXEC transaction (all or none). Their write numbers are
        taken first: a failure after that only leaves a gap in the numbering."""
        if not records:
            return
        conn = self._conn
        first = int(conn.do(lambda: conn.redis.incrby(REQUESTS_SEQ, len(records)))) - len(records)
        scored: dict[str, float] = {}
        for i, r in enumerate(records, start=first + 1):
            record = dumps([r.time, r.duration_ms, r.service, r.operation, r.region, list(r.faults),
                            r.status, r.invocation_id, r.attempt])
            scored[f"{i:016x}{record}"] = float(r.time)
        members = list(scored.items())

        def call() -> None:
            with conn.redis.pipeline(transaction=True) as pipe:
                for i in range(0, len(members), REQUEST_CHUNK):
                    pipe.zadd(REQUESTS, dict(members[i:i + REQUEST_CHUNK]))
                pipe.execute()

        conn.do(call, repeatable=False)

    def requests_between(self, start: float, end: float) -> list[RequestRecord]:
        """Records with `start <= time <= end`, oldest first, read RANGE_CHUNK at a time."""
        out: list[RequestRecord] = []
        low, skip = float(start), 0  # next read: scores >= low, skipping `skip` of them
        while True:
            def read(low: float = low, skip: int = skip) -> list[str]:  # str: decode_responses
                return cast(list[str], self._conn.redis.zrangebyscore(
                    REQUESTS, low, end, start=skip, num=RANGE_CHUNK))

            page = self._conn.do(read)
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
        script = self._conn.script(_DELETE_BEFORE)
        deleted = 0
        while True:
            n = int(self._conn.do(lambda: script(keys=[REQUESTS], args=[repr(float(t)), batch])))
            deleted += n
            if n < batch:
                return deleted


def _record(member: str) -> RequestRecord:
    t, d, service, operation, region, faults, status, invocation, attempt = json.loads(member[16:])
    return RequestRecord(t, d, service, operation, region, tuple(faults), status, invocation, attempt)
