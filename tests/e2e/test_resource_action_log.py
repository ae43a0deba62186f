"""Resource actions are visible after the fact: an experiment that stopped instances (on moto)
has, in its log file, FIS's target-resolution records with the instances' ARNs and fisproxy's
`action-detail` records of what was done (stopped) and undone (started again); `fisproxy
report` shows them beside the traffic."""

from __future__ import annotations

import json
import subprocess
import uuid

from tests.e2e.conftest import VENV_BIN, Fisproxy, wait_for_state
from tests.e2e.test_resources import by_tags, instances, run_experiment, states
from tests.helpers import clean_env


def test_stopped_instances_are_in_the_log_file_and_the_report(proxy: Fisproxy) -> None:
    tag = {"fis-e2e": uuid.uuid4().hex[:10]}
    targeted = instances(proxy, 2, tag)
    arns = {f"arn:aws:ec2:us-east-1:123456789012:instance/{i}" for i in targeted}
    exp_id = run_experiment(
        proxy, {"stop": {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "vms"},
                         "parameters": {"startInstancesAfterDuration": "PT2S"}}},
        {"vms": by_tags("aws:ec2:instance", tag)})
    wait_for_state(proxy.fis(), exp_id, "completed", timeout=30)
    assert set(states(proxy, targeted).values()) == {"running"}

    log_file = proxy.state.parent / "logs" / f"{exp_id}.jsonl"
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert all(r["version"] == "2" and r["id"] == exp_id for r in records)
    [resolved] = [r for r in records if r["log_type"] == "target-resolution-end"]
    assert resolved["details"]["target_name"] == "vms"
    assert {t["arn"] for t in resolved["details"]["resolved_targets"]} == arns
    details = [r["details"] for r in records if r["log_type"] == "action-detail"]
    done = [d for d in details if d["effect"] == "done"]
    undone = [d for d in details if d["effect"] == "undone"]
    assert done and set(done[0]["resources"]) == arns and done[0]["message"].startswith("Stopped instances")
    assert undone and set(undone[0]["resources"]) == arns and undone[0]["message"].startswith("Started instances")
    assert all(d["action_name"] == "stop" and d["action_id"] == "aws:ec2:stop-instances" for d in details)
    order = [r["log_type"] for r in records]
    assert order.index("action-start") < order.index("action-detail") < order.index("action-end")

    out = subprocess.run(
        [str(VENV_BIN / "fisproxy"), "report", exp_id, "--control-url", proxy.control_url],
        capture_output=True, text=True, env=clean_env(), timeout=60, check=True).stdout
    assert "Target vms (aws:ec2:instance)" in out and all(arn in out for arn in arns)
    assert "done: Stopped instances" in out and "undone: Started instances" in out
    assert "no matching requests" not in out
    report = json.loads(subprocess.run(
        [str(VENV_BIN / "fisproxy"), "report", exp_id, "--control-url", proxy.control_url, "--format", "json"],
        capture_output=True, text=True, env=clean_env(), timeout=60, check=True).stdout)
    [action] = report["actions"]
    assert [e["effect"] for e in action["effects"]] == ["done", "undone"]
    assert set(report["targets"][0]["resources"]) == arns
