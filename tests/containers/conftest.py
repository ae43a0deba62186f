"""The container tests: the image as a sidecar in a pod (test_pod.py), the Kubernetes manifest
deploy/kubernetes/pod.yaml under `podman kube play` (test_kube.py), and docker-compose.yml's
default and fleet set-ups (test_compose.py). Real containers on the machine's engine, each with
a fault started through a sidecar's control port and seen by the application.

They are not Python-version-specific: CI runs them once, from `make containers` (docker/check),
after docker/build-check has built and checked the image; docker/check exports the engine
(FISPROXY_ENGINE, CONTAINERS_CONF: docker/engine) and the image (FISPROXY_IMAGE). Without those
(`make test`) they are skipped.

Each test names everything it creates with its own prefix, and removes every container, pod,
volume and network with that prefix when it ends, passed or failed; it fails if one is left.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "docker" / "engine"
BASE = next(line.split()[1] for line in reversed((ROOT / "Dockerfile").read_text().splitlines())
            if line.startswith("FROM "))
APP_IMAGE = "localhost/fisproxy-test-app:latest"
LOCAL_IMAGE = "fisproxy:local"  # what docker-compose.yml and deploy/kubernetes/pod.yaml run


class EngineError(AssertionError):
    pass


class Engine:
    """docker/engine: docker or podman, configured for this machine."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str, timeout: float = 120, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run([str(ENGINE), *args], timeout=timeout, check=check, env=env)

    def out(self, *args: str, timeout: float = 120) -> str:
        return self.run(*args, timeout=timeout).stdout.strip()

    def logs(self, container: str) -> str:
        """stdout and stderr, in the order the container wrote them."""
        return logs([str(ENGINE), "logs", container])

    def exists(self, kind: str, name: str) -> bool:
        return self.run(kind, "exists" if self.name == "podman" else "inspect", name, check=False).returncode == 0

    def leftovers(self, prefix: str) -> list[str]:
        """Containers, pods, volumes and networks whose name starts with prefix."""
        found = []
        kinds = [("container", ["ps", "--all"]), ("volume", ["volume", "ls"]), ("network", ["network", "ls"])]
        if self.name == "podman":
            kinds.insert(0, ("pod", ["pod", "ps"]))
        for kind, command in kinds:
            names = self.out(*command, "--filter", f"name={prefix}", "--format", "{{.Name}}"
                             if kind != "container" else "{{.Names}}")
            found += [f"{kind} {name}" for name in names.split()]
        return found

    def remove_all(self, prefix: str) -> list[str]:
        """Removes them all; returns what the engine said where it refused."""
        refused = []
        # Containers with their anonymous volumes, killed at once. Podman refuses to remove a
        # container others depend on (compose's depends_on), and a pod's infra container has no
        # name of ours: rounds until neither pods nor containers are left.
        for _ in range(4):
            pods = self.out("pod", "ps", "--filter", f"name={prefix}", "--format", "{{.Name}}").split() \
                if self.name == "podman" else []
            containers = self.out("ps", "--all", "--filter", f"name={prefix}", "--format", "{{.Names}}").split()
            if not pods and not containers:
                break
            if pods:
                refused.append(self.run("pod", "rm", "--force", "--time", "0", *pods, check=False,
                                        timeout=180).stderr)
            if containers:
                now = ["--depend", "--time", "0"] if self.name == "podman" else []  # docker's --force kills
                refused.append(self.run("rm", "--force", "--volumes", *now, *containers, check=False,
                                        timeout=180).stderr)
        for kind in ("volume", "network"):
            names = self.out(kind, "ls", "--filter", f"name={prefix}", "--format", "{{.Name}}").split()
            if names:
                refused.append(self.run(kind, "rm", *(["--force"] if kind == "volume" else []), *names,
                                        check=False).stderr)
        return [r.strip() for r in refused if r.strip()]


def run(argv: list[str], timeout: float = 120, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise EngineError(f"{' '.join(argv)}: exit status {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def logs(argv: list[str], env: dict[str, str] | None = None) -> str:
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
                          env=env, stdin=subprocess.DEVNULL).stdout


def throttle_with_the_aws_cli(aws: Callable[..., str], operation: str) -> str:
    """docs/sidecar.md's commands: a template throttling DynamoDB's operation, started."""
    actions = {"throttle": {"actionId": "aws:fis:inject-api-throttle-error", "parameters": {
        "service": "dynamodb", "operations": operation, "percentage": "100", "duration": "PT10M"}}}
    template = aws("fis", "create-experiment-template", "--role-arn", "arn:aws:iam::123456789012:role/fis",
                   "--description", f"Throttle {operation}", "--stop-conditions", "source=none",
                   "--actions", json.dumps(actions), "--query", "experimentTemplate.id", "--output", "text")
    return aws("fis", "start-experiment", "--experiment-template-id", template,
               "--query", "experiment.id", "--output", "text")


def wait_for(check: Callable[[], bool], timeout: float, what: str, diagnose: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{diagnose()}", pytrace=False)
        time.sleep(1)


def json_lines(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


@pytest.fixture(scope="session")
def engine() -> Engine:
    name, image = os.environ.get("FISPROXY_ENGINE"), os.environ.get("FISPROXY_IMAGE")
    if not name or not image:
        pytest.skip("the container tests run once per CI run, after the image's build: make containers")
    return Engine(name)


@pytest.fixture(scope="session")
def image(engine: Engine) -> str:
    """The image docker/build-check built, also under the name the examples run."""
    built = os.environ["FISPROXY_IMAGE"]
    engine.run("tag", built, LOCAL_IMAGE)
    return built


@pytest.fixture(scope="session")
def third_party(engine: Engine) -> None:
    """docker/check made the examples' other images available (pulled or stand-ins)."""
    for name in ("motoserver/moto:latest", "amazon/aws-cli:latest", "redis:7.2.5-alpine"):
        if not engine.exists("image", name):
            pytest.fail(f"{name} is missing: docker/check makes it available (docker/stand-in)")


@pytest.fixture(scope="session")
def app_image(engine: Engine) -> str:
    """The application of the pod test: the image's base, boto3 (as in this venv), app.py."""
    engine.run("build", "--build-arg", f"BASE={BASE}",
               "--build-arg", f"BOTO3_VERSION={importlib.metadata.version('boto3')}",
               "--tag", APP_IMAGE, "--file", str(Path(__file__).parent / "app" / "Containerfile"),
               str(Path(__file__).parent / "app"), timeout=600)
    return APP_IMAGE


@pytest.fixture
def say(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """A line in pytest's output (not captured): what the test found about the engine."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def line(text: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n{text}", flush=True)
    return line


@pytest.fixture
def prefix(engine: Engine) -> Iterator[str]:
    """A name prefix for everything the test creates; all of it removed at the end."""
    name = f"fpt-{uuid.uuid4().hex[:8]}"
    volumes_before = set(engine.out("volume", "ls", "--quiet").split())
    yield name
    refused = engine.remove_all(name)
    left = engine.leftovers(name)
    # Anonymous volumes carry no name of ours: any new one that no container uses is ours.
    anonymous = set(engine.out("volume", "ls", "--quiet", "--filter", "dangling=true").split()) - volumes_before
    if anonymous:
        engine.run("volume", "rm", "--force", *anonymous, check=False)
    assert not left and not anonymous, (
        f"left behind: {left + [f'volume {v}' for v in anonymous]}; the engine said: {refused}")
