"""AWS's flagship scenario, AZ Availability: Power Interruption, end to end on moto with
resources in two zones: written by `fisproxy scenarios`, created with `aws fis
create-experiment-template`, run by two real `fisproxy run` processes sharing one store, one
placed in each zone. Its effects are checked resource by resource on moto: the zone's instances
stopped and only those, the Aurora cluster whose writer is there failed over, the ElastiCache
group whose primary is there asked to fail over (moto lacks TestFailover: skipped, saying so),
launches in the zone faulted for the targeted role, the traffic of the proxy placed in the zone
dropped, what fisproxy cannot do skipped with its reason; and a stop undoes it all."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import botocore.exceptions
import pytest
import requests

from tests.e2e.conftest import Fisproxy, wait_for_state
from tests.helpers import VENV_BIN, clean_env, free_port, http_ok, start_process, stop, wait_until

A, B = "us-east-1a", "us-east-1b"
ROLE = "arn:aws:iam::123456789012:role/fis-experiment"
LAUNCHER = "arn:aws:iam::123456789012:role/launcher"
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
NO_PROXY = {"http": None, "https": None}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto of its own, recording every call made to it (moto's recorder): what the actions
    asked of the upstream can be read back."""
    workdir = tmp_path_factory.mktemp("az-moto")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                         workdir / "moto.log", lambda: http_ok(f"{url}/moto-api/"), "moto server",
                         env=clean_env(MOTO_RECORDER_FILEPATH=str(workdir / "recording")))
    try:
        yield url
    finally:
        stop(proc)


def aws(url: str, service: str) -> Any:
    """The test's own hands on moto (setting up, checking): never through a proxy."""
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", **KEYS)


@pytest.fixture(scope="module")
def world(upstream: str) -> dict[str, Any]:
    """Resources in zones a and b, tagged as the scenario expects."""
    ec2 = aws(upstream, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    power = "AzImpairmentPower"

    def tags(kind: str, value: str) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": [{"Key": power, "Value": value}]}]

    subnets = {az: ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az,
                                     TagSpecifications=tags("subnet", "DisruptSubnet"))["Subnet"]["SubnetId"]
               for az, cidr in ((A, "10.20.1.0/24"), (B, "10.20.2.0/24"))}
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def run(az: str, value: str | None) -> str:
        spec = {"ImageId": ami, "MinCount": 1, "MaxCount": 1, "InstanceType": "t3.micro",
                "SubnetId": subnets[az]}
        if value:
            spec["TagSpecifications"] = tags("instance", value)
        return ec2.run_instances(**spec)["Instances"][0]["InstanceId"]

    instances = {"a": [run(A, "StopInstances"), run(A, "StopInstances")], "b": [run(B, "StopInstances")],
                 "asg_a": [run(A, "IceAsg")], "asg_b": [run(B, "IceAsg")], "untagged_a": [run(A, None)]}
    volume = ec2.create_volume(AvailabilityZone=A, Size=8, TagSpecifications=tags("volume", "ApiPauseVolume"))
    ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=instances["a"][0], Device="/dev/sdf")
    ec2.create_launch_template(LaunchTemplateName="az-e2e", LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.micro"})
    aws(upstream, "autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="az-e2e", LaunchTemplate={"LaunchTemplateName": "az-e2e"}, MinSize=0, MaxSize=2,
        VPCZoneIdentifier=",".join(subnets.values()),
        Tags=[{"Key": power, "Value": "IceAsg", "PropagateAtLaunch": True}])
    rds = aws(upstream, "rds")
    clusters = {}
    for name, zones in (("writer-in-a", (A, B)), ("writer-in-b", (B, A))):
        rds.create_db_cluster(DBClusterIdentifier=name, Engine="aurora-postgresql", MasterUsername="u",
                              MasterUserPassword="password123", Tags=[{"Key": power, "Value": "DisruptRds"}])
        for az in zones:  # the first instance is the writer
            rds.create_db_instance(DBInstanceIdentifier=f"{name}-{az[-1]}", DBClusterIdentifier=name,
                                   Engine="aurora-postgresql", DBInstanceClass="db.r5.large", AvailabilityZone=az)
        clusters[name] = f"{name}-{zones[0][-1]}"
    cache = aws(upstream, "elasticache")
    for name, zones in (("primary-in-a", [A, B]), ("primary-in-b", [B, A])):
        cache.create_replication_group(
            ReplicationGroupId=name, ReplicationGroupDescription="az e2e", Engine="redis",
            CacheNodeType="cache.t3.micro", NumCacheClusters=2, PreferredCacheClusterAZs=zones,
            Tags=[{"Key": power, "Value": "ElasticacheImpact"}])
    aws(upstream, "iam").create_role(RoleName="launcher", AssumeRolePolicyDocument="{}")
    return {"subnets": subnets, "instances": instances, "writers": clusters, "ami": ami}


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory, upstream: str, world: dict[str, Any]) -> Iterator[dict[str, Fisproxy]]:
    """A proxy placed in each zone, both on one store (the SQLite file, shared on this host)."""
    root = tmp_path_factory.mktemp("az-proxies")
    shared = root / "shared.sqlite"
    started: dict[str, Fisproxy] = {}
    try:
        for az in (A, B):
            workdir = root / az
            workdir.mkdir()
            started[az] = Fisproxy(workdir, upstream, extra_args=(
                "--placement", f"az={az},subnet={world['subnets'][az]}", "--state", str(shared))).start()
        yield started
    finally:
        for proxy in started.values():
            proxy.stop()


