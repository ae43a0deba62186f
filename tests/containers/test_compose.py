"""docker-compose.yml, run as the README says (`docker compose up`, or podman-compose), with the
fault checks of docs/sidecar.md:

- the default set-up: an experiment started through the app's sidecar throttles the app's
  PutItem, its GetItem goes on, and the published ports answer on loopback;
- `--profile fleet`: an experiment started through one pod's sidecar (fisproxy-a) throttles the
  GetItem of both pods' apps (one FIS in Redis), and leaves the default app, whose sidecar has
  its own store, alone.

Each run has its own project name and host ports, and ends with `down -v`."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.containers.conftest import ROOT, Engine, logs, run, throttle_with_the_aws_cli, wait_for
from tests.helpers import VENV_BIN, free_port, http_ok

COMPOSE_FILE = ROOT / "docker-compose.yml"
THROTTLED = "ThrottlingException) when calling the {} operation"


def compose_tool(engine: Engine) -> list[str]:
    if engine.name == "docker":
        if run(["docker", "compose", "version"], check=False).returncode != 0:
            pytest.fail("docker compose (Docker's Compose plugin) is not installed")
        return ["docker", "compose"]
    tool = shutil.which("podman-compose", path=str(VENV_BIN)) or shutil.which("podman-compose")
    if tool:
        return [tool]
    pytest.fail("no podman-compose (pip install podman-compose; the test extras have it)")


@dataclass
class Project:
    """One `docker compose -p NAME` run of docker-compose.yml."""

    tool: list[str]
    name: str
    profiles: tuple[str, ...]
    env: dict[str, str]

    def argv(self, *args: str) -> list[str]:
        profiles = [arg for p in self.profiles for arg in ("--profile", p)]
        return [*self.tool, "-p", self.name, "-f", str(COMPOSE_FILE), *profiles, *args]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), timeout=timeout, env=self.env)

    def logs(self, service: str) -> str:
        return logs(self.argv("logs", service), env=self.env)

    def aws(self, service: str) -> Callable[..., str]:
        def aws(*args: str) -> str:
            return self.run("exec", "-T", service, "aws", *args, timeout=60).stdout.strip()
        return aws

    def diagnose(self, *services: str) -> Callable[[], str]:
        return lambda: "\n".join(f"--- {s}\n{self.logs(s)[-3000:]}" for s in services)


@pytest.fixture
def compose(engine: Engine, image: str, third_party: None, prefix: str) -> Iterator[Callable[..., Project]]:
    started: list[Project] = []

    def up(*profiles: str) -> Project:
        env = {**os.environ, "FISPROXY_PORT": str(free_port()), "FISPROXY_CONTROL_PORT": str(free_port())}
        project = Project(compose_tool(engine), prefix, profiles, env)
        started.append(project)
        project.run("up", "--detach")  # fisproxy:local is the image built and checked
        return project

    yield up
    # The containers first, with their anonymous volumes (the image's /state where the fleet
    # mounts none), which podman-compose's `down --volumes` leaves behind.
    engine.remove_all(prefix)
    for project in started:
        project.run("down", "--volumes", "--timeout", "5")


def count(text: str, what: str) -> int:
    return text.count(what)


def test_compose_default_setup_throttles_the_apps_putitem(
        compose: Callable[..., Project], say: Callable[[str], None]) -> None:
    project = compose()
    diagnose = project.diagnose("fisproxy", "moto", "app")
    wait_for(lambda: "PutItem ok" in project.logs("app") and "GetItem ok" in project.logs("app"), 180,
             "the app's calls succeed through fisproxy", diagnose)
    control = project.env["FISPROXY_CONTROL_PORT"]
    assert http_ok(f"http://127.0.0.1:{control}/_fisproxy/health"), "the control port, published on loopback"

    experiment = throttle_with_the_aws_cli(project.aws("app"), "PutItem")
    wait_for(lambda: THROTTLED.format("PutItem") in project.logs("app"), 90, "the app's PutItem throttled", diagnose)
    text = project.logs("app")
    ok_puts, ok_gets = count(text, "PutItem ok"), count(text, "GetItem ok")
    wait_for(lambda: count(project.logs("app"), "GetItem ok") > ok_gets, 30, "GetItem still served", diagnose)
    assert count(project.logs("app"), "PutItem ok") == ok_puts, "a PutItem got through a 100% throttle"
    say(f"compose: the default set-up: experiment {experiment} throttled the app's PutItem, GetItem served")


def test_compose_fleet_one_experiment_reaches_both_pods(
        compose: Callable[..., Project], say: Callable[[str], None]) -> None:
    project = compose("fleet")
    apps = ("app-a", "app-b")
    diagnose = project.diagnose("redis", "fisproxy-a", "fisproxy-b", *apps)
    wait_for(lambda: all("GetItem ok" in project.logs(app) for app in (*apps, "app")), 180,
             "every app's GetItem succeeds through its sidecar", diagnose)

    experiment = throttle_with_the_aws_cli(project.aws("app-a"), "GetItem")  # through fisproxy-a
    for app in apps:
        wait_for(lambda app=app: THROTTLED.format("GetItem") in project.logs(app), 90,
                 f"{app}'s GetItem throttled", diagnose)
    status = project.aws("app-b")("fis", "get-experiment", "--id", experiment,
                                  "--query", "experiment.state.status", "--output", "text")
    assert status == "running", f"fisproxy-b sees the experiment started on fisproxy-a: {status}"
    # The default app's sidecar keeps its own store (SQLite): another FIS, not faulted.
    gets = count(project.logs("app"), "GetItem ok")
    wait_for(lambda: count(project.logs("app"), "GetItem ok") > gets, 30,
             "the app outside the fleet still served", diagnose)
    assert THROTTLED.format("GetItem") not in project.logs("app")
    say(f"compose: --profile fleet: experiment {experiment} started on fisproxy-a throttled the GetItem "
        "of app-a and app-b (one FIS in Redis), not the app outside the fleet")
