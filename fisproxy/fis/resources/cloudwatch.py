"""aws:cloudwatch:assert-alarm-state: DescribeAlarms for each alarm (in its ARN's region); the
action fails, naming the alarm and its state, unless every alarm is in one of `alarmStates`."""

from __future__ import annotations

from collections import defaultdict

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources.base import (
    ActionContext,
    Immediate,
    register,
    upstream_call,
)
from fisproxy.fis.upstream import arn_region


@register("aws:cloudwatch:assert-alarm-state")
class AssertAlarmState(Immediate):
    def start(self, ctx: ActionContext) -> None:
        arns = [a.strip() for a in ctx.parameters["alarmArns"].split(",") if a.strip()]
        wanted = {s.strip() for s in ctx.parameters["alarmStates"].split(",") if s.strip()}
        by_region: dict[str, dict[str, str]] = defaultdict(dict)
        for arn in arns:
            by_region[arn_region(arn, ctx.region)][arn.split(":alarm:", 1)[-1]] = arn
        states: dict[str, str] = {}
        for region, names in by_region.items():
            with upstream_call(f"cloudwatch DescribeAlarms in {region}"):
                answer = ctx.client("cloudwatch", region).describe_alarms(
                    AlarmNames=list(names), AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            for alarm in answer.get("MetricAlarms", []) + answer.get("CompositeAlarms", []):
                if alarm["AlarmName"] in names:
                    states[names[alarm["AlarmName"]]] = alarm["StateValue"]
        missing = [a for a in arns if a not in states]
        if missing:
            raise Failure(f"Alarm {', '.join(missing)} not found on the upstream.", "InvalidTarget")
        wrong = [f"{a} is {states[a]}" for a in arns if states[a] not in wanted]
        if wrong:
            raise Failure(f"Alarm {'; '.join(wrong)}, not {' or '.join(sorted(wanted))}.")
        ctx.log(f"Alarms in the expected states: {', '.join(f'{a} {states[a]}' for a in arns)}.")
