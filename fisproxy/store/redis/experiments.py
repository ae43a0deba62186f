"""Experiments in Redis, and what keeps a proxy's steady cost independent of their number.

Each save (`put_experiment`) is one script: the experiment and its runtime, its place in the
index of active experiments (`fisproxy:experiment:active`), a new data version, and the change
notice carrying what was saved, so that every proxy gets a save in one message instead of
reading it back, and no save goes unannounced. A proxy's resync reads the data version (one
GET) and, only when it changed, the active experiments: never the ones that ended.
"""

from __future__ import annotations

from typing import cast

from fisproxy.fis.models import ACTIVE_STATUSES, Experiment
from fisproxy.fis.ports import EXPERIMENT_CHANGES
from fisproxy.fis.runstate import RunState
from fisproxy.store.redis.connection import Connection, StorePart, dumps
from fisproxy.store.redis.documents import list_ordered, new_version
from fisproxy.store.redis.keys import (
    ACTIVE,
    CHANGES,
    EXPERIMENT,
    EXPERIMENT_ORDER,
    RUNTIME,
    SCHEMA,
    SCHEMA_VERSION,
    SEQ,
    VERSION,
)

# KEYS: experiments, order set, creation counter, runtimes, active index, data version
# ARGV: id, experiment JSON, "1" if active, version token, channel, kind[, runtime JSON]
_PUT_EXPERIMENT = """
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], 'NX', redis.call('INCR', KEYS[3]), ARGV[1])
end
local runtime = ARGV[7]
if runtime then
  redis.call('HSET', KEYS[4], ARGV[1], runtime)
else
  runtime = redis.call('HGET', KEYS[4], ARGV[1]) or 'null'
end
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[5], ARGV[1])
else
  redis.call('SREM', KEYS[5], ARGV[1])
end
redis.call('SET', KEYS[6], ARGV[4])
redis.call('PUBLISH', ARGV[5], '[' .. cjson.encode(ARGV[6]) .. ',' .. cjson.encode(ARGV[1])
  .. ',{"experiment":' .. ARGV[2] .. ',"runtime":' .. runtime .. '}]')
return 1
"""

# KEYS: experiments, active index, schema; ARGV: schema version, active statuses...
# The index for a store written before it existed: once, at open (reads every experiment).
_INDEX_ACTIVE = """
local active = {}
for i = 2, #ARGV do active[ARGV[i]] = true end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, e = pcall(cjson.decode, all[i + 1])
  if ok and type(e) == 'table' and type(e.state) == 'table' and active[e.state.status] then
    redis.call('SADD', KEYS[2], all[i])
  end
end
redis.call('SET', KEYS[3], ARGV[1])
return 1
"""


def upgrade_layout(conn: Connection) -> None:
    """Bring a store written by an earlier version up to this layout (the active index)."""
    schema = conn.do(lambda: cast(str | None, conn.redis.get(SCHEMA)))
    if schema is not None and schema.isdigit() and int(schema) >= int(SCHEMA_VERSION):
        return
    conn.do(lambda: conn.script(_INDEX_ACTIVE)(keys=[EXPERIMENT, ACTIVE, SCHEMA],
                                                 args=[SCHEMA_VERSION, *sorted(ACTIVE_STATUSES)]))


class RedisExperiments(StorePart):
    """Experiments, their runtime, the active index and the data version
    (`fis.ports.ExperimentStore`, `FisStore.data_version`)."""


    def put_experiment(self, e: Experiment, runtime: RunState | None = None) -> None:
        """Insert or replace `e`; `runtime` None keeps the stored runtime. Announced with what
        was saved, in the same script."""
        args = [e.id, dumps(e.wire()), "1" if e.state.status in ACTIVE_STATUSES else "0", new_version(),
                CHANGES, EXPERIMENT_CHANGES]
        if runtime is not None:
            args.append(runtime.model_dump_json())
        keys = [EXPERIMENT, EXPERIMENT_ORDER, SEQ, RUNTIME, ACTIVE, VERSION]
        self._conn.do(lambda: self._conn.script(_PUT_EXPERIMENT)(keys=keys, args=args))

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        doc = self._conn.do(lambda: self._conn.redis.hget(EXPERIMENT, experiment_id))
        return Experiment.model_validate_json(doc) if doc is not None else None

    def get_runtime(self, experiment_id: str) -> RunState | None:
        doc = self._conn.do(lambda: self._conn.redis.hget(RUNTIME, experiment_id))
        return RunState.model_validate_json(doc) if doc is not None else None

    def list_experiments(self) -> list[Experiment]:
        return [Experiment.model_validate_json(doc)
                for _, doc in list_ordered(self._conn, EXPERIMENT, EXPERIMENT_ORDER)]

    def list_active_experiments(self) -> list[Experiment]:
        """SMEMBERS of the index, then one HMGET of those (none when nothing runs)."""
        ids = sorted(self._conn.do(lambda: cast(set[str], self._conn.redis.smembers(ACTIVE))))
        if not ids:
            return []
        docs = self._conn.do(lambda: cast(list[str | None], self._conn.redis.hmget(EXPERIMENT, ids)))
        return [Experiment.model_validate_json(doc) for doc in docs if doc is not None]

    def data_version(self) -> str | None:
        return self._conn.do(lambda: cast(str | None, self._conn.redis.get(VERSION)))
