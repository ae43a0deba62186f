"""The experiment report as one typed value: what the HTML page, the PDF, the terminal table and
the console all render, and what `?format=json` returns.

`build.build_report` makes it from the store (the experiment, its log, the recorded requests)
and, for FIS's reports, the CloudWatch dashboards of its report configuration. Times are UTC
datetimes (ISO 8601 in JSON); series over time are lists with one value per bucket of
`Traffic.bucket_seconds`, the first bucket starting at `Window.start`. Keys are camelCase on the
wire, like the FIS API's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

HELD = "retries held"
NO_FAULTS = "no faults injected"
NO_CALL_IDS = "unknown: no SDK call ids"
NO_REQUESTS = "no matching requests"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# A UTC time; `2026-11-27T17:32:50.554Z` in JSON.
Time = Annotated[datetime, PlainSerializer(_iso, when_used="json")]


class ReportModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def wire(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


class Counts(ReportModel):
    """What the application's calls did: one (action, service, operation), or a total.

    requests: HTTP requests; faulted: those carrying this action's fault; calls: distinct SDK
    calls (`amz-sdk-invocation-id`); retries: attempts after the first; backoff: time waited
    between attempts; succeeded / failed: calls whose last attempt got a 2xx / anything else;
    recovered: faulted calls that finally succeeded; untracked: faulted calls without SDK ids.
    """

    requests: int = 0
    faulted: int = 0
    calls: int = 0
    retries: int = 0
    backoff_ms: float = 0.0
    succeeded: int = 0
    failed: int = 0
    faulted_calls: int = 0
    recovered: int = 0
    untracked_calls: int = 0
    verdict: str = NO_REQUESTS


class OperationRow(Counts):
    service: str
    operation: str | None = None


class ResourceEffect(ReportModel):
    """What a resource action did to resources (`done`) or undid at its end (`undone`), from
    the experiment log's `action-detail` records."""

    time: Time
    effect: Literal["done", "undone"]
    message: str
    resources: list[str] = Field(default_factory=list)


class ActionReport(ReportModel):
    name: str
    action_id: str
    description: str | None = None
    kind: str = "api-fault"  # the catalogue's `kind`: api-fault, resource, proxy-fault, wait...
    state: str
    reason: str | None = None
    start_time: Time | None = None
    end_time: Time | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    targets: dict[str, str] = Field(default_factory=dict)  # key (Instances) -> target name
    rows: list[OperationRow] = Field(default_factory=list)
    totals: Counts = Field(default_factory=Counts)
    effects: list[ResourceEffect] = Field(default_factory=list)


class TargetReport(ReportModel):
    name: str
    resource_type: str
    selection_mode: str | None = None
    resources: list[str] = Field(default_factory=list)  # resolved ARNs


class ExperimentInfo(ReportModel):
    id: str
    arn: str | None = None
    template_id: str | None = None
    description: str | None = None
    role_arn: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    state: str
    reason: str | None = None
    start_time: Time
    end_time: Time | None = None
    duration_seconds: float


class Window(ReportModel):
    """What the charts cover: `pre_seconds` before the experiment started until `post_seconds`
    after it ended (or until now, while it runs)."""

    start: Time
    end: Time
    experiment_start: Time
    experiment_end: Time
    pre_seconds: float = 0.0
    post_seconds: float = 0.0


class OperationSeries(ReportModel):
    """One (service, operation) over time, one value per bucket. Calls count in the bucket of
    their last attempt; retries and back-off in the bucket of the retry; latency is the 50th and
    95th percentile of the requests' durations (None where a bucket has no request)."""

    service: str
    operation: str | None = None
    requests: list[int]
    faulted: list[int]
    retries: list[int]
    succeeded: list[int]
    failed: list[int]
    backoff_ms: list[float]
    latency_p50_ms: list[float | None]
    latency_p95_ms: list[float | None]

    @property
    def label(self) -> str:
        return f"{self.service} {self.operation or '?'}"


class Traffic(ReportModel):
    bucket_seconds: float
    buckets: int
    operations: list[OperationSeries] = Field(default_factory=list)


class MetricSeries(ReportModel):
    label: str
    timestamps: list[Time] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)


class WidgetReport(ReportModel):
    title: str
    period_seconds: int
    series: list[MetricSeries] = Field(default_factory=list)
    note: str | None = None  # why a widget or some of its metrics could not be drawn


class DashboardReport(ReportModel):
    identifier: str
    name: str
    widgets: list[WidgetReport] = Field(default_factory=list)
    error: str | None = None  # the dashboard could not be read


class Report(ReportModel):
    generated_at: Time
    experiment: ExperimentInfo
    window: Window
    actions: list[ActionReport] = Field(default_factory=list)
    targets: list[TargetReport] = Field(default_factory=list)
    traffic: Traffic
    dashboards: list[DashboardReport] = Field(default_factory=list)

    def action(self, name: str) -> ActionReport:
        return next(a for a in self.actions if a.name == name)
