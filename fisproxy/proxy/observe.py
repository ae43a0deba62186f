"""What happened to each identified AWS call, once its flow ends: a request record (for the
report and /metrics), and who signed it, learned from STS answers (for role-targeted faults).

Memory only, on the event loop: the record goes to the recorder's buffer (written to the store by
its own task in a worker thread), the identity to the engine (saved by the engine's thread).
"""

from __future__ import annotations

import logging
import time

from mitmproxy import http

from fisproxy.aws.sts import learn_credentials
from fisproxy.fis.resources.scoped import decode_body
from fisproxy.proxy.notes import Note
from fisproxy.proxy.runtime import Runtime
from fisproxy.requestlog import RequestRecord, parse_sdk_headers

logger = logging.getLogger("fisproxy")

SHARD_ITERATOR_OPERATIONS = frozenset({"GetShardIterator", "GetRecords"})
STS_LEARNING_OPERATIONS = frozenset(
    {"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "GetCallerIdentity"}
)


class Observer:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def response(self, flow: http.HTTPFlow) -> None:
        note = self.runtime.notes.pop(flow.id, None)
        if note is None:
            return
        self._record(flow, note)
        call = note.call
        engine = self.runtime.engine
        if engine is None:
            return
        if call.service == "kinesis" and call.operation in SHARD_ITERATOR_OPERATIONS:
            self._learn_iterators(flow, note)
            return
        if call.service != "sts" or call.operation not in STS_LEARNING_OPERATIONS:
            return
        if flow.response is None or flow.metadata.get("fisproxy"):
            return  # an injected answer teaches nothing
        try:
            learned = learn_credentials(call, flow.response.status_code, flow.response.content or b"")
        except Exception:
            logger.exception("fisproxy: could not read an STS response")
            return
        if learned:
            engine.identities.learn(*learned)

    def _learn_iterators(self, flow: http.HTTPFlow, note: Note) -> None:
        """Which stream the shard iterators a Kinesis answer hands out belong to, while a fault
        targets streams (GetRecords names only its iterator). Small answers only."""
        engine, response = self.runtime.engine, flow.response
        if engine is None or response is None or response.status_code != 200 or not engine.rules.candidates(note.call):
            return
        if flow.request.stream or response.stream or flow.request.raw_content is None or response.raw_content is None:
            return
        try:
            content_type = flow.request.headers.get("content-type")
            request = decode_body(flow.request.content or b"", content_type)
            answer = decode_body(response.content or b"", response.headers.get("content-type"))
            engine.shard_iterators.learn(note.call.operation or "", request, answer, note.call.region)
        except Exception:
            logger.exception("fisproxy: could not read a Kinesis answer")

    def error(self, flow: http.HTTPFlow) -> None:
        note = self.runtime.notes.pop(flow.id, None)
        if note is not None:
            self._record(flow, note)

    def _record(self, flow: http.HTTPFlow, note: Note) -> None:
        """One RequestRecord per identified AWS call, when its flow ends (response or error)."""
        recorder, metrics = self.runtime.recorder, self.runtime.metrics
        if recorder is None or metrics is None or note.call.needs_body:
            return
        try:
            req, call, decision = flow.request, note.call, note.decision
            response = flow.response if flow.error is None else None
            ended = (response.timestamp_end if response else None) or time.time()
            invocation_id, attempt = parse_sdk_headers(req.headers)
            record = RequestRecord(
                time=req.timestamp_start,
                duration_ms=max(0.0, (ended - req.timestamp_start) * 1000.0),
                service=call.service, operation=call.operation, region=call.region,
                faults=decision.labels if decision else (),
                status=response.status_code if response else None,
                invocation_id=invocation_id, attempt=attempt,
            )
            recorder.record(record)
            metrics.observe(record, [f.latency_ms for f in decision.latencies] if decision else ())
        except Exception:
            logger.exception("fisproxy: could not record a request")
