"""Request records: SDK retry headers (checked against what botocore really sends), the buffered
recorder, and their round trip through the SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from mitmproxy.http import Headers

from fisproxy.requestlog import Recorder, RequestRecord, parse_sdk_headers
from fisproxy.store import Store

T0 = 1_700_000_000.0


def rec(t: float = T0, **kw: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "time": t, "duration_ms": 12.5, "service": "dynamodb", "operation": "PutItem",
        "region": "us-east-1", "faults": (), "status": 200, "invocation_id": None, "attempt": None,
    }
    fields.update(kw)
    return RequestRecord(**fields)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.sqlite")
    yield s
    s.close()


# ---- header parsing -------------------------------------------------------------------------

@pytest.mark.parametrize(("headers", "expected"), [
    ({"amz-sdk-invocation-id": "abc", "amz-sdk-request": "ttl=20240501T120000Z; attempt=2; max=3"}, ("abc", 2)),
    ({"amz-sdk-invocation-id": "abc", "amz-sdk-request": "attempt=1; max=3"}, ("abc", 1)),  # JS v3
    ({"amz-sdk-request": "attempt=3;max=5"}, (None, 3)),
    ({"amz-sdk-request": " Attempt = 4 ; max=5"}, (None, 4)),
    ({"amz-sdk-request": "max=3"}, (None, None)),
    ({"amz-sdk-request": "attempt=two"}, (None, None)),
    ({"amz-sdk-request": "attempt=0"}, (None, None)),
    ({"amz-sdk-request": "attempt=-1"}, (None, None)),
    ({"amz-sdk-invocation-id": "  "}, (None, None)),
    ({}, (None, None)),
])
def test_parse_sdk_headers(headers: dict[str, str], expected: tuple[str | None, int | None]) -> None:
    assert parse_sdk_headers(headers) == expected


def test_parse_sdk_headers_is_case_insensitive_with_mitmproxy_headers() -> None:
    headers = Headers([(b"Amz-Sdk-Invocation-Id", b"id-1"), (b"AMZ-SDK-REQUEST", b"attempt=2; max=3")])
    assert parse_sdk_headers(headers) == ("id-1", 2)


def test_parse_sdk_headers_reads_what_botocore_sends_across_retries() -> None:
    """A real boto3 client, throttled twice then answered: one invocation id, attempts 1, 2, 3."""
    seen: list[tuple[str | None, int | None]] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        # A prepared request's header values are bytes; mitmproxy hands the addon str.
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        seen.append(parse_sdk_headers(headers))
        if len(seen) < 3:
            body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"slow down"}'
            return AWSResponse(request.url, 400, {"content-type": "application/x-amz-json-1.0"}, _Raw(body))
        return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, _Raw(b"{}"))

    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="x",
        endpoint_url="http://127.0.0.1:9", config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )
    client.meta.events.register("before-send.dynamodb.PutItem", answer)
    client.meta.events.register("before-sleep", lambda **_: None)
    client.put_item(TableName="t", Item={"k": {"S": "v"}})
    ids = {invocation for invocation, _ in seen}
    assert len(ids) == 1 and None not in ids
    assert [attempt for _, attempt in seen] == [1, 2, 3]


class _Raw:
    """The minimal raw stream AWSResponse reads a body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


# ---- store round trip -----------------------------------------------------------------------

def test_store_round_trips_records_in_time_order(store: Store) -> None:
    a = rec(T0 + 2, faults=("EXP1/throttle/error", "chaos/0/latency"), status=400,
            invocation_id="inv-1", attempt=1)
    b = rec(T0 + 1, operation=None, region=None, status=None, duration_ms=0.0)
    c = rec(T0 + 3, service="s3", operation="GetObject", invocation_id="inv-2", attempt=2)
    store.append_requests([a, b, c])
    assert store.requests_between(T0, T0 + 10) == [b, a, c]
    assert store.requests_between(T0 + 1, T0 + 2) == [b, a]  # both ends included
    assert store.requests_between(T0 + 3.5, T0 + 10) == []


def test_store_batch_is_one_transaction(store: Store) -> None:
    bad = rec(T0 + 1, service=None)  # type: ignore[arg-type]  # NOT NULL violated
    with pytest.raises(sqlite3.IntegrityError):
        store.append_requests([rec(T0), bad])
    assert store.requests_between(0, T0 + 10) == []
    store.append_requests([rec(T0)])  # the connection is usable again
    assert len(store.requests_between(0, T0 + 10)) == 1


def test_store_time_queries_use_the_index(store: Store) -> None:
    plan = store._conn.run("EXPLAIN QUERY PLAN SELECT * FROM requests WHERE time >= ? AND time <= ?", (0, 1))
    assert "requests_by_time" in " ".join(str(row) for row in plan)