def write_template(tmp_path: Path, **params: str) -> Path:
    """`fisproxy scenarios az-power-interruption` as a user runs it."""
    args = [f"{k}={v}" for k, v in {"zone": A, "roles": LAUNCHER, "roleArn": ROLE, **params}.items()]
    result = subprocess.run([str(VENV_BIN / "fisproxy"), "scenarios", "az-power-interruption",
                             *[x for a in args for x in ("--param", a)]],
                            capture_output=True, text=True, env=clean_env(), timeout=60, check=True)
    path = tmp_path / "az.json"
    path.write_text(result.stdout)
    return path


def create_and_start(proxy: Fisproxy, template: Path) -> str:
    """`aws fis create-experiment-template --cli-input-json file://...`, then start it."""
    created = subprocess.run(
        [str(VENV_BIN / "aws"), "fis", "create-experiment-template", "--cli-input-json", f"file://{template}",
         "--endpoint-url", proxy.control_url, "--region", "us-east-1", "--output", "json"],
        capture_output=True, text=True, env=proxy.env(HTTPS_PROXY="", HTTP_PROXY=""), timeout=60)
    assert created.returncode == 0, created.stderr
    template_id = json.loads(created.stdout)["experimentTemplate"]["id"]
    exp_id = proxy.fis().start_experiment(experimentTemplateId=template_id)["experiment"]["id"]
    wait_for_state(proxy.fis(), exp_id, "running", timeout=60)
    return exp_id


def states(upstream: str, ids: list[str]) -> set[str]:
    found = aws(upstream, "ec2").describe_instances(InstanceIds=ids)["Reservations"]
    return {i["State"]["Name"] for r in found for i in r["Instances"]}


