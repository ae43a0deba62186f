"""The image as a sidecar in a pod, end to end: moto, fisproxy and an application container
(boto3, app/app.py) share one network namespace with nothing but loopback, and the
application is configured only by its environment. An experiment started through the sidecar's
control port throttles the application's PutItem and leaves its GetItem alone; the sidecar
killed and started again keeps its CA (the application, which read it once, still trusts it)
and its experiment (still running, still faulting)."""

from __future__ import annotations

from collections.abc import Callable

from tests.containers.conftest import Engine, json_lines, wait_for

# The application's whole configuration: HTTPS_PROXY at the sidecar, the CA from the shared
# volume, the FIS API at the control port, and at most 2 attempts per call (botocore's
# standard retry mode) so a throttled call ends quickly.
APP_ENV = {
    "HTTPS_PROXY": "http://127.0.0.1:8080",
    "NO_PROXY": "127.0.0.1,localhost",
    "AWS_CA_BUNDLE": "/fisproxy/mitmproxy-ca-cert.pem",
    "AWS_ENDPOINT_URL_FIS": "http://127.0.0.1:8082",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_RETRY_MODE": "standard",
    "AWS_MAX_ATTEMPTS": "2",
}
HEALTH = ("python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({}))"
          ".open('http://127.0.0.1:8082/_fisproxy/health', timeout=4)")


class Pod:
    """Containers in one network namespace with only loopback: a Podman pod, or with Docker,
    containers joined to a first one's namespace (as Kubernetes does with its pause container)."""

    def __init__(self, engine: Engine, name: str, infra_image: str) -> None:
        self.engine, self.name = engine, name
        if engine.name == "podman":
            engine.run("pod", "create", "--name", name, "--network", "none")
            self.join = ["--pod", name]
        else:
            engine.run("run", "--detach", "--name", f"{name}-infra", "--network", "none", "--entrypoint",
                       "python", infra_image, "-c", "import signal; signal.pause()")
            self.join = ["--network", f"container:{name}-infra"]

    def start(self, container: str, image: str, *args: str, options: tuple[str, ...] = ()) -> str:
        name = f"{self.name}-{container}"
        self.engine.run("run", "--detach", "--name", name, *self.join, *options, image, *args)
        return name


def test_sidecar_in_a_pod_faults_the_apps_call_and_survives_a_kill(
        engine: Engine, image: str, app_image: str, third_party: None, prefix: str,
        say: Callable[[str], None]) -> None:
    certs, state = f"{prefix}-certs", f"{prefix}-state"
    pod = Pod(engine, prefix, app_image)
    moto = pod.start("moto", "motoserver/moto:latest", "-H", "127.0.0.1")
    # As Kubernetes' securityContext would run it: the image's non-root user, read-only root.
    hardened = ["--read-only"]
    if engine.name == "podman":  # no tmpfs either; health checks are run by hand (no systemd here)
        hardened += ["--read-only-tmpfs=false", "--health-interval=disable"]
    sidecar = pod.start("fisproxy", image, "--listen-host", "127.0.0.1", "--aws-endpoint", "http://127.0.0.1:5000",
                        options=(*hardened, "--volume", f"{certs}:/certs", "--volume", f"{state}:/state"))

    def healthy() -> bool:
        return engine.run("exec", sidecar, *HEALTH, check=False).returncode == 0

    def diagnose() -> str:
        return "\n".join(f"--- {c}\n{engine.logs(c)[-3000:]}" for c in (sidecar, moto, app))

    app = f"{prefix}-app"
    wait_for(healthy, 90, "the sidecar turns healthy", diagnose)
    env = [arg for key, value in APP_ENV.items() for arg in ("--env", f"{key}={value}")]
    pod.start("app", app_image, "loop", "demo", options=(*env, "--volume", f"{certs}:/fisproxy:ro"))

    def calls() -> list[dict]:
        return [r for r in json_lines(engine.logs(app)) if r["op"] in ("PutItem", "GetItem")]

    def since(mark: int, op: str, ok: bool, error: str | None = None) -> bool:
        return any(r["op"] == op and r["ok"] is ok and (error is None or r.get("error") == error)
                   for r in calls()[mark:])

    wait_for(lambda: since(0, "PutItem", True) and since(0, "GetItem", True), 120,
             "the app's calls succeed through the sidecar", diagnose)

    # The experiment, started from inside the pod through the control port (AWS_ENDPOINT_URL_FIS).
    mark = len(calls())
    experiment = engine.out("exec", app, "python", "/app/app.py", "throttle", "PutItem")
    wait_for(lambda: since(mark, "PutItem", False, "ThrottlingException"), 60, "PutItem throttled", diagnose)
    throttled = len(calls())
    wait_for(lambda: since(throttled, "GetItem", True), 30, "GetItem still served", diagnose)
    assert not since(throttled, "PutItem", True), "a PutItem got through a 100% throttle"
    attempts = {r.get("attempts") for r in calls()[mark:] if r.get("error") == "ThrottlingException"}
    assert attempts == {2}, f"botocore retried a throttle as configured by AWS_MAX_ATTEMPTS: {attempts}"

    ca = engine.out("exec", app, "cat", APP_ENV["AWS_CA_BUNDLE"])
    assert "BEGIN CERTIFICATE" in ca
    engine.run("kill", sidecar)
    down = len(calls())
    wait_for(lambda: since(down, "GetItem", False), 60, "the app's calls fail while the sidecar is down", diagnose)
    engine.run("start", sidecar)
    wait_for(healthy, 90, "the sidecar turns healthy again", diagnose)

    assert engine.out("exec", app, "cat", APP_ENV["AWS_CA_BUNDLE"]) == ca, "the sidecar made a new CA"
    status = engine.out("exec", app, "python", "/app/app.py", "experiment", experiment)
    assert status == "running", f"experiment {experiment} after the restart: {status}"
    back = len(calls())
    wait_for(lambda: since(back, "PutItem", False, "ThrottlingException") and since(back, "GetItem", True),
             60, "after the restart: PutItem still throttled, GetItem served (the same CA trusted)", diagnose)
    say(f"pod ({engine.name}): PutItem throttled by experiment {experiment}, GetItem served; "
        "after kill and start the sidecar kept its CA and the experiment")
