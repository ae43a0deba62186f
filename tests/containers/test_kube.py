"""deploy/kubernetes/pod.yaml under `podman kube play` (deploy/kubernetes/podman-play): fisproxy
as the pod's sidecar in front of moto, the demo application (the AWS CLI in a loop) configured by
its env, and the fault of docs/sidecar.md: an experiment started from inside the pod throttles
the app's PutItem, its GetItem goes on.

The manifest runs as written where Podman runs native sidecars (an init container with
`restartPolicy: Always`). Where it does not (no release does yet), podman-play says so in one
line and runs the sidecar as the pod's first ordinary container, as Kubernetes before 1.29 would,
after an init container that gives it its emptyDir volumes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.containers.conftest import ENGINE, ROOT, Engine, run, throttle_with_the_aws_cli, wait_for

MANIFEST = ROOT / "deploy" / "kubernetes" / "pod.yaml"
PODMAN_PLAY = ROOT / "deploy" / "kubernetes" / "podman-play"


def renamed(pod: dict, prefix: str) -> dict:
    """The pod and its volumes under the test's prefix (Podman names emptyDir volumes as the
    manifest does, machine-wide)."""
    pod["metadata"]["name"] = prefix
    for volume in pod["spec"]["volumes"]:
        volume["name"] = f"{prefix}-{volume['name']}"
    for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
        for mount in container.get("volumeMounts", []):
            mount["name"] = f"{prefix}-{mount['name']}"
    return pod


def test_kubernetes_manifest_runs_the_sidecar_and_the_fault_reaches_the_app(
        engine: Engine, image: str, third_party: None, prefix: str, tmp_path: Path,
        say: Callable[[str], None]) -> None:
    if engine.name != "podman":
        pytest.skip("the Kubernetes manifest runs with `podman kube play`; the engine here is Docker")
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(renamed(yaml.safe_load(MANIFEST.read_text()), prefix), sort_keys=False))
    # No network but loopback: the pod talks to itself only (moto is in it).
    played = run([sys.executable, str(PODMAN_PLAY), str(manifest), "--network", "none"], timeout=300,
                 env={**os.environ, "PODMAN": str(ENGINE)})
    for line in played.stderr.splitlines():
        if line.startswith("podman-play:"):
            say(f"kube: {line}")
    app, sidecar = f"{prefix}-app", f"{prefix}-fisproxy"

    def diagnose() -> str:
        return "\n".join(f"--- {c}\n{engine.logs(c)[-3000:]}" for c in (sidecar, f"{prefix}-moto", app))

    def log_after(mark: int) -> str:
        return engine.logs(app)[mark:]

    wait_for(lambda: "PutItem ok" in log_after(0) and "GetItem ok" in log_after(0), 180,
             "the app's calls succeed through the sidecar", diagnose)
    inspect = json.loads(engine.out("inspect", sidecar))[0]
    assert inspect["Config"]["User"] not in ("", "0", "root"), inspect["Config"]["User"]
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True, "readOnlyRootFilesystem"

    def aws(*args: str) -> str:
        return engine.out("exec", app, "aws", *args, timeout=60)

    # docs/sidecar.md's commands, from inside the pod (kubectl exec ... -c app -- aws fis ...).
    mark = len(engine.logs(app))
    experiment = throttle_with_the_aws_cli(aws, "PutItem")
    wait_for(lambda: "ThrottlingException) when calling the PutItem operation" in log_after(mark), 90,
             "the app's PutItem throttled", diagnose)
    throttled = mark + log_after(mark).index("ThrottlingException) when calling the PutItem")
    wait_for(lambda: "GetItem ok" in log_after(throttled), 30, "GetItem still served", diagnose)
    assert "PutItem ok" not in log_after(throttled)
    say(f"kube: {MANIFEST.relative_to(ROOT)} played; experiment {experiment} throttled the app's PutItem, "
        "GetItem served")