def writer(upstream: str, cluster: str) -> str:
    members = aws(upstream, "rds").describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]["DBClusterMembers"]
    return next(m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"])


def action(proxy: Fisproxy, exp_id: str, name: str) -> dict[str, str]:
    return proxy.fis().get_experiment(id=exp_id)["experiment"]["actions"][name]["state"]


def launcher_ec2(proxy: Fisproxy) -> Any:
    """EC2 as the launcher role, through `proxy`: the role is assumed through a proxy, which
    learns its access key (role-targeted faults)."""
    creds = proxy.client("sts").assume_role(RoleArn=LAUNCHER, RoleSessionName="app")["Credentials"]
    return proxy.client("ec2", retries={"mode": "standard", "total_max_attempts": 1},
                        access_key=creds["AccessKeyId"], secret_key=creds["SecretAccessKey"],
                        session_token=creds["SessionToken"])


def launch(ec2: Any, world: dict[str, Any], az: str) -> str:
    """RunInstances in `az`: the error code, or "launched" (the instance terminated again)."""
    try:
        started = ec2.run_instances(ImageId=world["ami"], MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                    Placement={"AvailabilityZone": az})
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    ec2.terminate_instances(InstanceIds=[started["Instances"][0]["InstanceId"]])
    return "launched"


def dropped(proxy: Fisproxy, region: str = "us-east-1") -> bool:
    """Whether a call through `proxy` hangs until the client's (short) read timeout."""
    client = proxy.client("sqs", region, retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=1.5)
    try:
        client.list_queues()
    except botocore.exceptions.ReadTimeoutError:
        return True
    return False


def passes(proxy: Fisproxy) -> bool:
    """Whether a call through `proxy` is answered (a generous timeout: a busy machine)."""
    proxy.client("sqs", retries={"mode": "standard", "total_max_attempts": 1}).list_queues()
    return True


def failovers_asked(upstream: str) -> list[str]:
    """The replication groups TestFailover was called for, from moto's recording."""
    text = requests.get(f"{upstream}/moto-api/recorder/download-recording", proxies=NO_PROXY, timeout=10).text
    asked = []
    for line in filter(str.strip, text.splitlines()):
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded") in (True, "True"):
            body = base64.b64decode(body).decode(errors="replace")
        form = parse_qs(body)
        if form.get("Action") == ["TestFailover"]:
            asked += form.get("ReplicationGroupId", [])
    return asked


def logged(proxy: Fisproxy, exp_id: str) -> list[dict[str, Any]]:
    shared = Path(proxy.extra_args[proxy.extra_args.index("--state") + 1])  # the logs are beside the store
    path = shared.parent / "logs" / f"{exp_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_az_power_interruption_as_published_runs_and_a_stop_undoes_it(
    tmp_path: Path, upstream: str, world: dict[str, Any], proxies: dict[str, Fisproxy]
) -> None:
    in_a, in_b = proxies[A], proxies[B]
    inst = world["instances"]
    ec2 = launcher_ec2(in_b)
    requests.post(f"{upstream}/moto-api/recorder/start-recording", proxies=NO_PROXY, timeout=10).raise_for_status()
    template = write_template(tmp_path, duration="PT10M", networkDuration="PT10M", autoshiftDelay="PT1S")
    exp_id = create_and_start(in_a, template)
    try:
        # Compute: the zone's instances stop, and only those the scenario's tags name.
        wait_until(lambda: states(upstream, inst["a"] + inst["asg_a"]) == {"stopped"}, 60, "zone a's instances stopped")
        assert states(upstream, inst["b"] + inst["asg_b"] + inst["untagged_a"]) == {"running"}
        # Databases: the Aurora cluster whose writer is in the zone fails over; the other not.
        wait_until(lambda: action(in_a, exp_id, "Failover-RDS")["status"] == "completed", 60, "the failover")
        assert writer(upstream, "writer-in-a") != world["writers"]["writer-in-a"]
        assert writer(upstream, "writer-in-b") == world["writers"]["writer-in-b"]
        # ElastiCache: failover asked for the group whose primary is in the zone, and only it;
        # moto does not implement TestFailover, and the action says so, skipped.
        wait_until(lambda: action(in_a, exp_id, "Pause-ElastiCache")["status"] == "skipped", 60, "ElastiCache's end")
        assert action(in_a, exp_id, "Pause-ElastiCache")["reason"].startswith(
            "Skipped: the upstream does not implement elasticache TestFailover (of primary-in-a/0001): it "
            "answered HTTP 500, not an AWS error")
        assert set(failovers_asked(upstream)) == {"primary-in-a"}
        # Launches in the zone fail for the targeted role, elsewhere they go on.
        wait_until(lambda: launch(ec2, world, A) == "InsufficientInstanceCapacity", 20, "launches in a faulted")
        assert launch(ec2, world, B) == "launched"
        # Network: the proxy placed in the zone drops its traffic (it hangs); the other does not.
        assert dropped(in_a) and passes(in_b)
        # What fisproxy cannot do is skipped, saying why; the rest runs.
        asg = action(in_a, exp_id, "Pause-ASG-Scaling")
        assert asg["status"] == "skipped" and asg["reason"].startswith(
            "Skipped: aws:ec2:asg-insufficient-instance-capacity-error cannot run in fisproxy: it is "
            "performed by AWS itself")
        wait_until(lambda: action(in_a, exp_id, "Start-ARC-Zonal-Autoshift")["status"] == "skipped", 20, "ARC's end")
        assert "the upstream does not implement arc-zonal-shift ListManagedResources" in action(
            in_a, exp_id, "Start-ARC-Zonal-Autoshift")["reason"]
        assert action(in_a, exp_id, "Disrupt-S3-Express-One-Zone")["status"] == "running"
        ends = {r["details"]["action_name"]: r["details"]["action_state"]["status"]
                for r in logged(in_a, exp_id) if r["log_type"] == "action-end"}
        assert ends["Pause-ASG-Scaling"] == "skipped" and ends["Start-ARC-Zonal-Autoshift"] == "skipped"
    finally:
        in_b.fis().stop_experiment(id=exp_id)  # a stop on the other proxy ends it everywhere
        exp = wait_for_state(in_a.fis(), exp_id, "stopped", timeout=60)
    # A stop undoes it all: instances started again, launches and traffic through again.
    assert exp["actions"]["Stop-Instances"]["state"]["status"] == "stopped"
    wait_until(lambda: states(upstream, inst["a"] + inst["asg_a"]) == {"running"}, 60, "zone a's instances started")
    assert launch(ec2, world, A) == "launched"
    assert passes(in_a)


