"""AWS's FIS scenario library, written as experiment templates for given parameters
(`fisproxy scenarios`): `library.py` says what a scenario is; `zones.py`, `regions.py`, `ec2.py`
hold the scenarios; `cli.py` is the command."""

from fisproxy.scenarios import ec2, regions, zones  # noqa: F401 - importing registers the scenarios
from fisproxy.scenarios.library import SCENARIOS, Scenario, render

__all__ = ["SCENARIOS", "Scenario", "render"]
