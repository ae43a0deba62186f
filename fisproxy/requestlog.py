"""What happened to each proxied AWS call, recorded for experiment reports.

The addon builds one `RequestRecord` per identified AWS request when its flow ends and hands it to
`Recorder.record`, which only appends to an in-memory buffer (it runs on the event loop, per
request). A background task calls `flush` about once a second: one SQLite transaction for the
whole batch. If the store cannot be written, the buffer stays bounded: the oldest records go.

AWS SDKs tag every attempt of one API call with the same `amz-sdk-invocation-id` and count the
attempts in `amz-sdk-request: ttl=...; attempt=2; max=3`; that is what lets the report tell SDK
calls from HTTP requests, and retries from new calls.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fisproxy.store import Store

logger = logging.getLogger(__name__)

INVOCATION_HEADER = "amz-sdk-invocation-id"
REQUEST_HEADER = "amz-sdk-request"
_INVOCATION_BYTES = INVOCATION_HEADER.encode()
_REQUEST_BYTES = REQUEST_HEADER.encode()
MAX_BUFFERED = 100_000
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
    return (invocation or "").strip() or None, _attempt(request)


def _attempt(value: str | None) -> int | None:
    # `ttl=20240501T120000Z; attempt=2; max=3` (botocore), `attempt=1; max=3` (JS v3).
    if not value:
        return None
    for part in value.split(";"):
        key, _, number = part.partition("=")
        if key.strip().lower() == "attempt":
            number = number.strip()
            return int(number) if number.isdigit() and int(number) > 0 else None
    return None


class Recorder:
    """Buffers RequestRecords in memory and writes them to the store in batches.

    `record` is O(1) and never touches disk. `flush` may run on the event loop or in a worker
    thread (the store serialises its connection); concurrent flushes are serialised here.
    At most `max_buffered` records wait in memory (plus one failed batch of the same size);
    past that the oldest are dropped and counted in `dropped`.
    """

    def __init__(
        self,
        store: Store,
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
        self.dropped = 0
        self.written = 0

    def record(self, r: RequestRecord) -> None:
        if len(self._buffer) == self._max:
            self.dropped += 1  # deque(maxlen) discards the oldest on append
        self._buffer.append(r)

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._failed)

    def flush(self) -> None:
        """Write every buffered record in one transaction. A store error is logged and the
        batch kept for the next flush."""
        with self._flush_lock:
            batch = self._failed + self._drain()
            self._failed = []
            if not batch:
                return
            try:
                self._store.append_requests(batch)
            except sqlite3.Error:
                logger.exception("fisproxy: could not record %d requests; will retry", len(batch))
                self._keep(batch)
                return
            self.written += len(batch)
            self._prune()

    async def run(self, interval: float = 1.0) -> None:
        """Flush every `interval` seconds in a worker thread (the commit waits for fsync), until
        cancelled. Call `flush()` once more after cancelling, before closing the store."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.flush)

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
        except sqlite3.Error:
            logger.exception("fisproxy: could not prune old request records")
