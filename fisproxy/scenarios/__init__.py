"""AWS's FIS scenario library, written as experiment templates for given parameters
(`fisproxy scenarios`): `library.py` says what a scenario is; `zones.py`, `regions.py`, `ec2.py`
hold the scenarios; the command is `fisproxy/cli/scenarios.py`."""

from fisproxy.scenarios import ec2, regions, zones  # noqa: F401 - importing registers the scenarios
from fisproxy.scenarios.library import SCENARIOS, Scenario, render

__all__ = ["SCENARIOS", "Scenario", "render"]
