"""The small interface every resource action implements, and what it is given.

An action that FIS performs on AWS resources (stop instances, fail over a cluster, run an SSM
command) is one small class per action id, registered by id (Toxiproxy-style). Its life, driven
by the engine from a worker thread (every call here blocks on the upstream):

- `start(ctx)`: apply the effect (stop the instances). Raise `Failure` to fail the action.
- `wait(ctx)`, only for a `WaitingAction`: block until the effect is done (the SSM command has
  finished), returning early when `ctx.cancelled` is set, never waiting past `ctx.deadline`.
- `stop(ctx)`: undo what `start` did, if the action undoes anything (start the instances
  again): when the action's time is up, when the experiment ends early (however it ends), and
  after a failed `start` or `wait` (to undo what was done before the failure). Never interrupted
  by `ctx.cancelled`: it must leave nothing half-done. A failed undo is tried again
  (`UNDO_ATTEMPTS`, backing off) unless its failure cannot change (`InvalidTarget`,
  `ConfigurationFailure`); the last failure is the action's, and the experiment's log says it.
- `recover(ctx)`, only for a `RecoverableAction`: the proxy died after recording its intent to
  `start` but before recording that `start` returned. Look at the upstream (the instances'
  state, the command carrying `ctx.who()` as its comment) and fill `ctx.state` as `start` would
  have; True if the effect is there (so `start` must not run again). An action without it is not
  started again (at most once: the log says so), since the upstream cannot tell.

An action without `wait` ends at its deadline (its duration parameter, e.g.
`startInstancesAfterDuration`) or, without one, as soon as `start` returns. `perform` is that
sequence, for the engine or a test. What `stop` needs is kept in `ctx.state`, a JSON-safe dict
the engine may persist, so a restarted proxy can still undo.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources.targets import ResolvedTarget
from fisproxy.fis.upstream import UPSTREAM_ERRORS, describe_error, error_code, lacks_api

T = TypeVar("T")


class Clients(Protocol):
    """Where an action's clients come from: the experiment role's session."""

    def client(self, service: str, region: str | None = None) -> Any: ...

    @property
    def account_id(self) -> str: ...


@dataclass
class ActionContext:
    """What one run of one action gets. `targets` maps the action's target keys (`Instances`)
    to what they resolved to; `deadline` is a `time.monotonic()` instant or None."""

    experiment_id: str
    action_name: str
    action_id: str
    clients: Clients | None
    targets: Mapping[str, ResolvedTarget]
    parameters: Mapping[str, str]
    region: str
    log: Callable[[str], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Set (with `cancelled`) when the proxy shuts down mid-action: end now, undo nothing.
    abandoned: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None
    rng: random.Random = field(default_factory=random.Random)
    state: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    # "apply" while the action does its effect, "undo" in `stop` (what `log` says it undid).
    phase: Literal["apply", "undo"] = "apply"

    def client(self, service: str, region: str | None = None) -> Any:
        return self._session().client(service, region or self.region)

    @property
    def account_id(self) -> str:
        """The experiment role's account."""
        return self._session().account_id

    def _session(self) -> Clients:
        if self.clients is None:
            raise Failure(f"{self.action_id}: no experiment role session", "ConfigurationFailure")
        return self.clients

    def target(self, key: str) -> ResolvedTarget:
        """The resolved target under `key`; Failure if the action has none there."""
        target = self.targets.get(key)
        if target is None:
            raise Failure(f'{self.action_id} needs a "{key}" target', "ConfigurationFailure")
        return target

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def sleep(self, seconds: float) -> bool:
        """Wait `seconds` (capped at the deadline); True if the experiment was cancelled."""
        left = self.remaining()
        if left is not None:
            seconds = min(seconds, left)
        return self.cancelled.wait(max(0.0, seconds))

    def flag(self, name: str) -> bool:
        return self.parameters.get(name, "false").strip().lower() == "true"

    def who(self) -> str:
        """How calls say who made them (StopTask reasons, zonal shift comments)."""
        return f"fisproxy experiment {self.experiment_id}, action {self.action_name}"


@runtime_checkable
class ResourceAction(Protocol):
    def start(self, ctx: ActionContext) -> None: ...

    def stop(self, ctx: ActionContext) -> None: ...


@runtime_checkable
class WaitingAction(ResourceAction, Protocol):
    def wait(self, ctx: ActionContext) -> None: ...


@runtime_checkable
class RecoverableAction(ResourceAction, Protocol):
    def recover(self, ctx: ActionContext) -> bool: ...


class Immediate:
    """Base for actions whose effect is done once `start` returns and that undo nothing."""

    def start(self, ctx: ActionContext) -> None:
        raise NotImplementedError(type(self).__name__)

    def stop(self, ctx: ActionContext) -> None:
        return None


IMPLEMENTATIONS: dict[str, type[ResourceAction]] = {}

A = TypeVar("A", bound=type)


