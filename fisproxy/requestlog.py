"""What happened to each proxied AWS call, recorded for experiment reports.

The addon builds one `RequestRecord` per identified AWS request when its flow ends and hands it to
`Recorder.record`, which only appends to an in-memory buffer (it runs on the event loop, per
request). A background task calls `flush` about once a second: one SQLite transaction for the
whole batch. If the store cannot be written, the buffer stays bounded: the oldest records go.
No record can stop recording: fields are checked before they are stored (a record whose fields
cannot be stored loses those fields, or is dropped and counted), a batch the store refuses for
one record is split until that record is isolated and dropped, and the background task logs
any error and keeps going.

AWS SDKs tag every attempt of one API call with the same `amz-sdk-invocation-id` and count the
attempts in `amz-sdk-request: ttl=...; attempt=2; max=3`; that is what lets the report tell SDK
calls from HTTP requests, and retries from new calls.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from fisproxy.fis.outage import announced, log_failure
from fisproxy.fis.ports import StoreUnavailable

logger = logging.getLogger(__name__)

INVOCATION_HEADER = "amz-sdk-invocation-id"
REQUEST_HEADER = "amz-sdk-request"
_INVOCATION_BYTES = INVOCATION_HEADER.encode()
_REQUEST_BYTES = REQUEST_HEADER.encode()
MAX_BUFFERED = 100_000
MAX_TEXT = 256  # longest service, operation, region or fault label stored
MAX_INVOCATION_ID = 128  # SDKs send a UUID (36 characters)
RETENTION_SECONDS = 7 * 24 * 3600.0
PRUNE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One proxied AWS request and what happened to it.

    `time`: epoch seconds when the request arrived; `duration_ms`: until the response ended (or
    the connection was dropped). `faults`: the `Fault.label` of every fault applied
    (`EXPabc/throttle/error`, `chaos/0/latency`), empty if untouched. `status` None means the
    client got no response (connection closed, reset or hung up).
    """

    time: float
    duration_ms: float
    service: str
    operation: str | None
    region: str | None
    faults: tuple[str, ...]
    status: int | None
    invocation_id: str | None = None
    attempt: int | None = None


def parse_sdk_headers(headers: Mapping[str, str]) -> tuple[str | None, int | None]:
    """(invocation id, attempt number) from the SDK's retry headers; None for what is absent.

    `headers` should be case-insensitive (mitmproxy's Headers); both names are lower case.
    mitmproxy's Headers are read in one pass over their raw fields (this runs per request).
    """
    fields = getattr(headers, "fields", None)
    if fields is not None:
        invocation = request = None
        for name, value in fields:
            lowered = name.lower()
            if lowered == _INVOCATION_BYTES:
                invocation = value.decode("latin-1")
            elif lowered == _REQUEST_BYTES:
                request = value.decode("latin-1")
    else:
        invocation, request = headers.get(INVOCATION_HEADER), headers.get(REQUEST_HEADER)
    return _invocation_id(invocation), _attempt(request)


def _invocation_id(value: str | None) -> str | None:
    # Printable ASCII of a sane length, or nothing: this value is stored as it came.
    value = (value or "").strip()
    if not value or len(value) > MAX_INVOCATION_ID or not (value.isascii() and value.isprintable()):
        return None
    return value


def _attempt(value: str | None) -> int | None:
    # `ttl=20240501T120000Z; attempt=2; max=3` (botocore), `attempt=1; max=3` (JS v3).
    if not value:
        return None
    for part in value.split(";"):
        key, _, number = part.partition("=")
        if key.strip().lower() == "attempt":
            number = number.strip()
            # isdecimal also accepts non-ASCII digits; a huge number is no attempt count.
            if not (number.isascii() and number.isdigit()) or len(number) > 6:
                return None
            return int(number) or None
    return None


class RequestStore(Protocol):
    """What the request log needs from storage: its port, as `fis/ports.py` is the domain's
    (the stores of `store/` implement it; this module never imports them)."""

    def append_requests(self, records: list[RequestRecord]) -> None:
        """Store `records`, all or none."""
        ...

    def requests_between(self, start: float, end: float) -> list[RequestRecord]:
        """Records with `start <= time <= end`, oldest first (ties in the order written)."""
        ...

    def delete_requests_before(self, t: float, *, batch: int = 5000) -> int:
        """Drop records with `time < t` (retention), in batches; how many went."""
        ...


