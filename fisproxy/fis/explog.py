"""Experiment logs in the FIS log schema, version 2
(https://docs.aws.amazon.com/fis/latest/userguide/monitoring-logging.html).

fisproxy adds one record type FIS does not write, `action-detail`: what a resource action did to
which resources (`effect` `done`: instances stopped) or undid at its end (`undone`: started again),
with the resources' ARNs, so the log tells after the fact what an experiment changed. Consumers
that read FIS's types only are unaffected.

Every record goes to the store (`Store.append_log`) and to `<state_dir>/logs/<experiment id>.jsonl`.
When the experiment's `logConfiguration` asks for them, `upload` also delivers the records to
CloudWatch Logs (stream `/aws/fis/<experiment id>` in the configured group) and S3 (FIS's key
layout) on the upstream: blocking, best effort, meant for a worker thread at experiment end.

Delivery uses the experiment role's credentials, as FIS does: the role needs the permissions to
write there (AWS's workshop shows FIS failing an experiment whose role lacks
logs:CreateLogDelivery: https://github.com/aws-samples/aws-fault-injection-simulator-workshop/issues/390),
so a template cannot send logs anywhere the proxy's own credentials could write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fisproxy.fis import upstream

if TYPE_CHECKING:
    from fisproxy.fis.resources.base import ActionContext

log = logging.getLogger(__name__)

LogType = Literal[
    "experiment-start",
    "target-resolution-start",
    "target-resolution-detail",
    "target-resolution-end",
    "action-start",
    "action-error",
    "action-end",
    "action-detail",
    "experiment-end",
]


def timestamp(t: float) -> str:
    """FIS log time format: `yyyy-mm-ddThh:mm:ssZ`."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(experiment_id: str, log_type: LogType, t: float, details: dict[str, Any]) -> dict[str, Any]:
    """One schema-v2 record; `details` keeps only fields that have a value."""
    return {
        "id": experiment_id,
        "log_type": log_type,
        "event_timestamp": timestamp(t),
        "version": "2",
        "details": {k: v for k, v in details.items() if v is not None},
    }


def action_detail(action_name: str, ctx: ActionContext, message: str) -> dict[str, Any]:
    """The details of an `action-detail` record: the action, whether its effect was done or
    undone (`ctx.phase`), the message, and the ARNs of its target resources the message names
    (by id or ARN)."""
    words = {w.rstrip(".:") for w in re.findall(r"[^\s,;()]+", message)}
    resources = [r.arn for target in ctx.targets.values() for r in target.resources
                 if r.id in words or r.arn in words]
    return {"action_name": action_name, "action_id": ctx.action_id,
            "effect": "undone" if ctx.phase == "undo" else "done",
            "message": message, "resources": list(dict.fromkeys(resources))}


class ExperimentLog:
    """Appends records for every experiment: the store, and one JSON-lines file each."""

    def __init__(self, store: Any, state_dir: Path) -> None:
        self._store = store
        self._dir = Path(state_dir) / "logs"

    def path(self, experiment_id: str) -> Path:
        return self._dir / f"{experiment_id}.jsonl"

    def write(self, experiment_id: str, log_type: LogType, t: float, **details: Any) -> dict[str, Any]:
        rec = record(experiment_id, log_type, t, details)
        self._store.append_log(experiment_id, rec)
        self._dir.mkdir(parents=True, exist_ok=True)
        with self.path(experiment_id).open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        return rec


def _field(obj: Any, name: str, alias: str) -> Any:
    # Accepts the pydantic model (snake_case attribute) or its wire dict (camelCase key).
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(alias, obj.get(name))
    return getattr(obj, name, None)


def log_group_name(arn: str) -> str:
    """`arn:aws:logs:us-east-1:123:log-group:fis:*` -> `fis`."""
    resource = arn.split(":", 5)[5] if arn.count(":") >= 5 else arn
    name = resource.removeprefix("log-group:")
    return name.removesuffix(":*")


def s3_key(prefix: str | None, account_id: str, region: str, experiment_id: str, t: float,
           body: bytes) -> str:
    """`<prefix>/AWSLogs/<account>/fis/<region>/<id>/YYYY/MM/DD/<account>_awsfislogs_<region>_<id>_YYYYMMDDHHMMZ_<hash>.log`."""
    when = datetime.fromtimestamp(t, UTC)
    digest = hashlib.sha256(body).hexdigest()[:16]
    name = (f"{account_id}_awsfislogs_{region}_{experiment_id}_"
            f"{when:%Y%m%d%H%M}Z_{digest}.log")
    parts = [p for p in ((prefix or "").strip("/"), "AWSLogs", account_id, "fis", region,
                         experiment_id, f"{when:%Y/%m/%d}", name) if p]
    return "/".join(parts)


class Clients(Protocol):
    """Where upstream clients come from: the experiment role's session (`upstream.RoleSession`)."""

    def client(self, service: str, region: str | None = None) -> Any: ...


def upload(
    records: Sequence[dict[str, Any]],
    *,
    experiment_id: str,
    log_configuration: Any,
    region: str,
    account_id: str,
    clients: Clients,
    t: float,
) -> list[str]:
    """Deliver records where `log_configuration` says, with `clients` (the experiment role's).
    Blocking. Returns the failures (logged)."""
    failures: list[str] = []
    if not records or log_configuration is None:
        return failures
    cw = _field(log_configuration, "cloud_watch_logs_configuration", "cloudWatchLogsConfiguration")
    group_arn = _field(cw, "log_group_arn", "logGroupArn")
    if group_arn:
        try:
            _to_cloudwatch(records, group_arn, experiment_id, region, clients)
        except Exception as e:  # best effort: a log sink must not change the experiment
            failures.append(f"CloudWatch Logs {group_arn}: {_said(e)}")
    s3 = _field(log_configuration, "s3_configuration", "s3Configuration")
    bucket = _field(s3, "bucket_name", "bucketName")
    if bucket:
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        key = s3_key(_field(s3, "prefix", "prefix"), account_id, region, experiment_id, t, body)
        try:
            clients.client("s3", region).put_object(Bucket=bucket, Key=key, Body=body)
        except Exception as e:  # best effort, as above
            failures.append(f"S3 s3://{bucket}/{key}: {_said(e)}")
    for failure in failures:
        log.warning("experiment %s: log delivery failed: %s", experiment_id, failure)
    return failures


def _said(err: Exception) -> str:
    """The upstream's words for a failed delivery, on one line (a log line each)."""
    return " ".join(upstream.describe_error(err).split())[:500]


def _to_cloudwatch(records: Sequence[dict[str, Any]], group_arn: str, experiment_id: str, region: str,
                   clients: Clients) -> None:
    logs = clients.client("logs", upstream.arn_region(group_arn, region))
    group = log_group_name(group_arn)
    stream = f"/aws/fis/{experiment_id}"
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    events: list[dict[str, Any]] = [
        {"timestamp": int(_parse_ts(r["event_timestamp"]) * 1000),
         "message": json.dumps(r, separators=(",", ":"))}
        for r in records
    ]
    events.sort(key=lambda e: e["timestamp"])  # PutLogEvents wants chronological order
    resp = logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    rejected = resp.get("rejectedLogEventsInfo")
    if rejected:  # e.g. events older than 14 days or too far in the future
        raise ValueError(f"events rejected: {rejected}")


def _parse_ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