def register(*action_ids: str) -> Callable[[A], A]:
    def add(cls: A) -> A:
        for action_id in action_ids:
            IMPLEMENTATIONS[action_id] = cls
        return cls

    return add


def implementation(action_id: str) -> ResourceAction:
    """A fresh instance of the action's implementation; KeyError if it has none."""
    return IMPLEMENTATIONS[action_id]()


UNDO_ATTEMPTS = 5
UNDO_FIRST_RETRY_SECONDS = 1.0  # then doubled: 1, 2, 4, 8 s between the attempts
_FINAL = frozenset({"InvalidTarget", "ConfigurationFailure"})  # failures a retry cannot change


def perform(action: ResourceAction, ctx: ActionContext, *, started: bool = False,
            on_started: Callable[[], None] | None = None) -> None:
    """Run one action to its end: start, then wait (its own way, or until the deadline), then
    undo (`undo`). Failure if it failed; the undo has run either way, unless the action was
    abandoned (the proxy is shutting down: whoever resumes the experiment undoes it).

    `started`: `start` already ran (an experiment resumed after a restart): only wait and undo.
    `on_started`: called once `start` returned, so `ctx.state` can be saved before waiting."""
    with upstream_call(ctx.action_id):  # an upstream failure outside the actions' own blocks
        try:
            if not started:
                action.start(ctx)
                if on_started is not None:
                    on_started()
            if isinstance(action, WaitingAction):
                action.wait(ctx)
            elif ctx.deadline is not None:
                while not ctx.cancelled.is_set() and (ctx.remaining() or 0) > 0:
                    ctx.sleep(ctx.remaining() or 0)
        finally:
            if not ctx.abandoned.is_set():
                undo(action, ctx)


def undo(action: ResourceAction, ctx: ActionContext, *, attempts: int = UNDO_ATTEMPTS,
         first_retry: float = UNDO_FIRST_RETRY_SECONDS) -> None:
    """`action.stop(ctx)`, tried again while it fails in a way a retry may change; the last
    Failure says how often it was tried. A shutdown (`ctx.abandoned`) ends the retries."""
    wait = first_retry
    ctx.phase = "undo"
    for attempt in range(1, attempts + 1):
        try:
            action.stop(ctx)
            return
        except Failure as err:
            if attempt == attempts or err.code in _FINAL or err.skippable or ctx.abandoned.is_set():
                tried = f" (tried {attempt} times)" if attempt > 1 else ""
                raise Failure(f"{err.reason}{tried}", err.code, err.location, skippable=err.skippable) from err
            ctx.log(f"Undo failed: {err.reason}; trying again in {wait:g} s.")
        if ctx.abandoned.wait(wait):
            return
        wait *= 2


@contextmanager
def upstream_call(what: str) -> Iterator[None]:
    """Turn an upstream failure inside the block into a Failure: `<what> failed on the
    upstream: <its code and message, or its status and an excerpt of an answer that is not
    AWS's>`. `what` starts with the service and operation (`rds FailoverDBCluster of db1`):
    an upstream that does not implement that operation makes the failure `skippable`."""
    try:
        yield
    except UPSTREAM_ERRORS as err:
        if lacks_api(err):
            words = what.split(" ", 2)
            api = " ".join(words[:2]) if len(words) > 1 else f"{what} ({getattr(err, 'operation_name', '?')})"
            rest = f" ({words[2]})" if len(words) > 2 else ""
            raise Failure(f"the upstream does not implement {api}{rest}: it answered {describe_error(err)}",
                          "DependentServiceFailure", skippable=True) from err
        raise Failure(f"{what} failed on the upstream: {describe_error(err)}", error_code(err)) from err


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def share(items: Sequence[T], percentage: int, rng: random.Random) -> list[T]:
    """`percentage` of `items` chosen at random, at least one when there are any (FIS's
    drainage and termination percentages act on at least one instance)."""
    if not items:
        return []
    k = max(1, len(items) * percentage // 100)
    chosen = sorted(rng.sample(range(len(items)), min(k, len(items))))
    return [items[i] for i in chosen]


def poll(ctx: ActionContext, check: Callable[[], T | None], *, interval: float = 0.5,
         max_interval: float = 5.0, timeout: float | None = None, undoing: bool = False) -> T | None:
    """Call `check` until it returns something or `timeout` seconds pass; the interval grows to
    `max_interval`. While applying an effect (`undoing` False) it also gives up at the deadline
    and when the experiment is cancelled; while undoing (in `stop`) neither interrupts it."""
    end = None if timeout is None else ctx.clock() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        now = ctx.clock()
        if end is not None and now >= end:
            return None
        if not undoing and ctx.deadline is not None and now >= ctx.deadline:
            return None
        wait = interval if end is None else min(interval, max(0.0, end - now))
        if undoing:
            time.sleep(wait)
        elif ctx.sleep(wait):
            return None
        interval = min(max_interval, interval * 1.5)