def test_store_deletes_old_records(store: Store) -> None:
    store.append_requests([rec(T0), rec(T0 + 10), rec(T0 + 20)])
    assert store.delete_requests_before(T0 + 10) == 1
    assert [r.time for r in store.requests_between(0, T0 + 100)] == [T0 + 10, T0 + 20]


def test_records_survive_reopening(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.sqlite")
    s.append_requests([rec(T0, invocation_id="i", attempt=2)])
    s.close()
    reopened = Store(tmp_path / "s.sqlite")
    assert reopened.requests_between(0, T0 + 1) == [rec(T0, invocation_id="i", attempt=2)]
    reopened.close()


# ---- recorder -------------------------------------------------------------------------------

class FakeStore:
    def __init__(self) -> None:
        self.batches: list[list[RequestRecord]] = []
        self.fail = False
        self.pruned: list[float] = []

    def append_requests(self, records: list[RequestRecord]) -> None:
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        self.batches.append(list(records))

    def delete_requests_before(self, t: float) -> int:
        self.pruned.append(t)
        return 0


def test_record_only_buffers_and_flush_writes_one_batch() -> None:
    fake = FakeStore()
    recorder = Recorder(fake)  # type: ignore[arg-type]
    records = [rec(T0 + i) for i in range(5)]
    for r in records:
        recorder.record(r)
    assert fake.batches == [] and recorder.pending == 5
    recorder.flush()
    assert fake.batches == [records]
    assert recorder.pending == 0 and recorder.written == 5
    recorder.flush()  # nothing new: no empty write
    assert len(fake.batches) == 1


def test_failed_flush_keeps_records_for_the_next_one() -> None:
    fake = FakeStore()
    recorder = Recorder(fake, retention_seconds=None)  # type: ignore[arg-type]
    recorder.record(rec(T0))
    fake.fail = True
    recorder.flush()
    recorder.record(rec(T0 + 1))
    assert recorder.pending == 2 and recorder.written == 0
    fake.fail = False
    recorder.flush()
    assert fake.batches == [[rec(T0), rec(T0 + 1)]]
    assert recorder.dropped == 0


def test_buffer_is_bounded_and_drops_the_oldest() -> None:
    fake = FakeStore()
    recorder = Recorder(fake, max_buffered=3)  # type: ignore[arg-type]
    for i in range(5):
        recorder.record(rec(T0 + i))
    assert recorder.pending == 3 and recorder.dropped == 2
    recorder.flush()
    assert [r.time for r in fake.batches[0]] == [T0 + 2, T0 + 3, T0 + 4]


def test_memory_stays_bounded_while_the_store_keeps_failing() -> None:
    fake = FakeStore()
    fake.fail = True
    recorder = Recorder(fake, max_buffered=10)  # type: ignore[arg-type]
    for i in range(100):
        recorder.record(rec(T0 + i))
        if i % 7 == 0:
            recorder.flush()
    assert recorder.pending <= 20
    assert recorder.dropped == 100 - recorder.pending
    fake.fail = False
    recorder.flush()
    written = [r.time for r in fake.batches[0]]
    assert written == sorted(written) and written[-1] == T0 + 99  # the newest are kept


def test_flush_prunes_old_records_at_most_hourly() -> None:
    fake = FakeStore()
    recorder = Recorder(fake, retention_seconds=3600)  # type: ignore[arg-type]
    for _ in range(3):
        recorder.record(rec())
        recorder.flush()
    assert len(fake.pruned) == 1


def test_recorder_writes_to_the_real_store_and_prunes_by_retention(store: Store) -> None:
    now = time.time()
    recorder = Recorder(store, retention_seconds=3600)
    recorder.record(rec(now - 7200))  # past the retention: pruned after the write
    recorder.record(rec(now, invocation_id="a", attempt=1, status=503, faults=("E/x/error",)))
    recorder.record(rec(now + 1, invocation_id="a", attempt=2))
    recorder.flush()
    assert [(r.attempt, r.status) for r in store.requests_between(0, now + 5)] == [(1, 503), (2, 200)]


async def test_run_flushes_in_the_background(store: Store) -> None:
    recorder = Recorder(store, retention_seconds=None)
    task = asyncio.get_running_loop().create_task(recorder.run(interval=0.02))
    try:
        recorder.record(rec(T0))
        for _ in range(250):
            if recorder.written:
                break
            await asyncio.sleep(0.02)
        assert store.requests_between(0, T0 + 1) == [rec(T0)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# ---- nothing a client sends stops recording -------------------------------------------------

@pytest.mark.parametrize("value", [
    "x" * 129,  # longer than any SDK's UUID
    "abc\x00def",  # control bytes
    "caf\xe9",  # latin-1 decoded non-ASCII
    "id\udcff",  # undecodable byte (mitmproxy's surrogateescape)
])
def test_parse_sdk_headers_refuses_invocation_ids_that_are_not_short_ascii(value: str) -> None:
    assert parse_sdk_headers({"amz-sdk-invocation-id": value}) == (None, None)


@pytest.mark.parametrize("value", ["attempt=" + "9" * 5000, "attempt=\u0663", "attempt=99999999"])
def test_parse_sdk_headers_refuses_attempts_that_are_not_small_ascii_numbers(value: str) -> None:
    assert parse_sdk_headers({"amz-sdk-request": value}) == (None, None)


def test_a_record_with_undecodable_text_is_stored_without_it_and_the_batch_survives(store: Store) -> None:
    recorder = Recorder(store, retention_seconds=None)
    recorder.record(rec(T0))
    recorder.record(rec(T0 + 1, operation="Put\udcffItem", region="eu-\udcff", invocation_id="\ud800"))
    recorder.record(rec(T0 + 2, operation="X" * 5000))
    recorder.record(rec(T0 + 3))
    recorder.flush()
    stored = store.requests_between(0, T0 + 10)
    assert [(r.time, r.operation, r.region, r.invocation_id) for r in stored] == [
        (T0, "PutItem", "us-east-1", None),
        (T0 + 1, None, None, None),
        (T0 + 2, None, "us-east-1", None),
        (T0 + 3, "PutItem", "us-east-1", None),
    ]
    assert recorder.written == 4 and recorder.pending == 0


def test_a_record_without_a_storable_service_is_dropped_and_counted(store: Store) -> None:
    recorder = Recorder(store, retention_seconds=None)
    recorder.record(rec(T0, service="dynamo\udcffdb"))
    recorder.record(rec(T0 + 1))
    recorder.flush()
    assert [r.time for r in store.requests_between(0, T0 + 10)] == [T0 + 1]
    assert recorder.rejected == 1 and recorder.pending == 0


class PickyStore(FakeStore):
    """Refuses (not a store failure) every batch holding a record of a given service."""

    def __init__(self, bad_service: str) -> None:
        super().__init__()
        self.bad = bad_service
        self.calls = 0

    def append_requests(self, records: list[RequestRecord]) -> None:
        self.calls += 1
        if any(r.service == self.bad for r in records):
            raise TypeError("cannot store this")
        super().append_requests(records)


def test_one_record_the_store_refuses_does_not_lose_the_rest_of_the_batch() -> None:
    fake = PickyStore("poison")
    recorder = Recorder(fake, retention_seconds=None)  # type: ignore[arg-type]
    records = [rec(T0 + i, service="poison" if i == 37 else "dynamodb") for i in range(100)]
    for r in records:
        recorder.record(r)
    recorder.flush()
    written = [r for batch in fake.batches for r in batch]
    assert written == records[:37] + records[38:]  # all the others, in order
    assert recorder.rejected == 1 and recorder.written == 99 and recorder.pending == 0
    assert fake.calls <= 2 * 7 + 1  # halving: about two writes per level, not one per record
    recorder.record(rec(T0 + 200))
    recorder.flush()  # and recording goes on
    assert fake.batches[-1] == [rec(T0 + 200)]


def test_a_store_failure_during_splitting_keeps_the_unwritten_rest() -> None:
    fake = PickyStore("poison")
    recorder = Recorder(fake, retention_seconds=None)  # type: ignore[arg-type]
    for i in range(8):
        recorder.record(rec(T0 + i, service="poison" if i == 0 else "dynamodb"))
    original = fake.append_requests

    def fail_after_the_first_write(records: list[RequestRecord]) -> None:
        if fake.batches:
            raise sqlite3.OperationalError("disk I/O error")
        original(records)

    fake.append_requests = fail_after_the_first_write  # type: ignore[method-assign]
    recorder.flush()
    assert recorder.pending == 8 - 1 - len(fake.batches[0])  # poison dropped, written gone
    fake.append_requests = original  # type: ignore[method-assign]
    recorder.flush()
    assert sorted(r.time for b in fake.batches for r in b) == [T0 + i for i in range(1, 8)]


async def test_the_background_task_survives_an_error_and_keeps_recording(store: Store) -> None:
    recorder = Recorder(store, retention_seconds=None)
    real_flush, failures = recorder.flush, []

    def flush_failing_once() -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("anything at all")
        real_flush()

    recorder.flush = flush_failing_once  # type: ignore[method-assign]
    task = asyncio.get_running_loop().create_task(recorder.run(interval=0.02))
    try:
        recorder.record(rec(T0))
        for _ in range(250):
            if recorder.written:
                break
            await asyncio.sleep(0.02)
        assert failures and not task.done()
        assert store.requests_between(0, T0 + 1) == [rec(T0)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
