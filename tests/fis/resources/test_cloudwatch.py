"""aws:cloudwatch:assert-alarm-state on a real moto server."""

from __future__ import annotations

import pytest

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources import implementation, perform
from tests.fis.resources.conftest import boto


def _alarm(url: str, name: str, state: str) -> str:
    cw = boto(url, "cloudwatch")
    cw.put_metric_alarm(AlarmName=name, MetricName="m", Namespace="n", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
    return str(cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"])


def test_alarms_in_the_expected_states_pass_and_others_fail_naming_them(moto_url, tag, context):
    ok = _alarm(moto_url, f"ok-{tag['fis-test']}", "OK")
    firing = _alarm(moto_url, f"firing-{tag['fis-test']}", "ALARM")
    action = implementation("aws:cloudwatch:assert-alarm-state")
    perform(action, context("aws:cloudwatch:assert-alarm-state", {}, {"alarmArns": ok, "alarmStates": "OK,INSUFFICIENT_DATA"}))
    with pytest.raises(Failure) as err:
        perform(action, context("aws:cloudwatch:assert-alarm-state", {},
                                {"alarmArns": f"{ok},{firing}", "alarmStates": "OK"}))
    assert err.value.reason == f"Alarm {firing} is ALARM, not OK."
    missing = ok.replace("ok-", "missing-")
    with pytest.raises(Failure, match=f"Alarm {missing} not found on the upstream"):
        perform(action, context("aws:cloudwatch:assert-alarm-state", {}, {"alarmArns": missing, "alarmStates": "OK"}))