class Recorder:
    """Buffers RequestRecords in memory and writes them to the store in batches.

    `record` is O(1) and never touches disk. `flush` may run on the event loop or in a worker
    thread (the store serialises its connection); concurrent flushes are serialised here.
    At most `max_buffered` records wait in memory (plus one failed batch of the same size);
    past that the oldest are dropped and counted in `dropped`.
    """

    def __init__(
        self,
        store: RequestStore,
        *,
        max_buffered: int = MAX_BUFFERED,
        retention_seconds: float | None = RETENTION_SECONDS,
    ) -> None:
        self._store = store
        self._max = max_buffered
        self._buffer: deque[RequestRecord] = deque(maxlen=max_buffered)
        self._failed: list[RequestRecord] = []  # a batch the store refused, retried first
        self._flush_lock = threading.Lock()
        self._retention = retention_seconds
        self._last_prune = 0.0
        self.dropped = 0  # past the buffer's bound
        self.rejected = 0  # records (or batches' members) the store could not hold
        self.written = 0

    def record(self, r: RequestRecord) -> None:
        if len(self._buffer) == self._max:
            self.dropped += 1  # deque(maxlen) discards the oldest on append
        self._buffer.append(r)

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._failed)

    def flush(self) -> None:
        """Write every buffered record, in one transaction when all goes well.

        A store that cannot be written (disk full, locked, read-only) is logged and the batch
        kept for the next flush. A batch the store refuses because of one of its records is
        split in halves until that record is alone; it is dropped (counted in `rejected`) and
        the others are written."""
        with self._flush_lock:
            batch = self._failed + self._drain()
            self._failed = []
            if not batch:
                return
            self._write(self._storable(batch))
            self._prune()

    def _write(self, batch: list[RequestRecord]) -> None:
        chunks = [batch]  # a stack: the first half is pushed last, so order is kept
        while chunks:
            chunk = chunks.pop()
            try:
                self._store.append_requests(chunk)
            except Exception as e:
                if _store_unavailable(e):
                    rest = chunk + [r for c in reversed(chunks) for r in c]
                    (logger.debug if announced(e) else logger.error)(
                        "fisproxy: could not record %d requests (%s); will retry", len(rest), e)
                    self._keep(rest)
                    return
                if len(chunk) > 1:
                    middle = len(chunk) // 2
                    chunks += [chunk[middle:], chunk[:middle]]
                    continue
                self.rejected += 1
                logger.exception("fisproxy: dropped a request record the store refused: %r", chunk[0])
                continue
            self.written += len(chunk)

    def _storable(self, batch: list[RequestRecord]) -> list[RequestRecord]:
        """The records with every field the store can hold: text that is valid Unicode and not
        too long, finite numbers. A bad optional field is cleared; a record without a storable
        service or time is dropped (counted in `rejected`)."""
        out = []
        for r in batch:
            clean = _clean(r)
            if clean is None:
                self.rejected += 1
                logger.warning("fisproxy: dropped a request record that cannot be stored: %r", r)
            else:
                out.append(clean)
        return out

    async def run(self, interval: float = 1.0) -> None:
        """Flush every `interval` seconds in a worker thread (the commit waits for fsync), until
        cancelled. An error is logged and the next flush tried: recording never stops. Call
        `flush()` once more after cancelling, before closing the store."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.flush)
            except Exception:
                logger.exception("fisproxy: error while recording requests; will try again")

    def _drain(self) -> list[RequestRecord]:
        # popleft is atomic: records appended meanwhile stay for the next flush.
        out: list[RequestRecord] = []
        buffer = self._buffer
        while True:
            try:
                out.append(buffer.popleft())
            except IndexError:
                return out

    def _keep(self, batch: list[RequestRecord]) -> None:
        if len(batch) > self._max:
            self.dropped += len(batch) - self._max
            batch = batch[-self._max:]
        self._failed = batch

    def _prune(self) -> None:
        if self._retention is None:
            return
        now = time.time()
        if now - self._last_prune < PRUNE_EVERY_SECONDS:
            return
        self._last_prune = now
        try:
            self._store.delete_requests_before(now - self._retention)
        except Exception as e:
            log_failure(logger, e, "fisproxy: could not prune old request records")


def _store_unavailable(error: Exception) -> bool:
    """The store itself failed (disk full or I/O error, locked, read-only, corrupt), as opposed
    to refusing what it was given: retrying the same batch later may work."""
    return (isinstance(error, sqlite3.OperationalError | StoreUnavailable)
            or type(error) is sqlite3.DatabaseError)


def _text(value: object) -> bool:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        return False
    if value.isascii():  # O(1), and always valid UTF-8
        return True
    try:
        value.encode()
    except UnicodeEncodeError:  # lone surrogates: undecodable bytes from the wire
        return False
    return True


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _small_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _clean(r: RequestRecord) -> RequestRecord | None:
    """`r` with only storable values (see `Recorder._storable`); None if it has none to keep."""
    if not _text(r.service) or not _finite(r.time) or not _finite(r.duration_ms):
        return None
    faults = tuple(f for f in r.faults if _text(f)) if isinstance(r.faults, tuple) else ()
    clean = replace(
        r,
        operation=r.operation if _text(r.operation) else None,
        region=r.region if _text(r.region) else None,
        faults=faults,
        status=r.status if _small_int(r.status) else None,
        invocation_id=r.invocation_id if _text(r.invocation_id) else None,
        attempt=r.attempt if _small_int(r.attempt) else None,
    )
    return r if clean == r else clean
