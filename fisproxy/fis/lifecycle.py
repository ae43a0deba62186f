"""The experiment lifecycle as a pure function: events in, new state and effects out.

`step(run, now, event, account_id)` takes an experiment (`Experiment`, what the FIS API shows),
its `RunState` (what the engine keeps beside it), the time and one event, and returns the new
experiment and state with the effects to carry out: log a record, activate or deactivate an
action's rule, resolve the targets, perform or undo a resource action, save, deliver the logs.
No lock, store, thread or clock inside: the engine (`fis/engine.py`) feeds it events on its
threads and carries the effects out, as mitmproxy's server does for its proxy layers. The
inputs are never changed: a step that changes something works on copies.

FIS's lifecycle: StartExperiment creates the experiment `initiating` (`create`, which asks for
its targets to be resolved); `Resolved` checks the actions, logs the targets and makes it
`running`; actions start when every `startAfter` predecessor is done and end after their
duration (never, for actions without one: they run until the experiment ends). A resource action
ends when its worker says so (`ActionEnded`).

Every way an experiment ends goes through `_end`, the one end path: all actions completed,
StopExperiment, a stop condition, a stop handed over by another proxy, an action that failed,
the safety lever. It deactivates every rule and undoes every resource action under way at once;
the experiment shows `stopping` until their undo is done (its `RunState.stop` says how it will
end, so a restart or a takeover finishes it the same way), then ends as asked. A proxy that
takes the schedule over (`TakeOver`: a fleet takeover or a restart) resumes the resource actions
under way, and undoes them at once when the experiment was already ending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from fisproxy.fis import explog, ids
from fisproxy.fis.actions import ACTIONS, skip_reason
from fisproxy.fis.failure import Failure
from fisproxy.fis.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Experiment,
    ExperimentActionState,
    ExperimentActionStatus,
    ExperimentOptions,
    ExperimentState,
    ExperimentStatus,
    ExperimentTemplate,
)
from fisproxy.fis.resources.targets import ResolvedTarget
from fisproxy.fis.runstate import Phase, ResolvedSet, RunState, StopRequest

TERMINAL = TERMINAL_STATUSES
ACTIVE = ACTIVE_STATUSES
STOPPABLE = frozenset({"initiating", "running"})
ACTION_DONE = frozenset({"completed", "skipped"})
ACTION_TERMINAL = frozenset({"completed", "skipped", "cancelled", "stopped", "failed"})

# Reasons as real FIS words them; the rest follow the same style.
INITIATING = "Experiment is initiating."
RUNNING = "Experiment is running."
COMPLETED = "Experiment completed."
STOPPING = "Stopping Experiment."
STOPPED = "Experiment stopped."
ACTION_INITIAL = "Initial state."
ACTION_COMPLETED = "Action was completed."
ACTION_STOPPED = "Action was stopped."
ACTION_CANCELLED = "Action was cancelled."
ACTION_SKIPPED = "Action was skipped."
ACTION_NO_TARGETS = "Action was skipped: no targets were resolved."


# ---- events ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: complete due actions, start ready ones, finish a pending end."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """The targets resolved (by name), or the failure that stopped their resolution.
    `unresolved`: targets not resolved, and why (only skipped actions use them, or the upstream
    does not implement what lists them): the actions using them are skipped. `facts`: what
    proxy-fault actions read on the upstream (by action name)."""

    targets: Mapping[str, ResolvedTarget] | Failure
    unresolved: Mapping[str, str] = field(default_factory=dict)
    facts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stop:
    """StopExperiment, a stop condition, or a stop asked on another proxy: `stopping` now,
    ended as `final` says at the next step (once resource actions are undone)."""

    final: StopRequest
    reason: str = STOPPING
    condition: str | None = None  # a stop condition's description, for the experiment-end record


@dataclass(frozen=True, slots=True)
class Cancel:
    """The safety lever: ends `cancelled` now (once resource actions are undone)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ActionProgress:
    """A resource action's worker recorded how far it got (`intent`: before its upstream call;
    `started`: the effect is done) and what it needs to undo."""

    action: str
    phase: Phase
    state: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ActionEnded:
    """A resource action's worker ended: its effect done and undone, or `error`."""

    action: str
    error: Failure | None = None


