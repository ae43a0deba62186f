"""The fisproxy mitmproxy addon: identify every AWS call, ask which faults apply, apply them.

Per flow, `requestheaders` does guard -> identify -> decide -> apply, from headers alone so
large bodies stream. Query/ec2 calls whose `Action` is only in the (small, form-encoded) body
are decided in `request` once the body is there. Faults with phase `response` run in
`responseheaders`, after the upstream answered. Control-plane requests (the control listener,
and `fis.<region>.amazonaws.com` through the proxy) are answered in `request`.

State (store, engine, chaos rules, fault sink) is acquired in `running` and released in
`done`, never held in module globals, so script reloads under `mitmdump -s` stay clean.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import random
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mitmproxy import command, ctx, exceptions, http

from fisproxy.aws.call import AwsCall
from fisproxy.aws.errors import ErrorResponse, render_error, standard_error
from fisproxy.aws.identify import complete, identify, is_aws_host, warm
from fisproxy.aws.sts import learn_credentials
from fisproxy.fis.api import FisApi
from fisproxy.fis.chaos import ChaosApi, ChaosState
from fisproxy.fis.engine import Engine
from fisproxy.fis.faults import Fault, Phase
from fisproxy.fis.templates_file import apply_templates, load_templates
from fisproxy.httpdata import ApiRequest, ApiResponse
from fisproxy.metrics import Metrics
from fisproxy.proxy import apply
from fisproxy.proxy.auth import denied_response, exposure_warnings
from fisproxy.proxy.control import ControlRouter, fis_host_region
from fisproxy.proxy.settings import Settings, default_state_path
from fisproxy.report import report_handler
from fisproxy.reportcli import experiment_row
from fisproxy.requestlog import Recorder, RequestRecord, parse_sdk_headers
from fisproxy.store import Store

logger = logging.getLogger("fisproxy")

STS_LEARNING_OPERATIONS = frozenset(
    {"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "GetCallerIdentity"}
)
STREAM_LARGE_BODIES = "1m"


@dataclass(frozen=True, slots=True)
class Decision:
    """What was decided for one flow, kept until the flow ends: every delay, then at most one
    error or disconnect (one request can fail only one way; FIS actions before Chaos rules)."""

    call: AwsCall
    latencies: tuple[Fault, ...] = ()
    terminal: Fault | None = None
    labels: tuple[str, ...] = ()

    @classmethod
    def of(cls, call: AwsCall, faults: list[Fault]) -> Decision:
        latencies = tuple(f for f in faults if f.spec.kind == "latency")
        terminal = next((f for f in faults if f.spec.kind != "latency"), None)
        applied = (*latencies, terminal) if terminal else latencies
        return cls(call, latencies, terminal, tuple(f.label for f in applied))

    @property
    def faults(self) -> tuple[Fault, ...]:
        return (*self.latencies, self.terminal) if self.terminal else self.latencies


class FisProxy:
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.store: Store | None = None
        self.engine: Engine | None = None
        self.chaos: ChaosState | None = None
        self.router: ControlRouter | None = None
        self.sink: apply.FaultSink | None = None
        self.recorder: Recorder | None = None
        self.metrics: Metrics | None = None
        self.rng = random.Random()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._decisions: dict[str, Decision] = {}
        self._deferred: dict[str, AwsCall] = {}  # calls to complete once their form body is in
        self._control_flows: set[str] = set()  # control-plane requests, answered in `request`
        self._control_spec: str | None = None

    # ---- lifecycle -------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option(
            "fisproxy_control_port", int, 8082,
            "Port of the control API listener (FIS API, LocalStack Chaos API, health, metrics), "
            "bound to listen_host (127.0.0.1 when listen_host is empty). 0 disables the listener; "
            "the FIS API stays reachable through the proxy as fis.<region>.amazonaws.com.",
        )
        loader.add_option(
            "fisproxy_aws_endpoint", str | None, None,
            "Send all AWS traffic to this endpoint (moto, LocalStack) instead of real AWS, "
            "keeping the original Host header. Unset: traffic goes to AWS unchanged.",
        )
        loader.add_option(
            "fisproxy_state", str, str(default_state_path()),
            "SQLite file holding templates, experiments and logs; survives restarts.",
        )
        loader.add_option(
            "fisproxy_templates", Sequence[str], [],
            "YAML or JSON files of experiment templates, created or updated (matched by their "
            "Name tag) at start-up.",
        )
        loader.add_option(
            "fisproxy_seed", int | None, None,
            "Seed for every random choice (percentage sampling, jitter, target selection), "
            "making runs reproducible. Unset: random.",
        )
        loader.add_option(
            "fisproxy_account_id", str, "123456789012",
            "AWS account id used in FIS ARNs.",
        )
        loader.add_option(
            "fisproxy_fault_header", bool, True,
            "Add an x-fisproxy-fault header (experiment/action/kind) to every faulted response.",
        )
        loader.add_option(
            "fisproxy_quiet", bool, False,
            "Do not log a line per injected fault.",
        )
        loader.add_option(
            "fisproxy_control_token", str | None, None,
            "Token the control APIs (the control listener, and the FIS API through the proxy) "
            "require, as 'Authorization: Bearer <token>' or 'x-fisproxy-token: <token>'. With "
            "this or fisproxy_control_credentials set, other requests get 403; "
            "GET /_fisproxy/health stays open.",
        )
        loader.add_option(
            "fisproxy_control_credentials", Sequence[str], [],
            "ACCESS_KEY_ID:SECRET_ACCESS_KEY pairs whose SigV4-signed requests the control APIs "
            "accept: give the AWS CLI or SDK that drives FIS the same credentials. Sets "
            "keep_host_header, so the signed Host header reaches fisproxy unchanged.",
        )
        loader.add_option(
            "fisproxy_metrics_public", bool, False,
            "Serve /metrics without credentials even when control API authentication is on.",
        )

    def configure(self, updated: set[str]) -> None:
        if not updated & {
            "fisproxy_control_port", "fisproxy_aws_endpoint", "fisproxy_state",
            "fisproxy_templates", "fisproxy_seed", "fisproxy_account_id", "listen_host",
            "fisproxy_fault_header", "fisproxy_quiet", "fisproxy_control_token",
            "fisproxy_control_credentials", "fisproxy_metrics_public", "proxyauth",
        }:
            return
        try:
            self.settings = Settings.from_options(ctx.options)
            if "fisproxy_templates" in updated:
                for path in self.settings.templates:
                    load_templates(path)  # a bad file stops start-up with one line naming the field
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from e
        if "fisproxy_seed" in updated:
            self.rng.seed(self.settings.seed)
        if updated & {"fisproxy_control_port", "listen_host"}:
            self._update_control_listener()
        if self.settings.control_auth.credentials and not ctx.options.keep_host_header:
            # Reverse mode rewrites Host to the (never contacted) control target; SigV4 signs it.
            ctx.options.update(keep_host_header=True)
        if updated & {"listen_host", "proxyauth", "fisproxy_control_port", "fisproxy_control_token",
                      "fisproxy_control_credentials"}:
            self._warn_exposure()

    def _warn_exposure(self) -> None:
        assert self.settings is not None
        control_host = self.settings.control_host if self.settings.control_port else "127.0.0.1"
        proxyauth = getattr(ctx.options, "proxyauth", None)
        for line in exposure_warnings(ctx.options.listen_host, proxyauth, self.settings.control_auth,
                                      control_host=control_host):
            logger.warning(line)

    def _update_control_listener(self) -> None:
        assert self.settings is not None
        modes = [m for m in ctx.options.mode if m != self._control_spec]
        self._control_spec = self.settings.control_mode_spec()
        if self._control_spec:
            modes.append(self._control_spec)
        if modes != list(ctx.options.mode):
            ctx.options.update(mode=modes)

    def running(self) -> None:
        # Sync on purpose: mitmproxy re-runs `running` synchronously after a script reload.
        assert self.settings is not None
        if ctx.options.connection_strategy != "lazy":
            # Injected answers, the control listener and unresolvable AWS hosts (with an
            # endpoint override) must never wait for an upstream connection.
            ctx.options.update(connection_strategy="lazy")
        if not ctx.options.stream_large_bodies:
            # Large bodies (S3 objects) stream through in both directions, never held whole.
            ctx.options.update(stream_large_bodies=STREAM_LARGE_BODIES)
        self.store = Store(self.settings.state)
        self.engine = Engine(
            self.store,
            state_dir=self.settings.state.parent,
            rng=self.rng,
            upstream_endpoint=self.settings.aws_endpoint,
            account_id=self.settings.account_id,
        )
        store = self.store
        self.chaos = ChaosState(
            load=lambda: store.get_doc("chaos", "config"),
            save=lambda doc: store.put_doc("chaos", "config", doc),
        )
        fis_api = FisApi(self.store, self.engine, account_id=self.settings.account_id)
        self.recorder = Recorder(self.store)
        self.metrics = Metrics(self.engine.active_count)
        self.router = ControlRouter(
            fis=fis_api, chaos=ChaosApi(self.chaos),
            extra=(self.metrics.handle, report_handler(self.store)),
        )
        self.engine.resume()
        for path in self.settings.templates:
            try:
                apply_templates(path, fis_api)
            except ValueError as e:  # names the file and the field
                logger.error("fisproxy: templates not applied: %s", e)
        self.sink = apply.FaultSink()
        self._spawn(self.sink.start(), "fisproxy-sink")
        self._spawn(self.engine.run(), "fisproxy-engine")
        self._spawn(self.recorder.run(), "fisproxy-recorder")
        warm()
        # botocore's models and our indexes are large and live forever: move them out of the
        # garbage collector's way, or every full collection walks them (measured: ~5% of
        # throughput in bench/overhead.py).
        gc.collect()
        gc.freeze()

    def done(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self.sink:
            self.sink.stop()
        if self.engine:
            self.engine.close()
        if self.recorder:
            self.recorder.flush()  # what the background task had not written yet
        if self.store:
            self.store.close()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- commands (mitmweb's command bar, `POST /commands/<name>`) ---------------------

    @command.command("fisproxy.experiments")
    def experiments(self) -> str:
        """List experiments as JSON: id, template, state, reason, start and end times."""
        assert self.store is not None
        return json.dumps([experiment_row(e) for e in self.store.list_experiments()])

    @command.command("fisproxy.stop")
    def stop(self, experiment_id: str) -> str:
        """Stop a running experiment; returns its new state."""
        assert self.engine is not None
        try:
            return self.engine.stop_experiment(experiment_id).state.status
        except KeyError:
            raise exceptions.CommandError(f"no experiment {experiment_id}") from None

    # ---- hooks -----------------------------------------------------------------------
    # The per-request hooks are plain functions that return a coroutine only when there is
    # something to wait for (a delay, a hang): mitmproxy awaits what a hook returns, and the
    # common case, a call passed through untouched, then costs no coroutine at all.

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.error or not flow.live or self.engine is None:
            return None
        req = flow.request
        # The request's target host (absolute-form or CONNECT): a plain attribute, where
        # pretty_host would parse the Host header on every request.
        host = req.host
        if self._is_control(flow, host):
            self._control_flows.add(flow.id)  # answered in `request`, once the body is in
            if flow.response is not None and self._on_control_listener(flow) and _is_proxyauth_challenge(flow.response):
                # mitmproxy's proxyauth treats a reverse listener as a web server and wants
                # Basic auth from everyone; the control listener has its own (auth.py), and
                # health checks must pass without any.
                flow.response = None
            return None
        if flow.response:
            return None
        try:
            call = identify(req.method, host, req.path, req.headers)
            self._redirect(flow)
            if call is None:
                return None
            if call.needs_body:
                self._deferred[flow.id] = call
                return None  # decided in `request`; form bodies are small and buffered
            decision = self._decide(flow, call)
        except Exception:  # the one error boundary: log, let the flow go on untouched
            logger.exception("fisproxy: error while handling %s; passing it through", _where(flow))
            return None
        return self._apply(flow, decision, "request") if decision else None

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.id in self._control_flows:
            self._control_flows.discard(flow.id)
            if not (flow.response or flow.error) and flow.live:
                self._serve_control(flow)
            return None
        if flow.id not in self._deferred:
            return None
        if flow.response or flow.error or not flow.live:
            del self._deferred[flow.id]
            return None
        req = flow.request
        call = self._deferred.pop(flow.id)
        try:
            call = complete(call, req.host, req.raw_content or b"")
            decision = None if call.needs_body else self._decide(flow, call)
        except Exception:
            logger.exception("fisproxy: error while handling %s; passing it through", _where(flow))
            return None
        return self._apply(flow, decision, "request") if decision else None

    def responseheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        decision = self._decisions.get(flow.id)
        if decision is None or not decision.labels or flow.response is None:
            return None
        return self._apply(flow, decision, "response")

    def response(self, flow: http.HTTPFlow) -> None:
        decision = self._decisions.pop(flow.id, None)
        if decision is not None:
            self._record(flow, decision)
        if decision is None or self.engine is None or flow.response is None:
            return
        if decision.labels:
            apply.on_response(flow)
        call = decision.call
        if call.service == "sts" and call.operation in STS_LEARNING_OPERATIONS:
            try:
                learned = learn_credentials(call, flow.response.status_code, flow.response.content or b"")
            except Exception:
                logger.exception("fisproxy: could not read an STS response")
                return
            if learned:
                self.engine.learn_identity(*learned)

    def error(self, flow: http.HTTPFlow) -> None:
        decision = self._decisions.pop(flow.id, None)
        if decision is not None:
            self._record(flow, decision)
        self._deferred.pop(flow.id, None)
        self._control_flows.discard(flow.id)

    def _record(self, flow: http.HTTPFlow, decision: Decision) -> None:
        """One RequestRecord per identified AWS call, when its flow ends (response or error)."""
        if self.recorder is None or self.metrics is None:
            return
        try:
            req, call = flow.request, decision.call
            response = flow.response if flow.error is None else None
            ended = (response.timestamp_end if response else None) or time.time()
            invocation_id, attempt = parse_sdk_headers(req.headers)
            record = RequestRecord(
                time=req.timestamp_start,
                duration_ms=max(0.0, (ended - req.timestamp_start) * 1000.0),
                service=call.service, operation=call.operation, region=call.region,
                faults=decision.labels,
                status=response.status_code if response else None,
                invocation_id=invocation_id, attempt=attempt,
            )
            self.recorder.record(record)
            self.metrics.observe(record, [f.latency_ms for f in decision.latencies])
        except Exception:
            logger.exception("fisproxy: could not record a request")

    def client_disconnected(self, client: Any) -> None:
        apply.on_client_disconnected(client)

    # ---- deciding --------------------------------------------------------------------

    def _decide(self, flow: http.HTTPFlow, call: AwsCall) -> Decision | None:
        """Which faults apply to this call; None (and nothing to apply) if none."""
        assert self.engine is not None and self.chaos is not None
        if call.operation is None:
            return None  # not a call we understand: pass it through untouched
        decision = Decision.of(call, self.engine.match(call) + self.chaos.match(call, self.rng))
        # Kept until the flow ends: for recording, response-phase faults, learning from STS.
        self._decisions[flow.id] = decision
        if not decision.labels:
            return None
        flow.metadata["fisproxy"] = {  # for scripts and mitmproxy's console
            "service": call.service, "region": call.region, "operation": call.operation,
            "faults": list(decision.labels),
        }
        return decision

    async def _apply(self, flow: http.HTTPFlow, decision: Decision, phase: Phase) -> None:
        """Apply the faults of one phase: `request` before forwarding (from requestheaders or
        request), `response` after the upstream answered (from responseheaders)."""
        assert self.sink is not None
        try:
            if phase == "request":
                self._log(decision)
                self._mark(flow, decision)
            else:
                apply.on_responseheaders(flow)
            for fault in decision.latencies:
                if fault.spec.phase == phase:
                    await apply.wait(fault.latency_ms, fault.stopped, flow=flow)
            terminal = decision.terminal
            if terminal is None or terminal.spec.phase != phase or _is_stopped(terminal) or not flow.live:
                return
            if terminal.spec.kind == "error":
                err = self._error(decision.call, terminal, flow.request.method)
                if phase == "request":
                    apply.respond(flow, err.status, err.headers, err.body, sink=self.sink)
                else:
                    apply.respond_after_upstream(flow, err.status, err.headers, err.body)
                    self._mark(flow, decision)
            elif terminal.spec.mode == "hang":
                await apply.hang(flow, terminal.stopped)
            else:
                apply.drop(flow, terminal.spec.mode)
        except Exception:  # the error boundary of the async part
            logger.exception("fisproxy: error while faulting %s; passing it through", _where(flow))

    def _error(self, call: AwsCall, fault: Fault, method: str) -> ErrorResponse:
        spec = fault.spec
        status, code, message = standard_error(call, spec.error_kind or "internal")
        if spec.code and spec.code != code:
            # A custom code: take status and message from the service's own error of that
            # code when it is one (Throttling -> 400 "Rate exceeded"), else a plain message.
            known = (standard_error(call, kind) for kind in ("throttle", "unavailable", "internal"))
            status, code, message = next(
                (k for k in known if k[1] == spec.code), (status, spec.code, f"{spec.code} (injected by fisproxy)")
            )
        status = spec.status if spec.status is not None else status
        return render_error(call, status, code, spec.message or message, method=method)

    def _mark(self, flow: http.HTTPFlow, decision: Decision) -> None:
        assert self.settings is not None
        labels = ", ".join(decision.labels)
        call = decision.call
        comment = f"fisproxy: {labels} on {call.service}.{call.operation or '?'} ({call.region or '-'})"
        apply.mark(flow, labels if self.settings.fault_header else None, comment)

    def _log(self, decision: Decision) -> None:
        assert self.settings is not None
        if self.settings.quiet:
            return
        call = decision.call
        for fault in decision.faults:
            logger.info(
                "fault %s -> %s.%s (%s)", fault.label, call.service, call.operation or "?",
                call.region or "-",
            )

    # ---- routing ---------------------------------------------------------------------

    def _redirect(self, flow: http.HTTPFlow) -> None:
        """With --aws-endpoint, send AWS traffic there, keeping the original Host header."""
        assert self.settings is not None
        endpoint = self.settings.aws_endpoint_parts
        req = flow.request
        if endpoint is None or not is_aws_host(req.host):
            return
        host_header = req.host_header
        req.scheme, req.host, req.port = endpoint
        req.host_header = host_header

    def _on_control_listener(self, flow: http.HTTPFlow) -> bool:
        mode = getattr(flow.client_conn, "proxy_mode", None)
        return bool(self._control_spec) and mode is not None and mode.full_spec == self._control_spec

    def _is_control(self, flow: http.HTTPFlow, host: str) -> bool:
        if self._on_control_listener(flow):
            return True
        return host.startswith("fis") and fis_host_region(host) is not None

    def _serve_control(self, flow: http.HTTPFlow) -> None:
        assert self.router is not None and self.settings is not None
        req = flow.request
        split = urlsplit(req.path)
        body = req.raw_content or b""
        url = f"{req.scheme}://{req.host_header or req.pretty_host}{req.path}"
        refusal = self.settings.control_auth.check(req.method, url, req.headers, body)
        if refusal is not None:
            logger.info("fisproxy: control API request refused: %s %s: %s", req.method, split.path, refusal)
            denied = denied_response(refusal)
            flow.response = http.Response.make(denied.status, denied.body, dict(denied.headers))
            return
        api_request = ApiRequest(
            method=req.method,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=req.headers,
            body=body,
        )
        region = fis_host_region(req.pretty_host)
        if region is None:
            call = identify(req.method, req.pretty_host, req.path, req.headers)
            region = (call.region if call else None) or "us-east-1"
        try:
            response = self.router.handle(api_request, region)
        except Exception:
            logger.exception("fisproxy: control API error")
            response = ApiResponse.json(500, {"message": "internal error in fisproxy"})
        flow.response = http.Response.make(response.status, response.body, dict(response.headers))


def _where(flow: http.HTTPFlow) -> str:
    """Method, host and path for log lines: never the query (presigned URLs carry credentials)."""
    req = flow.request
    return f"{req.method} {req.pretty_host}{req.path.split('?', 1)[0]}"


def _is_stopped(fault: Fault) -> bool:
    return fault.stopped is not None and fault.stopped.is_set()


def _is_proxyauth_challenge(response: http.Response) -> bool:
    """The 401 mitmproxy's proxyauth addon answers unauthenticated reverse-mode requests with."""
    return response.status_code == 401 and response.headers.get("WWW-Authenticate", "").startswith("Basic realm=")
