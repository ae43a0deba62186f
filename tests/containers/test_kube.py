"""deploy/kubernetes/pod.yaml under `podman kube play`: fisproxy as the pod's sidecar in front of
moto, the demo application (the AWS CLI in a loop) configured by its env, and the fault of
docs/sidecar.md: an experiment started from inside the pod throttles the app's PutItem, its
GetItem goes on.

The manifest runs as written where Podman runs native sidecars (an init container with
`restartPolicy: Always`). Where it does not (no release yet: it ignores the init container's
restartPolicy, and refuses probes on an init container), the test says so in one line and runs
the sidecar as the pod's first ordinary container, as docs/sidecar.md says for clusters before
Kubernetes 1.29: the app waits for the CA file."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.containers.conftest import ROOT, Engine, throttle_with_the_aws_cli, wait_for

MANIFEST = ROOT / "deploy" / "kubernetes" / "pod.yaml"
PLAY_TIMEOUT = 120  # a Podman that ignores restartPolicy waits for the sidecar to exit: forever


def as_ordinary_containers(pod: dict) -> tuple[dict, list[str]]:
    """Native sidecars moved to the front of the containers, without what Podman refuses on them."""
    pod = copy.deepcopy(pod)
    sidecars = [c for c in pod["spec"].get("initContainers", []) if c.get("restartPolicy") == "Always"]
    pod["spec"]["initContainers"] = [c for c in pod["spec"]["initContainers"] if c not in sidecars]
    if not pod["spec"]["initContainers"]:
        del pod["spec"]["initContainers"]
    for sidecar in sidecars:
        del sidecar["restartPolicy"]
    pod["spec"]["containers"][:0] = sidecars
    return pod, [c["name"] for c in sidecars]


def test_kubernetes_manifest_runs_the_sidecar_and_the_fault_reaches_the_app(
        engine: Engine, image: str, third_party: None, prefix: str, tmp_path: Path,
        say: Callable[[str], None]) -> None:
    if engine.name != "podman":
        pytest.skip("the Kubernetes manifest runs with `podman kube play`; the engine here is Docker")
    pod = yaml.safe_load(MANIFEST.read_text())
    pod["metadata"]["name"] = prefix
    version = engine.out("version", "--format", "{{.Client.Version}}")

    def play(manifest: dict) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "pod.yaml"
        path.write_text(yaml.safe_dump(manifest))
        # No network but loopback: the pod talks to itself only (moto is in it).
        return engine.run("kube", "play", "--network", "none", str(path), timeout=PLAY_TIMEOUT, check=False)

    try:
        played = play(pod)
        refused = played.returncode != 0 and played.stderr.strip().splitlines()[-1:]
    except subprocess.TimeoutExpired:
        refused = [f"the app did not start within {PLAY_TIMEOUT} s: the sidecar ran as an init container"]
    if refused:
        engine.remove_all(prefix)
        ordinary, moved = as_ordinary_containers(pod)
        say(f"kube: podman {version} does not run native sidecars (it ignores an init container's "
            f"restartPolicy and refuses its startupProbe: {refused[0].strip()[:120]}); "
            f"{', '.join(moved)} ran as the pod's first container instead")
        played = play(ordinary)
        assert played.returncode == 0, played.stdout + played.stderr
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
    engine.run("kube", "down", str(tmp_path / "pod.yaml"), timeout=120)
