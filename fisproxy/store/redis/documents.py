"""Templates, small JSON documents and experiment logs in Redis: hashes kept in creation order
by a sorted set beside each (`ordered_*`, shared with the experiments), and one list per log.

Every write of a document replaces the store's data version (`fisproxy:version`), in the same
script or transaction: a proxy that resyncs reads more than that version only when something
changed."""

from __future__ import annotations

import json
import secrets
from typing import Any

from fisproxy.fis.models import ExperimentTemplate
from fisproxy.store.redis.connection import Connection, StorePart, dumps
from fisproxy.store.redis.keys import (
    SEQ,
    TEMPLATE,
    TEMPLATE_ORDER,
    VERSION,
    doc_key,
    doc_order_key,
    log_key,
)

# KEYS: hash, order set, creation counter[, version]; ARGV: id, doc[, version token]
_PUT_ORDERED = """
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], 'NX', redis.call('INCR', KEYS[3]), ARGV[1])
end
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[3]) end
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


def new_version() -> str:
    """A data version token: random, so that a store that lost its data and is written again
    never shows a token seen before."""
    return secrets.token_hex(8)


def list_ordered(conn: Connection, hash_key: str, order_key: str) -> list[tuple[str, str]]:
    flat = conn.do(lambda: conn.script(_LIST_ORDERED)(keys=[hash_key, order_key]))
    return list(zip(flat[::2], flat[1::2], strict=True))


class RedisDocuments(StorePart):
    """Templates, documents and logs (`fis.ports.DocStore`, `TemplateStore`, `LogStore`)."""


    def _put(self, keys: list[str], args: list[str]) -> None:
        self._conn.do(lambda: self._conn.script(_PUT_ORDERED)(keys=keys, args=args))

    def _delete(self, hash_key: str, order_key: str, member: str, *, versioned: bool) -> None:
        def call() -> None:
            with self._conn.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(hash_key, member)
                pipe.zrem(order_key, member)
                if versioned:
                    pipe.set(VERSION, new_version())
                pipe.execute()

        self._conn.do(call)

    # ---- templates ----

    def put_template(self, t: ExperimentTemplate) -> None:
        self._put([TEMPLATE, TEMPLATE_ORDER, SEQ], [t.id, dumps(t.wire())])

    def get_template(self, template_id: str) -> ExperimentTemplate | None:
        doc = self._conn.do(lambda: self._conn.redis.hget(TEMPLATE, template_id))
        return ExperimentTemplate.model_validate_json(doc) if doc is not None else None

    def delete_template(self, template_id: str) -> None:
        self._delete(TEMPLATE, TEMPLATE_ORDER, template_id, versioned=False)

    def list_templates(self) -> list[ExperimentTemplate]:
        return [ExperimentTemplate.model_validate_json(doc)
                for _, doc in list_ordered(self._conn, TEMPLATE, TEMPLATE_ORDER)]

    # ---- small JSON documents ----

    def put_doc(self, kind: str, key: str, value: dict[str, Any]) -> None:
        self._put([doc_key(kind), doc_order_key(kind), SEQ, VERSION], [key, dumps(value), new_version()])

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None:
        doc = self._conn.do(lambda: self._conn.redis.hget(doc_key(kind), key))
        return json.loads(doc) if doc is not None else None

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]:
        return {key: json.loads(doc) for key, doc in list_ordered(self._conn, doc_key(kind), doc_order_key(kind))}

    def delete_doc(self, kind: str, key: str) -> None:
        self._delete(doc_key(kind), doc_order_key(kind), key, versioned=True)

    # ---- experiment logs ----

    def append_log(self, experiment_id: str, record: dict[str, Any]) -> None:
        self._conn.do(lambda: self._conn.redis.rpush(log_key(experiment_id), dumps(record)), repeatable=False)

    def logs(self, experiment_id: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self._conn.do(lambda: self._conn.redis.lrange(log_key(experiment_id), 0, -1))]
