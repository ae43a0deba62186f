"""What the application's calls did, from the recorded requests (`requestlog`): per action and
operation (`action_rows`), and per operation over time (`series`).

An action sees the requests matching its filter (service, operations, region: the live path's
`RuleSpec.matches`) while it ran, plus any it faulted. Role targeting is not recorded per
request, so for role-targeted actions other callers' matching requests count too. AWS SDKs tag
every attempt of one call with the same `amz-sdk-invocation-id` and number the attempts
(`amz-sdk-request: attempt=N`): that tells calls from requests and retries from new calls. A
call's attempts are followed outside the action's run (the retry after the action ended is what
tells whether it recovered), up to `FOLLOW_SECONDS` around the report's window.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fisproxy.aws import catalog
from fisproxy.fis.actions import ACTIONS
from fisproxy.fis.faults import RuleSpec
from fisproxy.fis.models import ExperimentAction
from fisproxy.reports.model import (
    HELD,
    NO_CALL_IDS,
    NO_FAULTS,
    Counts,
    OperationRow,
    OperationSeries,
    Traffic,
)
from fisproxy.requestlog import RequestRecord

FOLLOW_SECONDS = 120.0
MAX_BUCKETS = 120
BUCKET_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


@dataclass(frozen=True, slots=True)
class Keyed:
    """A record with the key of the SDK call it belongs to (`#n` for a record without an id)."""

    call: str
    record: RequestRecord


def key_calls(records: Sequence[RequestRecord]) -> list[Keyed]:
    return [Keyed(r.invocation_id or f"#{i}", r) for i, r in enumerate(records)]


def calls_of(keyed: Iterable[Keyed]) -> dict[str, list[RequestRecord]]:
    """Each SDK call's attempts, in order."""
    calls: dict[str, list[RequestRecord]] = defaultdict(list)
    for k in keyed:
        calls[k.call].append(k.record)
    for attempts in calls.values():
        attempts.sort(key=lambda r: (r.time, r.attempt or 0))
    return calls


# ---- per action and operation ----------------------------------------------------------------

