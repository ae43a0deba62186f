"""Fault injection: per flow, identify the AWS call, decide which faults apply, apply them.

`requestheaders` does guard -> identify -> decide -> apply from the headers alone, so large
bodies stream. Query/ec2 calls whose `Action` is only in the form-encoded body are decided in
`request`, once that body is in (mitmproxy buffers bodies up to stream_large_bodies, 1 MiB;
a larger form body streams, and only faults that name no operation can apply to it). A call
whose operation could not be identified otherwise passes through untouched. Faults of phase `response` run in `responseheaders`,
after the upstream answered. A request that is not an AWS call is only asked about by the
rules that apply to all traffic (network disruption of a subnet). A rule that matches by the
address a request goes to gets it resolved first (`resolver.py`: the request waits, the loop
does not).

The per-request hooks are plain functions that return a coroutine only when there is something
to wait for (a delay, a hang): mitmproxy awaits what a hook returns, and the common case, a call
passed through untouched, then costs no coroutine at all. Each hook is an error boundary: an
exception is logged and the flow goes on untouched.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable

from mitmproxy import http

from fisproxy.aws.call import RequestParts
from fisproxy.aws.identify import complete, identify
from fisproxy.fis.decide import (
    OTHER_TRAFFIC,
    CandidateRule,
    Decision,
    decide,
    needs_address,
    needs_body,
)
from fisproxy.fis.faults import Phase
from fisproxy.proxy import apply
from fisproxy.proxy.controlplane import is_control_flow
from fisproxy.proxy.headers import HeaderIndex
from fisproxy.proxy.kinds import KINDS, Env
from fisproxy.proxy.notes import Note
from fisproxy.proxy.redirect import original_host
from fisproxy.proxy.resolver import Resolver
from fisproxy.proxy.runtime import Runtime

logger = logging.getLogger("fisproxy")


class FaultInjector:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.resolver = Resolver()

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        runtime = self.runtime
        if not runtime.ready or flow.response or flow.error or not flow.live or is_control_flow(flow):
            return None
        try:
            req = flow.request
            call = identify(req.method, original_host(flow), req.path, HeaderIndex(req.headers))
            if call is None:
                return self._other_traffic(flow)
            service_only = call.needs_body and bool(req.stream)
            if service_only:
                # A form body over stream_large_bodies streams on before its `Action` could be
                # read: the call is known by its service only, so only faults that name no
                # operation can apply to it.
                call = dataclasses.replace(call, needs_body=False)
            note = runtime.notes[flow.id] = Note(call, service_only=service_only)
            if call.needs_body:
                return None  # decided in `request`, once the (small, buffered) form body is in
            candidates = self._candidates(note)
            if not candidates:
                return None
            if needs_body(candidates) and not req.stream and apply.has_body(req):
                note.deferred = True  # a targeted resource named in the (small) body
                return None
            return self._decide_and_apply(flow, note, candidates)
        except Exception:  # the error boundary: log, let the flow go on untouched
            logger.exception("fisproxy: error while handling %s; passing it through", where(flow))
            return None

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        note = self.runtime.notes.get(flow.id)
        if note is None or not (note.call.needs_body or note.deferred):
            return None
        if flow.response or flow.error or not flow.live:
            return None
        try:
            req = flow.request
            if note.call.needs_body:
                note.call = complete(note.call, original_host(flow), req.raw_content or b"")
            if note.call.needs_body:
                return None
            candidates = self._candidates(note)
            return self._decide_and_apply(flow, note, candidates, with_body=True) if candidates else None
        except Exception:
            logger.exception("fisproxy: error while handling %s; passing it through", where(flow))
            return None

    def responseheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        note = self.runtime.notes.get(flow.id)
        if note is None or not note.decision or flow.response is None:
            return None
        return self._apply(flow, note.decision, "response")

    def response(self, flow: http.HTTPFlow) -> None:
        note = self.runtime.notes.get(flow.id)
        if note is not None and note.decision:
            apply.on_response(flow)

    def client_disconnected(self, client: object) -> None:
        apply.on_client_disconnected(client)  # type: ignore[arg-type]

    # ---- deciding and applying -------------------------------------------------------

    def _candidates(self, note: Note) -> tuple[CandidateRule, ...]:
        """The rules that may apply to the call (looked up once per decision: memory only)."""
        runtime = self.runtime
        if runtime.engine is None or runtime.chaos is None:
            return ()
        if note.call.operation is None and not note.service_only:
            return ()  # not a call we understand (malformed, unknown): passed through untouched
        return runtime.engine.rules.candidates(note.call) + runtime.chaos.candidates()

    def _decide_and_apply(self, flow: http.HTTPFlow, note: Note, candidates: tuple[CandidateRule, ...], *,
                          with_body: bool = False) -> Awaitable[None] | None:
        """Decide now (or once the address is resolved, for a rule that needs it) and apply."""
        if needs_address(candidates) and not self.resolver.known(flow.request.host)[0]:
            return self._resolved(flow, note, candidates, with_body)
        decision = self._decide(flow, note, candidates, with_body=with_body)
        return self._apply(flow, decision, "request") if decision else None

    def _other_traffic(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """A request that is not an AWS call: only rules for all traffic may drop it."""
        engine = self.runtime.engine
        candidates = engine.rules.other_candidates() if engine is not None else ()
        if not candidates:
            return None
        note = Note(OTHER_TRAFFIC)  # not recorded: the report is about AWS calls
        if needs_address(candidates) and not self.resolver.known(flow.request.host)[0]:
            return self._resolved(flow, note, candidates, False)
        decision = self._decide(flow, note, candidates)
        return self._apply(flow, decision, "request") if decision else None

    async def _resolved(self, flow: http.HTTPFlow, note: Note, candidates: tuple[CandidateRule, ...],
                        with_body: bool) -> None:
        try:
            await self.resolver.resolve(flow.request.host, flow.request.port)
            decision = self._decide(flow, note, candidates, with_body=with_body)
        except Exception:
            logger.exception("fisproxy: error while handling %s; passing it through", where(flow))
            return
        if decision and flow.live:
            await self._apply(flow, decision, "request")

    def _decide(self, flow: http.HTTPFlow, note: Note, candidates: tuple[CandidateRule, ...], *,
                with_body: bool = False) -> Decision | None:
        runtime = self.runtime
        call = note.call
        req = flow.request
        body = req.raw_content if with_body else None
        parts = RequestParts(req.method, req.path, req.headers, body, host=original_host(flow),
                             address=self.resolver.known(req.host)[1])
        decision = note.decision = decide(call, candidates, runtime.rng, parts, runtime.limits)
        if not decision:
            return None
        flow.metadata["fisproxy"] = {  # plain values, for scripts and mitmproxy's console
            "service": call.service, "region": call.region, "operation": call.operation,
            "faults": list(decision.labels),
        }
        return decision

    async def _apply(self, flow: http.HTTPFlow, decision: Decision, phase: Phase) -> None:
        """Apply the faults of one phase: `request` before forwarding, `response` after the
        upstream answered (from responseheaders)."""
        runtime = self.runtime
        assert runtime.sink is not None
        try:
            if phase == "request":
                self._log(flow, decision)
                self._mark(flow, decision)
            else:
                apply.on_responseheaders(flow)
            env = Env(decision.call, runtime.sink, lambda f: self._mark(f, decision))
            for fault in decision.latencies:
                if fault.spec.phase == phase:
                    await KINDS["latency"].apply(flow, fault, phase, env)
            terminal = decision.terminal
            if (terminal is None or terminal.spec.phase != phase or not flow.live
                    or (terminal.stopped is not None and terminal.stopped.is_set())):
                return
            kind = KINDS[terminal.spec.kind]
            if phase in kind.phases:
                await kind.apply(flow, terminal, phase, env)
        except Exception:  # the error boundary of the async part
            logger.exception("fisproxy: error while faulting %s; passing it through", where(flow))

    def _mark(self, flow: http.HTTPFlow, decision: Decision) -> None:
        settings = self.runtime.settings
        labels = ", ".join(decision.labels)
        comment = f"fisproxy: {labels} on {_what(flow, decision)}"
        apply.mark(flow, labels if settings is None or settings.fault_header else None, comment)

    def _log(self, flow: http.HTTPFlow, decision: Decision) -> None:
        settings = self.runtime.settings
        if settings is not None and settings.quiet:
            return
        for fault in decision.faults:
            logger.info("fault %s -> %s", fault.label, _what(flow, decision))


def _what(flow: http.HTTPFlow, decision: Decision) -> str:
    call = decision.call
    if call is OTHER_TRAFFIC:  # not an AWS call: where it went
        return f"{original_host(flow)}:{flow.request.port}"
    return f"{call.service}.{call.operation or '?'} ({call.region or '-'})"


def where(flow: http.HTTPFlow) -> str:
    """Method, host and path for log lines: never the query (presigned URLs carry credentials)."""
    req = flow.request
    return f"{req.method} {req.pretty_host}{req.path.split('?', 1)[0]}"