@dataclass(frozen=True, slots=True)
class TakeOver:
    """This proxy runs the experiment's schedule from now (it took the lease: a restart, or
    the previous holder died): resume the resource actions under way where they were."""


Event = Tick | Resolved | Stop | Cancel | ActionProgress | ActionEnded | TakeOver


# ---- effects --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Log:
    log_type: explog.LogType
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Activate:
    """Put a running action's rule in force on this proxy."""

    action: str


@dataclass(frozen=True, slots=True)
class Deactivate:
    """End an action's faults now (if it had any)."""

    action: str


@dataclass(frozen=True, slots=True)
class Resolve:
    """Resolve the targets (on the upstream, with the experiment role); answer with Resolved."""


@dataclass(frozen=True, slots=True)
class Perform:
    """Run a resource action on a worker; `resumed`: it was under way before (a restart, a
    takeover): continue from `RunState.action_phase`."""

    action: str
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class Undo:
    """Undo a resource action under way now (its worker undoes, then answers ActionEnded)."""

    action: str


@dataclass(frozen=True, slots=True)
class Save:
    """Persist the experiment and its state."""


@dataclass(frozen=True, slots=True)
class DeliverLogs:
    """The experiment ended and its logConfiguration asks for its records upstream."""


@dataclass(frozen=True, slots=True)
class QueueReport:
    """The experiment ended and its experimentReportConfiguration asks for FIS's report."""


Effect = Log | Activate | Deactivate | Resolve | Perform | Undo | Save | DeliverLogs | QueueReport


@dataclass(frozen=True, slots=True)
class Step:
    experiment: Experiment
    state: RunState
    effects: tuple[Effect, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.effects)


# ---- the function ---------------------------------------------------------------------------

def create(template: ExperimentTemplate, *, experiment_id: str, arn: str, now: float, region: str,
           tags: Mapping[str, str], actions_mode: str, fail_unperformable: bool = False) -> Step:
    """A new experiment: `initiating`, actions `pending`, its targets to be resolved.
    `fail_unperformable`: actions fisproxy cannot perform fail it instead of being skipped."""
    experiment = Experiment.from_template(
        template, experiment_id=experiment_id, arn=arn, created=ids.timestamp(now), tags=tags,
        actions_mode=cast(Any, actions_mode or "run-all"))
    experiment.state = ExperimentState(status="initiating", reason=INITIATING)
    for action in experiment.actions.values():
        action.state = ExperimentActionState(status="pending", reason=ACTION_INITIAL)
    return Step(experiment, RunState(region=region, fail_unperformable=fail_unperformable), (Save(), Resolve()))


def step(experiment: Experiment, state: RunState, now: float, event: Event, account_id: str) -> Step:
    """The experiment after `event` at `now`, and what to do about it. No effects: nothing
    changed (the inputs are returned as they are)."""
    if isinstance(event, Tick) and not _due(experiment, state, now):
        return Step(experiment, state)
    t = _Transition(experiment.model_copy(deep=True), state.model_copy(deep=True), now, account_id)
    t.handle(event)
    if not t.effects:
        return Step(experiment, state)
    return Step(t.experiment, t.state, tuple(t.effects))


def is_resource(action_id: str) -> bool:
    spec = ACTIONS.get(action_id)
    return spec is not None and spec.kind == "resource"


def under_way(experiment: Experiment) -> list[str]:
    """The resource actions whose worker has not ended yet."""
    return [name for name, a in experiment.actions.items()
            if a.state.status == "running" and is_resource(a.action_id)]


def options(experiment: Experiment) -> ExperimentOptions:
    # Set on every experiment (Experiment.from_template); optional in the FIS shape.
    return experiment.experiment_options or ExperimentOptions()


def _due(e: Experiment, state: RunState, now: float) -> bool:
    """Whether a Tick changes anything: an action's end passed, or an end waits to finish."""
    if e.state.status == "running":
        return any(end is not None and now >= end for end in state.ends.values())
    return e.state.status == "stopping" and not under_way(e)