def action_rows(
    experiment_id: str, name: str, action: ExperimentAction, interval: tuple[float, float] | None,
    keyed: Sequence[Keyed], calls: dict[str, list[RequestRecord]],
) -> tuple[list[OperationRow], Counts]:
    """The rows of one action (one per service and operation it saw) and their total."""
    prefix = f"{experiment_id}/{name}/"
    rule = _rule(action)
    seen = [k for k in keyed if _seen(k.record, rule, interval, prefix)]
    by_operation: dict[tuple[str, str | None], list[Keyed]] = defaultdict(list)
    for k in seen:
        by_operation[(k.record.service, k.record.operation)].append(k)
    rows = [
        _row(service, operation, items, calls, prefix)
        for (service, operation), items in sorted(by_operation.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    ]
    return rows, _totals(rows)


def _rule(action: ExperimentAction) -> RuleSpec | None:
    spec = ACTIONS.get(action.action_id)
    if spec is None:
        return None
    try:
        return spec.rule(action.parameters)
    except (ValueError, KeyError):  # stored before a catalogue change: count faulted only
        return None


def _seen(r: RequestRecord, rule: RuleSpec | None, interval: tuple[float, float] | None, prefix: str) -> bool:
    if faulted_by(r, prefix):
        return True
    if rule is None or interval is None or not interval[0] <= r.time <= interval[1]:
        return False
    # Records keep the signing name (`monitoring`), templates may use the botocore name.
    return rule.matches(_names(r.service), r.operation, r.region)


@functools.cache
def _names(service: str) -> frozenset[str]:
    return frozenset((service, *catalog.apis_by_signing_name().get(service, ())))


def faulted_by(r: RequestRecord, prefix: str) -> bool:
    for label in r.faults:  # (a loop, not any(): this runs for every record, several times)
        if label.startswith(prefix):
            return True
    return False


def _row(service: str, operation: str | None, items: Sequence[Keyed],
         calls: dict[str, list[RequestRecord]], prefix: str) -> OperationRow:
    keys = list(dict.fromkeys(k.call for k in items))
    faulted_keys = {k.call for k in items if faulted_by(k.record, prefix)}
    succeeded = {key for key in keys if succeeded_call(calls[key])}
    row = OperationRow(
        service=service, operation=operation,
        requests=len(items),
        faulted=sum(1 for k in items if k.call in faulted_keys and faulted_by(k.record, prefix)),
        calls=len(keys),
        retries=sum(_retries(calls[key]) for key in keys),
        backoff_ms=round(sum(_backoff_ms(calls[key]) for key in keys), 1),
        succeeded=len(succeeded),
        failed=len(keys) - len(succeeded),
        faulted_calls=len(faulted_keys),
        recovered=len(faulted_keys & succeeded),
        untracked_calls=sum(1 for key in faulted_keys if key.startswith("#")),
    )
    row.verdict = verdict(row)
    return row


def _retries(attempts: Sequence[RequestRecord]) -> int:
    return sum(1 for r in attempts if r.attempt is not None and r.attempt > 1)


def _gaps_ms(attempts: Sequence[RequestRecord]) -> Iterable[tuple[RequestRecord, float]]:
    """Each retry with the time waited before it (end of one attempt to the start of the next)."""
    for prev, nxt in zip(attempts, attempts[1:], strict=False):
        yield nxt, max(0.0, nxt.time * 1000.0 - (prev.time * 1000.0 + prev.duration_ms))


def _backoff_ms(attempts: Sequence[RequestRecord]) -> float:
    return sum(gap for _, gap in _gaps_ms(attempts))


def succeeded_call(attempts: Sequence[RequestRecord]) -> bool:
    status = attempts[-1].status
    return status is not None and 200 <= status < 300


def verdict(c: Counts) -> str:
    if c.faulted_calls == 0:
        return NO_FAULTS
    if c.untracked_calls == c.faulted_calls:
        return NO_CALL_IDS
    lost = c.faulted_calls - c.recovered
    if lost == 0:
        return HELD
    return f"{lost} of {c.faulted_calls} faulted calls failed"


def _totals(rows: Sequence[OperationRow]) -> Counts:
    # Rows never share a call (all attempts of a call have one service and operation).
    if not rows:
        return Counts()
    totals = Counts(**{field: sum(getattr(r, field) for r in rows) for field in _SUMMED})
    totals.backoff_ms = round(totals.backoff_ms, 1)
    totals.verdict = verdict(totals)
    return totals


_SUMMED = ("requests", "faulted", "calls", "retries", "backoff_ms", "succeeded", "failed",
           "faulted_calls", "recovered", "untracked_calls")


# ---- per operation over time -----------------------------------------------------------------

def bucket_seconds(span: float, max_count: int = MAX_BUCKETS) -> float:
    """The smallest round step that cuts `span` seconds into at most `max_count` pieces."""
    for step in BUCKET_STEPS:
        if span / step <= max_count:
            return float(step)
    return float(BUCKET_STEPS[-1] * (int(span / BUCKET_STEPS[-1] / max_count) + 1))


def series(experiment_id: str, keyed: Sequence[Keyed], calls: dict[str, list[RequestRecord]],
           start: float, end: float) -> Traffic:
    """Every (service, operation) with a request in [start, end], per bucket."""
    width = bucket_seconds(max(end - start, 1.0))
    count = max(1, math.ceil((end - start) / width))
    prefix = f"{experiment_id}/"

    def index(t: float) -> int | None:
        return None if not start <= t <= end else min(count - 1, int((t - start) // width))

    by_operation: dict[tuple[str, str | None], list[tuple[int, Keyed]]] = defaultdict(list)
    for k in keyed:
        i = index(k.record.time)
        if i is not None:
            by_operation[(k.record.service, k.record.operation)].append((i, k))
    out = []
    for (service, operation), items in sorted(by_operation.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        s = _empty_series(service, operation, count)
        requests, faulted = s.requests, s.faulted
        durations: list[list[float]] = [[] for _ in range(count)]
        for i, k in items:
            requests[i] += 1
            if k.record.faults and faulted_by(k.record, prefix):
                faulted[i] += 1
            durations[i].append(k.record.duration_ms)
        for key in dict.fromkeys(k.call for _, k in items):
            attempts = calls[key]
            last = index(attempts[-1].time)
            if last is not None:
                (s.succeeded if succeeded_call(attempts) else s.failed)[last] += 1
            for retry, gap in _gaps_ms(attempts):
                i = index(retry.time)
                if i is not None:
                    s.retries[i] += 1
                    s.backoff_ms[i] = round(s.backoff_ms[i] + gap, 1)
        s.latency_p50_ms = [_percentile(d, 50) for d in durations]
        s.latency_p95_ms = [_percentile(d, 95) for d in durations]
        out.append(s)
    return Traffic(bucket_seconds=width, buckets=count, operations=out)


def _empty_series(service: str, operation: str | None, count: int) -> OperationSeries:
    return OperationSeries(
        service=service, operation=operation, requests=[0] * count, faulted=[0] * count,
        retries=[0] * count, succeeded=[0] * count, failed=[0] * count, backoff_ms=[0.0] * count,
        latency_p50_ms=[None] * count, latency_p95_ms=[None] * count)


def _percentile(values: list[float], p: int) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)
