"""CloudWatch alarm stop conditions against a real moto server, and the parsing helpers."""

from __future__ import annotations

from fisproxy.fis import upstream
from fisproxy.fis.stopconditions import AlarmPoller, alarm_arns, alarm_name


def make_alarm(url: str, name: str, region: str = "us-east-1") -> str:
    cw = upstream.client("cloudwatch", region, url)
    cw.put_metric_alarm(
        AlarmName=name, MetricName="Errors", Namespace="App", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
    )
    return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"]


def set_state(url: str, name: str, state: str, region: str = "us-east-1") -> None:
    upstream.client("cloudwatch", region, url).set_alarm_state(
        AlarmName=name, StateValue=state, StateReason="test")


def test_alarm_arns_and_names():
    conds = [{"source": "none"}, {"source": "aws:cloudwatch:alarm",
                                  "value": "arn:aws:cloudwatch:eu-west-1:123:alarm:a:b"}]
    assert alarm_arns(conds) == ["arn:aws:cloudwatch:eu-west-1:123:alarm:a:b"]
    assert alarm_name("arn:aws:cloudwatch:eu-west-1:123:alarm:a:b") == "a:b"
    assert alarm_arns(None) == []


def test_poller_sees_alarm_state_across_regions(moto_url):
    east = make_alarm(moto_url, "east-errors")
    west = make_alarm(moto_url, "west-errors", "us-west-2")
    poller = AlarmPoller(moto_url)
    assert poller.firing([east, west]) == set()
    set_state(moto_url, "west-errors", "ALARM", "us-west-2")
    assert poller.firing([east, west]) == {west}
    set_state(moto_url, "east-errors", "ALARM")
    set_state(moto_url, "west-errors", "OK", "us-west-2")
    assert poller.firing([east, west]) == {east}
    set_state(moto_url, "east-errors", "INSUFFICIENT_DATA")
    assert poller.firing([east]) == set()


def test_poller_survives_an_unreachable_upstream():
    poller = AlarmPoller("http://127.0.0.1:9")  # discard port: connection refused
    assert poller.firing(["arn:aws:cloudwatch:us-east-1:123:alarm:x"]) == set()
