"""Stop conditions: `none`, or a CloudWatch alarm that stops the experiment when it fires.

The engine polls `AlarmPoller.firing` from a worker thread (it calls DescribeAlarms on the
upstream, blocking) and stops every running experiment whose alarm is in `ALARM`, with FIS's own
reason, "Experiment halted by stop condition."
(https://docs.aws.amazon.com/fis/latest/userguide/stop-conditions.html).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from fisproxy.fis import upstream

log = logging.getLogger(__name__)

ALARM_SOURCE = "aws:cloudwatch:alarm"
HALTED_REASON = "Experiment halted by stop condition."


def alarm_arns(stop_conditions: Iterable[Any] | None) -> list[str]:
    """The alarm ARNs among an experiment's stop conditions (models or wire dicts)."""
    out = []
    for sc in stop_conditions or ():
        source = sc.get("source") if isinstance(sc, dict) else sc.source
        value = sc.get("value") if isinstance(sc, dict) else sc.value
        if source == ALARM_SOURCE and value:
            out.append(value)
    return out


def alarm_name(arn: str) -> str:
    """`arn:aws:cloudwatch:<region>:<account>:alarm:<name>` -> `<name>` (names may hold `:`)."""
    parts = arn.split(":", 6)
    return parts[6] if len(parts) == 7 and parts[5] == "alarm" else arn


class AlarmPoller:
    """Reads alarm states with DescribeAlarms, one call per region per poll. Blocking."""

    def __init__(
        self,
        endpoint: str | None,
        default_region: str = "us-east-1",
        client_factory: Callable[[str, str, str | None], Any] = upstream.client,
    ) -> None:
        self._endpoint = endpoint
        self._default_region = default_region
        self._client_factory = client_factory
        self._clients: dict[str, Any] = {}

    def _client(self, region: str) -> Any:
        if region not in self._clients:
            self._clients[region] = self._client_factory("cloudwatch", region, self._endpoint)
        return self._clients[region]

    def firing(self, arns: Iterable[str]) -> set[str]:
        """The subset of `arns` whose alarm is in state ALARM. Unreadable alarms are logged and
        treated as not firing (a monitoring outage should not stop every experiment)."""
        by_region: dict[str, dict[str, str]] = defaultdict(dict)
        for arn in set(arns):
            by_region[upstream.arn_region(arn, self._default_region)][alarm_name(arn)] = arn
        out: set[str] = set()
        for region, names in by_region.items():
            wanted = sorted(names)
            try:
                cw = self._client(region)
                for i in range(0, len(wanted), 100):  # DescribeAlarms takes up to 100 names
                    resp = cw.describe_alarms(
                        AlarmNames=wanted[i : i + 100], AlarmTypes=["MetricAlarm", "CompositeAlarm"]
                    )
                    for alarm in resp.get("MetricAlarms", []) + resp.get("CompositeAlarms", []):
                        alarm_arn = names.get(alarm.get("AlarmName", ""))
                        if alarm_arn and alarm.get("StateValue") == "ALARM":
                            out.add(alarm_arn)
            except Exception as e:  # network or upstream error: report, keep experiments running
                log.warning("stop conditions in %s: DescribeAlarms failed: %s", region, e)
        return out
