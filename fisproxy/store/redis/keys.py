"""The Redis store's layout: every key starts with `fisproxy:`; values are the same JSON the
SQLite store writes.

| key | type | holds |
|---|---|---|
| `fisproxy:schema` | string | the layout's version (an older layout is brought up to date at open) |
| `fisproxy:template` | hash | template id -> ExperimentTemplate JSON |
| `fisproxy:template:order` | sorted set | template id, scored by creation number (list order) |
| `fisproxy:experiment` | hash | experiment id -> Experiment JSON |
| `fisproxy:experiment:order` | sorted set | experiment id, scored by creation number |
| `fisproxy:experiment:runtime` | hash | experiment id -> the engine's runtime JSON |
| `fisproxy:experiment:active` | set | ids of the experiments not ended (kept by every save) |
| `fisproxy:version` | string | a random token replaced by every write of an experiment or a doc |
| `fisproxy:doc:<kind>` | hash | key -> JSON document (client tokens, chaos config, levers...) |
| `fisproxy:doc-order:<kind>` | sorted set | key, scored by creation number |
| `fisproxy:seq` | string | the counter behind every creation number |
| `fisproxy:log:<experiment id>` | list | experiment log records (JSON), oldest first |
| `fisproxy:requests` | sorted set | request records scored by time; member: 16 hex digits of a write counter, then the record as a JSON array (ties keep the order written) |
| `fisproxy:requests:seq` | string | that write counter |
| `fisproxy:lease:<name>` | string | the holder; the key expires with the lease |
| `fisproxy:proxies` | sorted set | proxy id, scored by its expiry (ms, Redis server time) |
| `fisproxy:proxy` | hash | proxy id -> "<ttl, ms> <info JSON>" |
| `fisproxy:bucket:<key>` | hash | a shared token bucket (`tokens`, `stamp`); expires unused |
| `fisproxy:counters` | set | counter metric names |
| `fisproxy:counter:<metric>` | hash | label values (JSON array) -> count |
| `fisproxy:changes` | pub/sub channel | change notices: JSON `[kind, key]`, or with what changed `[kind, key, data]` (a saved experiment: `{"experiment": ..., "runtime": ...}`) |

Creation order is a sorted set beside each hash (SQLite's `seq`): an update keeps its place, a
delete and re-create goes last. Nothing grows beyond what SQLite would keep: deleting a
template, doc or key removes its entries (an empty hash or set disappears), request records are
pruned by time, proxies and leases expire, counters keep at most MAX_COUNTER_SERIES label sets
per metric, and the active index holds only experiments that have not ended.
"""

from __future__ import annotations

P = "fisproxy:"
SCHEMA = P + "schema"
SCHEMA_VERSION = "2"  # 2: the active index
TEMPLATE, TEMPLATE_ORDER = P + "template", P + "template:order"
EXPERIMENT, EXPERIMENT_ORDER = P + "experiment", P + "experiment:order"
RUNTIME, ACTIVE = P + "experiment:runtime", P + "experiment:active"
VERSION = P + "version"
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