@dataclass
class _Transition:
    experiment: Experiment
    state: RunState
    now: float
    account_id: str
    effects: list[Effect] = field(default_factory=list)

    @property
    def status(self) -> ExperimentStatus:
        return self.experiment.state.status

    def log(self, log_type: explog.LogType, **details: Any) -> None:
        self.effects.append(Log(log_type, details))

    def handle(self, event: Event) -> None:
        if isinstance(event, Tick):
            if self.status == "running":
                self._advance()
            elif self.status == "stopping":
                self._finish_if_undone()
        elif isinstance(event, Resolved):
            if self.status == "initiating":
                self.state.unresolved = dict(event.unresolved)
                self.state.facts = {name: dict(f) for name, f in event.facts.items()}
                self._initiate(event.targets)
        elif isinstance(event, Stop):
            if self.status in STOPPABLE:
                if event.condition is not None:
                    self.state.stop_condition = event.condition
                self._end(event.final, stopping=event.reason, at_once=False)
        elif isinstance(event, Cancel):
            if self.status in ACTIVE:
                self._end(StopRequest(status="cancelled", reason=event.reason), stopping=event.reason)
        elif isinstance(event, ActionProgress):
            if self.experiment.actions.get(event.action) is not None:
                self.state.action_state[event.action] = dict(event.state)
                self.state.action_phase[event.action] = event.phase
                self.effects.append(Save())
        elif isinstance(event, ActionEnded):
            self._action_ended(event.action, event.error)
        elif isinstance(event, TakeOver):
            self._take_over()

    # ---- initiating -> running ----------------------------------------------------------

    def _initiate(self, resolution: Mapping[str, ResolvedTarget] | Failure) -> None:
        e = self.experiment
        self.log("experiment-start", experiment_template_id=e.experiment_template_id,
                 experiment_start_time=explog.timestamp(self.now))
        skip_all = options(e).actions_mode == "skip-all"
        try:
            if not skip_all:
                self._check_actions()
            self.state.resolved = self._record_resolution(resolution)
        except _ActionFailure as f:
            self._fail(f.failure, action=f.action)
            return
        except Failure as f:
            self._fail(f)
            return
        if skip_all:
            for name in e.actions:
                self._set_action(name, "skipped", ACTION_SKIPPED, started=False)
            self._end(StopRequest(status="completed", reason=COMPLETED))
            return
        e.state = ExperimentState(status="running", reason=RUNNING)
        self.state.ends = {}
        self.effects.append(Save())
        self._advance()

    def _check_actions(self) -> None:
        # Refuse what fisproxy cannot do before anything runs: never a silent success.
        e = self.experiment
        for name, action in e.actions.items():
            spec = ACTIONS.get(action.action_id)
            if spec is None:
                raise _ActionFailure(name, f'Action "{name}": {action.action_id} is not a FIS action.')
            if not spec.performable and self.state.fail_unperformable:
                raise _ActionFailure(name, f'Action "{name}": {spec.failure_reason}')
            try:
                spec.validate(action.parameters or {})
                spec.duration(action.parameters or {})
                spec.rule(action.parameters or {})
            except ValueError as err:
                raise _ActionFailure(name, f'Action "{name}" ({action.action_id}): {err}') from err
            for key, target_name in (action.targets or {}).items():
                if target_name not in (e.targets or {}):
                    raise _ActionFailure(
                        name, f'Action "{name}" targets "{key}": target "{target_name}" is not defined.')
            for before in action.start_after or []:
                if before not in e.actions:
                    raise _ActionFailure(
                        name, f'Action "{name}" starts after "{before}", which is not an action.')

    def _record_resolution(self, resolution: Mapping[str, ResolvedTarget] | Failure) -> dict[str, ResolvedSet]:
        """Log what the targets resolved to; Failure for a target that failed or came out empty
        where that is not allowed."""
        e, now = self.experiment, self.now
        empty_mode = options(e).empty_target_resolution_mode or "fail"
        resolved: dict[str, ResolvedSet] = {}
        for name, target in (e.targets or {}).items():
            self.log("target-resolution-start", target_name=name,
                     target_resolution_start_time=explog.timestamp(now))
            detail = {"target_name": name, "target_type": target.resource_type, "account_id": self.account_id,
                      "target_resolution_end_time": explog.timestamp(now)}
            if name in self.state.unresolved:  # the actions using it are skipped
                self.log("target-resolution-detail", **detail, resolved_targets_count=0,
                         status="skipped", error_information=self.state.unresolved[name])
                continue
            if isinstance(resolution, Failure):
                if resolution.location == name:
                    self.log("target-resolution-detail", **detail, resolved_targets_count=0,
                             status="failed", error_information=resolution.reason)
                    raise resolution
                continue
            res = resolution[name]
            self.log("target-resolution-detail", **detail, resolved_targets_count=len(res.arns),
                     status="completed")
            self.log("target-resolution-end", **{k: v for k, v in detail.items() if k != "account_id"},
                     resolved_targets=[{"arn": a} for a in res.arns], page=1, total_pages=1)
            if res.empty and (res.by_arn or empty_mode != "skip"):
                raise Failure(f'Target "{name}" resolved to no resources.', "InvalidTarget", name)
            resolved[name] = ResolvedSet.of(res)
        if isinstance(resolution, Failure):
            raise resolution  # not a target's failure: the role could not be assumed
        return resolved

    # ---- running ------------------------------------------------------------------------

    def _advance(self) -> None:
        """Complete due actions and start ready ones until nothing changes; end when all done."""
        e, ends = self.experiment, self.state.ends
        progress = True
        while progress and self.status == "running":
            progress = False
            for name, action in e.actions.items():
                status = action.state.status
                if status == "running":
                    end = ends.get(name)
                    if end is not None and self.now >= end:
                        self._set_action(name, "completed", ACTION_COMPLETED)
                        progress = True
                elif status == "pending" and all(
                    e.actions[b].state.status in ACTION_DONE for b in action.start_after or []
                ):
                    self._start_action(name)
                    progress = True
            if progress:
                self.effects.append(Save())
        if self.status == "running" and all(a.state.status in ACTION_DONE for a in e.actions.values()):
            self._end(StopRequest(status="completed", reason=COMPLETED))

    def _start_action(self, name: str) -> None:
        action = self.experiment.actions[name]
        skipped = skip_reason(action.action_id, action.targets, self.state.unresolved)
        if skipped is not None:  # what fisproxy (or the upstream) cannot do; the rest runs on
            self._set_action(name, "skipped", skipped, started=False)
            return
        resolved = self.state.resolved
        used = list((action.targets or {}).values())
        if used and any(resolved.get(t) is None or resolved[t].empty for t in used):
            self._set_action(name, "skipped", ACTION_NO_TARGETS, started=False)
            return
        spec = ACTIONS[action.action_id]
        params = action.parameters or {}
        duration = spec.duration(params)
        planned_end = None if duration is None else self.now + duration.total_seconds()
        action.state = ExperimentActionState(status="running", reason="")
        action.start_time = ids.timestamp(self.now)
        ignored = spec.ignored_parameters(params)
        notes = spec.start_notes(params)  # what fisproxy drops, what never passes through it
        self.log("action-start", action_name=name, action_id=action.action_id,
                 action_start_time=explog.timestamp(self.now), action_targets=dict(action.targets or {}),
                 parameters=dict(params) or None, ignored_parameters=list(ignored) or None,
                 notes=notes or None)
        if spec.kind == "resource":
            # Its worker ends it (the effect done, or its time up): not the engine's clock.
            self.state.ends[name] = None
            self.state.action_deadlines[name] = planned_end
            self.effects.append(Perform(name))
            return
        self.state.ends[name] = planned_end
        self.effects.append(Activate(name))

    def _set_action(self, name: str, status: ExperimentActionStatus, reason: str, *, started: bool = True) -> None:
        action = self.experiment.actions[name]
        was_running = action.state.status == "running"
        action.state = ExperimentActionState(status=status, reason=reason)
        if started or action.start_time is not None:
            action.end_time = ids.timestamp(self.now)
        for part in (self.state.ends, self.state.action_state, self.state.action_deadlines,
                     self.state.action_phase):
            part.pop(name, None)
        if was_running:
            self.effects.append(Deactivate(name))
        if status == "failed":
            self.log("action-error", action_name=name, action_id=action.action_id, account_id=self.account_id,
                     action_state={"status": status, "reason": reason})
        self.log("action-end", action_name=name, action_id=action.action_id,
                 action_end_time=explog.timestamp(self.now), action_state={"status": status, "reason": reason})

    def _action_ended(self, name: str, error: Failure | None) -> None:
        action = self.experiment.actions.get(name)
        if action is None or action.state.status != "running":
            return
        if self.status == "running":
            if error is not None and error.skippable and not self.state.fail_unperformable:
                # The upstream lacks an API it needs: skipped, undone, and the rest runs on.
                self._set_action(name, "skipped", f"Skipped: {error.reason}")
                self.effects.append(Save())
                self._advance()
            elif error is not None:
                self._fail(Failure(error.reason, error.code, name), action=name)
            else:
                self._set_action(name, "completed", ACTION_COMPLETED)
                self.effects.append(Save())
                self._advance()
        elif self.status == "stopping":
            # Undone as the end asked (or not, and the log says why).
            if error is not None:
                self._set_action(name, "failed", error.reason)
            else:
                self._set_action(name, "stopped", ACTION_STOPPED)
            self.effects.append(Save())
            self._finish_if_undone()

    # ---- a proxy takes the schedule over --------------------------------------------------

    def _take_over(self) -> None:
        e = self.experiment
        if self.status == "initiating":
            self.effects.append(Resolve())
        for name in under_way(e):
            self.effects.append(Perform(name, resumed=True))
            if self.status == "stopping":
                self.effects.append(Undo(name))
        if self.status == "running":
            self._advance()
        elif self.status == "stopping":
            self._finish_if_undone()
        self.effects.append(Save())

    # ---- the one end path ---------------------------------------------------------------

    def _fail(self, f: Failure, action: str | None = None) -> None:
        if action is not None and self.experiment.actions[action].state.status not in ACTION_TERMINAL:
            self._set_action(action, "failed", f.reason, started=False)
        self._end(StopRequest(status="failed", reason=f.reason,
                              error={"code": f.code, "location": f.location or "", "accountId": self.account_id}))

    def _end(self, final: StopRequest, *, stopping: str | None = None, at_once: bool = True) -> None:
        """Every way an experiment ends: its faults end and its resource actions are undone
        now; it ends as `final` says once they are (at once if nothing is under way and
        `at_once`; else `stopping`, finished by a later step)."""
        e = self.experiment
        for name, action in e.actions.items():
            if action.state.status == "running":
                self.effects.append(Deactivate(name))
        undoing = under_way(e)
        for name in undoing:
            self.effects.append(Undo(name))
        self.state.stop = final
        if undoing or not at_once:
            e.state = ExperimentState(status="stopping", reason=stopping or final.reason)
            self.effects.append(Save())
            return
        self._finish()

    def _finish_if_undone(self) -> None:
        if self.status == "stopping" and not under_way(self.experiment):
            self._finish()

    def _finish(self) -> None:
        """The terminal state `RunState.stop` asked for: running actions stopped, pending ones
        cancelled, logged, saved."""
        e, now = self.experiment, self.now
        final = self.state.stop or StopRequest(status="stopped", reason=STOPPED)
        for name, action in e.actions.items():
            if action.state.status == "running":
                self._set_action(name, "stopped", ACTION_STOPPED)
            elif action.state.status not in ACTION_TERMINAL:
                self._set_action(name, "cancelled", ACTION_CANCELLED, started=False)
        state: dict[str, Any] = {"status": final.status, "reason": final.reason}
        if final.error:
            state["error"] = final.error
        e.state = ExperimentState.model_validate(state)
        e.end_time = ids.timestamp(now)
        self.state.ends = {}
        self.log("experiment-end", experiment_end_time=explog.timestamp(now),
                 experiment_state={"status": final.status, "reason": final.reason},
                 error_information=self.state.stop_condition)
        if e.log_configuration is not None:
            self.effects.append(DeliverLogs())
        if e.experiment_report_configuration is not None:
            self.effects.append(QueueReport())
        self.effects.append(Save())


class _ActionFailure(Exception):
    """A failure of one action (its state `failed`), failing the experiment."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(reason)
        self.action = action
        self.failure = Failure(reason, "ConfigurationFailure", action)
