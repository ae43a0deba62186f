"""`fisproxy scenarios`, run as the real entry point: the list, a scenario written as JSON, and
one line with exit code 2 for a bad name or parameter."""

from __future__ import annotations

import json
import subprocess

from fisproxy.scenarios import SCENARIOS
from tests.helpers import VENV_BIN, clean_env


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "fisproxy"), "scenarios", *args], capture_output=True, text=True,
                          timeout=60, env=clean_env())


def test_the_list_names_every_scenario_with_its_parameters_and_defaults():
    result = run()
    assert result.returncode == 0, result.stderr
    for name, s in SCENARIOS.items():
        assert f"{name}  ({s.title})" in result.stdout
    assert "zone=us-east-1a  the Availability Zone whose power goes out" in result.stdout
    assert "roles=(absent)" in result.stdout


def test_a_scenario_is_written_as_json_for_the_given_parameters():
    result = run("az-power-interruption", "--param", "zone=eu-west-1b", "--param", "duration=PT15M")
    assert result.returncode == 0, result.stderr
    template = json.loads(result.stdout)
    assert template["targets"]["Subnet"]["filters"] == [{"path": "AvailabilityZone", "values": ["eu-west-1b"]}]
    assert template["actions"]["Stop-Instances"]["parameters"]["startInstancesAfterDuration"] == "PT15M"


def test_bad_input_is_one_line_and_exit_2():
    for args, message in [(("no-such",), 'unknown scenario "no-such"'),
                          (("az-power-interruption", "--param", "zone"), "--param takes KEY=VALUE"),
                          (("az-power-interruption", "--param", "zone=mars"), "zone: must be an Availability Zone")]:
        result = run(*args)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
