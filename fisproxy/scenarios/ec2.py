"""The EC2 scenarios of the FIS console's library
(https://docs.aws.amazon.com/fis/latest/userguide/scenario-library-scenarios.html): instance
failure, and increasing CPU, memory, disk and network-latency stress, each on the EC2 instances of
the Region carrying a tag.

AWS documents these by description only (no published content): stop the instances and start
them again after the action's duration (5 minutes by default); or run an increasing amount of
stress, one action of `stepDuration` (5 minutes) per step, one after the other, through Systems
Manager documents (`aws:ssm:send-command` with AWSFIS-Run-CPU-Stress, -Memory-Stress, -Disk-Fill,
-Network-Latency: https://docs.aws.amazon.com/fis/latest/userguide/actions-ssm-agent.html). The
default tag (`FIS-Ready=True`) and steps are fisproxy's: give `tags` and `steps` to change them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from fisproxy.scenarios.library import (
    Param,
    Template,
    duration,
    numbers,
    region,
    scenario,
    seconds,
    tag,
)

SOURCE = "https://docs.aws.amazon.com/fis/latest/userguide/scenario-library-scenarios.html"
TAG = "FIS-Ready=True"


def _targets(v: Mapping[str, str]) -> dict[str, Any]:
    key, _, value = v["tags"].partition("=")
    return {"Instances": {"resourceType": "aws:ec2:instance", "resourceTags": {key: value},
                          "filters": [{"path": "State.Name", "values": ["running"]}], "selectionMode": "ALL"}}


@scenario(
    "ec2-instance-failure", "EC2 stress: instance failure",
    "the tagged EC2 instances stopped, started again after the duration", SOURCE,
    {"duration": Param("PT5M", "how long the instances stay stopped", duration),
     "tags": Param(TAG, "the Key=Value the instances carry", tag)},
)
def ec2_instance_failure(v: Mapping[str, str]) -> Template:
    return {"description": "Stop the tagged instances and start them again after the duration.",
            "targets": _targets(v),
            "actions": {"Stop-Instances": {"actionId": "aws:ec2:stop-instances",
                                           "parameters": {"startInstancesAfterDuration": v["duration"]},
                                           "targets": {"Instances": "Instances"}}}}


def _stress(title: str, document: str, step_params: Callable[[str, str], dict[str, str]]) -> Callable[
        [Mapping[str, str]], Template]:
    def build(v: Mapping[str, str]) -> Template:
        actions: dict[str, Any] = {}
        previous = None
        for i, step in enumerate(v["steps"].split(","), start=1):
            name = f"Stress-{i}"
            params = {**step_params(step, str(int(seconds(v["stepDuration"])))), "InstallDependencies": "True"}
            actions[name] = {
                "actionId": "aws:ssm:send-command",
                "parameters": {"documentArn": f"arn:aws:ssm:{v['region']}::document/{document}",
                               "documentParameters": json.dumps(params, separators=(",", ":")),
                               "duration": v["stepDuration"]},
                "targets": {"Instances": "Instances"},
                **({"startAfter": [previous]} if previous else {}),
            }
            previous = name
        return {"description": f"{title}: increasing stress on the tagged instances, one step after the other.",
                "targets": _targets(v), "actions": actions}
    return build


def _register(name: str, title: str, what: str, document: str, steps: str, unit: str,
              step_params: Callable[[str, str], dict[str, str]]) -> None:
    scenario(name, title, f"increasing {what} on the tagged EC2 instances (Systems Manager)", SOURCE, {
        "region": Param("us-east-1", "the Region of the SSM document", region),
        "steps": Param(steps, f"the {unit} of each step, comma-separated, in order", numbers),
        "stepDuration": Param("PT5M", "how long each step lasts", duration),
        "tags": Param(TAG, "the Key=Value the instances carry", tag),
    })(_stress(title, document, step_params))


_register("ec2-cpu", "EC2 stress: CPU", "CPU load", "AWSFIS-Run-CPU-Stress", "50,75,100", "CPU load percentages",
          lambda step, secs: {"DurationSeconds": secs, "CPU": "0", "LoadPercent": step})
_register("ec2-memory", "EC2 stress: Memory", "memory use", "AWSFIS-Run-Memory-Stress", "50,75,90",
          "memory percentages", lambda step, secs: {"DurationSeconds": secs, "Workers": "1", "Percent": step})
_register("ec2-disk", "EC2 stress: Disk", "disk use", "AWSFIS-Run-Disk-Fill", "50,75,90", "disk fill percentages",
          lambda step, secs: {"DurationSeconds": secs, "Percent": step})
_register("ec2-network-latency", "EC2 stress: Network Latency", "network latency", "AWSFIS-Run-Network-Latency",
          "100,200,400", "latencies in milliseconds",
          lambda step, secs: {"DurationSeconds": secs, "DelayMilliseconds": step, "Interface": "DEFAULT"})
