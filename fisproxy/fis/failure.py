"""Why something in an experiment failed, as FIS reports it: the one failure type.

A target that cannot be resolved, an experiment role the upstream refuses, an action that fails
on the upstream or cannot run at all: each raises `Failure`, whose `reason` becomes the
experiment's or the action's state reason and whose `code` is one of FIS's error codes
(`ConfigurationFailure`, `DependentServiceFailure`, `InternalFailure`, `InvalidTarget`,
`AuthorizationFailure`, `QuotaExceededFailure`, or the upstream's own error code). `location`
names the part of the template that failed, as `ExperimentError.location` does: a target or
action name, or `roleArn`.
"""

from __future__ import annotations


class Failure(Exception):
    """`skippable`: the upstream does not implement what failed (an API moto or LocalStack lacks):
    the action is skipped, saying so, and the experiment runs on, unless the proxy is told to
    fail such experiments (fisproxy_fail_unperformable)."""

    def __init__(self, reason: str, code: str = "DependentServiceFailure", location: str | None = None,
                 *, skippable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.location = location
        self.skippable = skippable

    def at(self, location: str) -> Failure:
        """The same failure, located at `location` (kept if it already has one)."""
        if self.location is not None:
            return self
        located = Failure(self.reason, self.code, location, skippable=self.skippable)
        located.__cause__ = self.__cause__
        return located

    def __repr__(self) -> str:
        return f"Failure({self.reason!r}, {self.code!r}, {self.location!r})"
