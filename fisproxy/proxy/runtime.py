"""What one running fisproxy owns, acquired when mitmproxy is running and released when done.

The `Runtime` addon declares the `fisproxy_*` options, validates them in `configure`, and in
`running` opens, off the event loop, everything the other addons use: the store, the engine and
its threads, the Chaos rules, the FIS API and the control port, the request recorder, the
metrics, and the fault sink. Until that is done `ready` is False and the other addons let
traffic pass untouched. `done` releases it all and awaits every task it started.

The other addons (`proxy/addons.py` lists them) hold a reference to this one and read its
attributes; nothing lives in module globals, so a script reload under `mitmdump -s` starts clean.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import random
import secrets
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions

from fisproxy import __version__, placement
from fisproxy.aws.identify import warm
from fisproxy.fis.api import FisApi
from fisproxy.fis.chaos import ChaosApi, ChaosState
from fisproxy.fis.engine import Engine
from fisproxy.fis.loops import EngineLoops
from fisproxy.fis.proxyfaults import Placement
from fisproxy.fis.ratelimit import SYNC_SECONDS, RateLimits
from fisproxy.fis.templates_file import apply_templates
from fisproxy.housekeeping import Housekeeping
from fisproxy.httpdata import ApiRequest, ApiResponse
from fisproxy.metrics import Metrics
from fisproxy.proxy.auth import exposure_warnings
from fisproxy.proxy.certs import CA_CERT
from fisproxy.proxy.control import ControlPlane, ControlRouter
from fisproxy.proxy.controlserver import ControlServer
from fisproxy.proxy.notes import FlowNotes
from fisproxy.proxy.settings import (
    OPTION_NAMES,
    SecretOptions,
    Settings,
    declare_options,
    parse_options,
)
from fisproxy.proxy.sink import FaultSink
from fisproxy.reports.delivery import ReportDelivery
from fisproxy.reports.service import ReportBuilder, report_handler
from fisproxy.requestlog import Recorder
from fisproxy.store import StoreBackend, StoreUnavailable, open_store

logger = logging.getLogger("fisproxy")

STREAM_LARGE_BODIES = "1m"
CHAOS_DOC = ("chaos", "config")
CHAOS_CHANGES = "chaos"


class Runtime:
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self._values: dict[str, Any] = {}  # parsed option values, by setting name
        self._parsed: set[str] = set()  # the options those come from
        self._secrets = SecretOptions()
        self.rng = random.Random()
        self.ready = False
        self.failed: str | None = None  # why start-up failed (the process then exits)
        self.store: StoreBackend | None = None
        self.engine: Engine | None = None
        self.loops: EngineLoops | None = None
        self.chaos: ChaosState | None = None
        self.plane: ControlPlane | None = None
        self.fis_api: FisApi | None = None  # the FIS API, also for mitmproxy's commands
        self.control: ControlServer | None = None
        self.recorder: Recorder | None = None
        self.metrics: Metrics | None = None
        self.sink: FaultSink | None = None
        self.reports: ReportBuilder | None = None
        self.delivery: ReportDelivery | None = None  # FIS's reports, to S3
        self.notes = FlowNotes()  # per-flow facts shared by the injector and the recorder
        # This process among the proxies sharing a store: the name its leases carry.
        self.proxy_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        # The buckets of rate-limited rules: read per request, shared with the fleet by a task.
        self.limits = RateLimits(self.proxy_id)
        self._subscriptions: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._starting: asyncio.Task[None] | None = None

    # ---- options ---------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        declare_options(loader)

    def configure(self, updated: set[str]) -> None:
        if not updated & (OPTION_NAMES | {"proxyauth"}):
            return
        try:
            real = self._secrets.take(ctx.options, updated)  # secrets: hidden in the options
            changed = (updated | (OPTION_NAMES - self._parsed)) & OPTION_NAMES
            values = {**self._values, **parse_options(ctx.options, changed, real)}
            self.settings = Settings.from_values(values)
        except ValueError as e:  # a SettingError: the option's name and what is wrong
            raise exceptions.OptionsError(str(e)) from e
        self._values, self._parsed = values, self._parsed | changed
        if "fisproxy_seed" in updated:
            self.rng.seed(self.settings.seed)
        self._secrets.hide(ctx.options)

    # ---- lifecycle -------------------------------------------------------------------

    def running(self) -> None:
        # Sync on purpose: mitmproxy re-runs `running` synchronously after a script reload.
        self._require_core_options()
        if self._starting is None:
            self._warn_exposure()  # once, with the options the proxy starts with
            self._starting = self.spawn(self._start(), "fisproxy-start")

    def _warn_exposure(self) -> None:
        settings = self.settings
        assert settings is not None  # configured before running
        control_host = settings.control_host if settings.control_port else "127.0.0.1"
        for line in exposure_warnings(ctx.options.listen_host, getattr(ctx.options, "proxyauth", None),
                                      settings.control_auth, control_host=control_host):
            logger.warning(line)

    def _require_core_options(self) -> None:
        """Two mitmproxy options fisproxy relies on, set when the user left their defaults."""
        options = ctx.options
        if options.connection_strategy != "lazy" and not _changed(options, "connection_strategy"):
            # Injected answers and the FIS hostnames must never wait for an upstream connection
            # (with --aws-endpoint the AWS hostnames do not even resolve).
            logger.info("fisproxy: setting connection_strategy=lazy (injected answers must not "
                        "wait for an upstream connection)")
            options.update(connection_strategy="lazy")
        if not options.stream_large_bodies:
            # Large bodies (S3 objects) stream through in both directions, never held whole.
            logger.info("fisproxy: setting stream_large_bodies=%s (large bodies stream, never "
                        "held in memory)", STREAM_LARGE_BODIES)
            options.update(stream_large_bodies=STREAM_LARGE_BODIES)

    async def _start(self) -> None:
        assert self.settings is not None
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._open, self.settings, loop)
        except Exception as e:
            # Never a proxy that looks alive but answers nothing: stop, and say why.
            logger.error("fisproxy: could not start: %s", e)
            self.failed = str(e)
            ctx.master.shutdown()
            return
        assert self.sink is not None and self.recorder is not None and self.loops is not None
        await self.sink.start()
        self.spawn(self.recorder.run(), "fisproxy-recorder")
        self.spawn(self._share_rates(), "fisproxy-rates")
        self.loops.start()
        if self.delivery is not None:
            self.delivery.start()
        warm()
        # botocore's models and our indexes are large and live forever: move them out of the
        # garbage collector's way, or every full collection walks them (measured: ~5% of
        # throughput in bench/overhead.py).
        gc.collect()
        gc.freeze()
        self.ready = True

    def _open(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        """Everything that touches the store at start-up, in a worker thread."""
        if settings.placement == Placement():  # not given: ask the platform (ECS, EC2)
            settings = self.settings = dataclasses.replace(settings, placement=placement.discover())
            if settings.placement != Placement():
                logger.info("fisproxy: placed in %s (from the platform's metadata)", settings.placement)
        self.store = store = open_store(settings.store_url, settings.state)
        self.reports = ReportBuilder(settings.store_url, str(settings.state), endpoint=settings.aws_endpoint)
        self.delivery = ReportDelivery(store, self.reports, holder=self.proxy_id)
        self.engine = Engine(
            store, state_dir=settings.state.parent, rng=self.rng, loop=loop,
            upstream_endpoint=settings.aws_endpoint, account_id=settings.account_id,
            placement=settings.placement, proxy_id=self.proxy_id,
            fail_unperformable=settings.fail_unperformable,
        )
        self.chaos = chaos = ChaosState(load=lambda: store.get_doc(*CHAOS_DOC), save=self._save_chaos)
        self._subscriptions = [
            self.engine.follower.subscribe(),
            store.subscribe((CHAOS_CHANGES,), lambda kind, key: chaos.reload()),
        ]
        self.fis_api = fis_api = FisApi(store, self.engine, account_id=settings.account_id,
                                        max_active_experiments=settings.max_active_experiments,
                                        roles=settings.roles)
        self.recorder = recorder = Recorder(store)
        self.metrics = Metrics(self.engine.active_count, shared=store)
        router = ControlRouter(
            fis=fis_api, chaos=ChaosApi(self.chaos),
            extra=(self.metrics.handle,
                   report_handler(builder=self.reports, flush=recorder.flush),
                   self._proxies),
            health=self.describe,
        )
        self.plane = ControlPlane(router, settings.control_auth, settings.browser)
        self.engine.resume()
        for path in settings.templates:
            try:
                apply_templates(path, fis_api)
            except ValueError as e:  # names the file and the field
                logger.error("fisproxy: templates not applied: %s", e)
        self.loops = EngineLoops(self.engine, housekeeping=Housekeeping(
            store, self.engine, self.proxy_id, self.describe, metrics=self.metrics, chaos=self.chaos))
        self.sink = FaultSink()
        if settings.control_port:
            self.control = ControlServer(self.plane, settings.control_host, settings.control_port,
                                         reuse_port=settings.reuse_port)
            try:
                self.control.start()
            except OSError as e:
                self.control = None
                logger.error("fisproxy: control API not started: %s:%d: %s",
                             settings.control_host, settings.control_port, e.strerror or e)
            else:
                logger.info("fisproxy: control API listening at http://%s:%d",
                            settings.control_host, settings.control_port)

    async def _share_rates(self) -> None:
        """Fleet-scoped rate limits: every SYNC_SECONDS, off the loop, take from the store's
        buckets what this proxy's demand needs (`fis/ratelimit.py`). A store that fails: the
        tokens held are spent, then calls are throttled until it is back."""
        store = self.store
        assert store is not None
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            if self.limits.due():
                try:
                    await asyncio.to_thread(self.limits.sync, store)
                except StoreUnavailable as e:
                    logger.debug("fisproxy: rate limits not shared this time: %s", e)
                except Exception:
                    logger.exception("fisproxy: could not share the rate limits; retrying")

    def _save_chaos(self, doc: dict[str, Any]) -> None:
        assert self.store is not None
        self.store.put_doc(*CHAOS_DOC, doc)
        self.store.publish_change(CHAOS_CHANGES, CHAOS_DOC[1])

    def _proxies(self, request: ApiRequest) -> ApiResponse | None:
        """`GET /_fisproxy/proxies`: the proxies sharing this store (the fleet listing)."""
        if request.path != "/_fisproxy/proxies":
            return None
        assert self.store is not None
        return ApiResponse.json(200, {"proxies": self.store.list_proxies()})

    def describe(self) -> dict[str, Any]:
        """This proxy, as `fisproxy proxies` and /_fisproxy/health show it."""
        settings = self.settings
        placement = settings.placement if settings is not None else None
        return {
            "id": self.proxy_id, "version": __version__, "pid": os.getpid(), "host": socket.gethostname(),
            "placement": {k: v for k, v in dataclasses.asdict(placement).items() if v} if placement else {},
            "store": "redis" if settings is not None and settings.store_url else "sqlite",
            "caCert": str(Path(ctx.options.confdir).expanduser() / CA_CERT),
            "controlPort": settings.control_port if settings is not None else None,
        }

    async def done(self) -> None:
        self.ready = False
        if self._starting is not None:
            # Let start-up finish (its thread cannot be cancelled), then close what it opened.
            await asyncio.gather(self._starting, return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._starting = None
        if self.sink is not None:
            self.sink.stop()
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        for sub in self._subscriptions:
            sub.close()
        self._subscriptions = []
        if self.control is not None:
            self.control.stop()
        if self.delivery is not None:
            self.delivery.stop()
        if self.loops is not None:
            self.loops.stop()
        if self.engine is not None:
            self.engine.close()
        if self.recorder is not None:
            self.recorder.flush()  # what the background task had not written yet
        if self.metrics is not None:
            self.metrics.flush()
        if self.reports is not None:
            self.reports.close()
        if self.store is not None:
            self.store.close()
        self.control = self.loops = self.engine = self.recorder = self.store = self.fis_api = None

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a task this runtime owns: kept referenced, cancelled and awaited in `done`."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _changed(options: Any, name: str) -> bool:
    """Whether the user set option `name` to something other than its default."""
    try:
        return bool(options._options[name].has_changed())
    except (AttributeError, KeyError):
        return True