def test_run_to_its_end_recovery_comes_and_the_ebs_pause_is_skipped_as_aws_internal(
    tmp_path: Path, upstream: str, world: dict[str, Any], proxies: dict[str, Fisproxy]
) -> None:
    in_a = proxies[A]
    template = write_template(tmp_path, duration="PT6S", recoveryDuration="PT3S", networkDuration="PT2S",
                              autoshiftDelay="PT1S", tags=f"AzImpairmentPower={uuid.uuid4().hex}")
    exp_id = create_and_start(in_a, template)  # tags nothing carries: every target empty...
    exp = wait_for_state(in_a.fis(), exp_id, "completed", "failed", timeout=90)
    assert exp["state"]["status"] == "completed", exp["state"]  # ...skipped, as the scenario asks
    template = write_template(tmp_path, duration="PT6S", recoveryDuration="PT3S", networkDuration="PT2S",
                              autoshiftDelay="PT1S")
    exp_id = create_and_start(in_a, template)
    exp = wait_for_state(in_a.fis(), exp_id, "completed", "failed", timeout=120)
    assert exp["state"]["status"] == "completed", exp["state"]
    actions = {name: a["state"] for name, a in exp["actions"].items()}
    assert actions["Stop-Instances"]["status"] == "completed"
    ebs = actions["Pause-EBS-IO"]
    assert ebs["status"] == "skipped" and ebs["reason"].startswith(
        "Skipped: aws:ebs:pause-volume-io cannot run in fisproxy: it is performed by AWS itself, inside EBS, "
        "with no agent")
    assert "agent on" not in ebs["reason"]
    assert actions["Pause-Instance-Launches"]["status"] == "completed"
    assert states(upstream, world["instances"]["a"]) == {"running"}  # started again after the outage
    assert passes(in_a)


def test_cross_region_connectivity_as_published_runs_on_moto(
    tmp_path: Path, upstream: str, world: dict[str, Any], proxies: dict[str, Fisproxy]
) -> None:
    """Cross-Region: Connectivity as AWS publishes it: calls to the destination Region through
    the proxy placed in the tagged subnet hang, other Regions go through; MemoryDB's pause is
    AWS-internal, skipped (its target not even resolved); the rest finds nothing tagged here and
    is skipped as FIS skips it; a stop lets the calls through again."""
    in_a, in_b = proxies[A], proxies[B]
    aws(upstream, "ec2").create_tags(Resources=[world["subnets"][A]], Tags=[{"Key": "SubnetKey", "Value": "SubnetValue"}])
    result = subprocess.run([str(VENV_BIN / "fisproxy"), "scenarios", "cross-region-connectivity",
                             "--param", "region=eu-west-1", "--param", "duration=PT20S", "--param", f"roleArn={ROLE}"],
                            capture_output=True, text=True, env=clean_env(), timeout=60, check=True)
    path = tmp_path / "cross-region.json"
    path.write_text(result.stdout)
    exp_id = create_and_start(in_b, path)
    try:
        wait_until(lambda: action(in_a, exp_id, "Disrupt-Subnet-Connectivity")["status"] == "running", 20, "the cut")
        # Started on the other proxy: the store says running at once, the cut reaches this proxy
        # with the store's next change notice (within a second or two on a busy machine).
        wait_until(lambda: dropped(in_a, "eu-west-1"), 10, "calls to eu-west-1 through the tagged subnet's proxy hang")
        in_a.client("sqs", "us-east-1").list_queues()
        in_b.client("sqs", "eu-west-1").list_queues()  # the other zone's proxy: not in the subnet
        memorydb = action(in_a, exp_id, "Pause-MemoryDB-Multi-Region-Cluster-Replication")
        assert memorydb["status"] == "skipped" and "performed by AWS itself" in memorydb["reason"]
    finally:
        in_a.fis().stop_experiment(id=exp_id)
        wait_for_state(in_a.fis(), exp_id, "stopped", timeout=60)
    in_a.client("sqs", "eu-west-1").list_queues()
