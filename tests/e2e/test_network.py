"""Every scope of aws:network:disrupt-connectivity, and the cross-Region action, end to end: a
real `fisproxy run` placed in a subnet on a real moto, boto3 and plain HTTP clients through it,
small HTTP servers on loopback addresses standing for hosts in the subnet, in another zone of the
VPC and outside it. Each scope drops what it covers (the request hangs until the client's read
timeout: a network drop, not a refused proxy), lets the rest through, says at start what never
passes through a proxy, and a stop lets everything through again."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from tests.e2e.conftest import Fisproxy, wait_for_state

ROLE = "arn:aws:iam::123456789012:role/fis"
# Loopback addresses standing for hosts: the VPC is 127.77.0.0/16, the proxy's subnet (zone a)
# 127.77.1.0/24, another subnet (zone b) 127.77.2.0/24; 127.88.0.9 is outside the VPC. moto
# itself, where every AWS call goes, is at 127.0.0.1: outside the VPC too.
IN_SUBNET, OTHER_ZONE, OUTSIDE = "127.77.1.9", "127.77.2.9", "127.88.0.9"
TIMEOUT = 1.5


class Hosts:
    """One tiny HTTP server per address, answering 200 "ok"."""

    def __init__(self, addresses: list[str]) -> None:
        self.servers = []
        for address in addresses:
            server = http.server.ThreadingHTTPServer((address, 0), _Ok)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
        self.port = {s.server_address[0]: s.server_address[1] for s in self.servers}

    def close(self) -> None:
        for s in self.servers:
            s.shutdown()
            s.server_close()


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def net(moto: str) -> dict[str, str]:
    ec2 = boto3.client("ec2", endpoint_url=moto, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    vpc = ec2.create_vpc(CidrBlock="127.77.0.0/16")["Vpc"]["VpcId"]
    tag = uuid.uuid4().hex[:8]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="127.77.1.0/24", AvailabilityZone="us-east-1a", TagSpecifications=[
        {"ResourceType": "subnet", "Tags": [{"Key": "net-e2e", "Value": tag}]}])["Subnet"]["SubnetId"]
    ec2.create_subnet(VpcId=vpc, CidrBlock="127.77.2.0/24", AvailabilityZone="us-east-1b")
    prefix_list = ec2.create_managed_prefix_list(
        PrefixListName=f"blocked-{tag}", MaxEntries=5, AddressFamily="IPv4",
        Entries=[{"Cidr": f"{OUTSIDE}/32"}])["PrefixList"]["PrefixListId"]
    return {"subnet": subnet, "tag": tag, "prefix_list": prefix_list, "prefix_list_name": f"blocked-{tag}"}


@pytest.fixture(scope="module")
def placed(tmp_path_factory: pytest.TempPathFactory, moto: str, net: dict[str, str]) -> Iterator[Fisproxy]:
    with Fisproxy(tmp_path_factory.mktemp("placed"), moto,
                  extra_args=("--placement", f"az=us-east-1a,subnet={net['subnet']}")).running() as proxy:
        yield proxy


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    h = Hosts([IN_SUBNET, OTHER_ZONE, OUTSIDE])
    yield h
    h.close()


def run(proxy: Fisproxy, net: dict[str, str], action_id: str, params: dict[str, str]) -> str:
    fis = proxy.fis()
    template = fis.create_experiment_template(
        description="e2e network", roleArn=ROLE, stopConditions=[{"source": "none"}],
        actions={"cut": {"actionId": action_id, "parameters": {"duration": "PT10M", **params},
                         "targets": {"Subnets": "net"}}},
        targets={"net": {"resourceType": "aws:ec2:subnet", "resourceTags": {"net-e2e": net["tag"]},
                         "selectionMode": "ALL"}},
    )["experimentTemplate"]
    exp_id = fis.start_experiment(experimentTemplateId=template["id"])["experiment"]["id"]
    wait_for_state(fis, exp_id, "running")
    return exp_id


def stop(proxy: Fisproxy, exp_id: str) -> None:
    proxy.fis().stop_experiment(id=exp_id)
    wait_for_state(proxy.fis(), exp_id, "stopped")


def client(proxy: Fisproxy, service: str, region: str = "us-east-1", *, timeout: float = 20) -> Any:
    return proxy.client(service, region, retries={"mode": "standard", "total_max_attempts": 1},
                        read_timeout=timeout, connect_timeout=timeout)


def get(proxy: Fisproxy, hosts: Hosts, address: str, *, expect: str = "ok") -> str:
    """A plain HTTP GET through the proxy: "ok", or "timeout" when nothing answers within the
    client's timeout: a short one where a drop is expected, a generous one (a busy machine)
    where the request must go through."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=TIMEOUT if expect == "timeout" else 20)
    try:
        conn.request("GET", f"http://{address}:{hosts.port[address]}/")
        return conn.getresponse().read().decode()
    except TimeoutError:
        return "timeout"
    finally:
        conn.close()


def hangs(call: Callable[[Any], Any], proxy: Fisproxy, service: str, region: str = "us-east-1") -> bool:
    """Whether an AWS call hangs until the client's (short) read timeout, the way a network drop
    looks; a refused or reset connection (ProxyConnectionError, ConnectionClosedError) is not."""
    try:
        call(client(proxy, service, region, timeout=TIMEOUT))
    except botocore.exceptions.ReadTimeoutError:
        return True
    return False


def notes(proxy: Fisproxy, exp_id: str) -> list[str]:
    records = [json.loads(line) for line in (proxy.state.parent / "logs" / f"{exp_id}.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["log_type"] == "action-start")
    return start["details"].get("notes", [])


def test_scope_all_drops_everything_but_the_subnet_and_a_stop_lets_it_through(placed, net, hosts):
    ddb = client(placed, "dynamodb")
    exp_id = run(placed, net, "aws:network:disrupt-connectivity", {"scope": "all"})
    try:
        assert hangs(lambda c: c.list_tables(), placed, "dynamodb")  # an AWS call leaves the subnet
        assert get(placed, hosts, OUTSIDE, expect="timeout") == "timeout"
        assert get(placed, hosts, OTHER_ZONE, expect="timeout") == "timeout"
        assert get(placed, hosts, IN_SUBNET) == "ok"  # inside the subnet: allowed
        [note] = notes(placed, exp_id)
        assert note.startswith("Drops every request through proxies placed in the target subnets")
        assert "does not pass through a proxy" in note
    finally:
        stop(placed, exp_id)
    ddb.list_tables()
    assert get(placed, hosts, OUTSIDE) == "ok"


def test_scope_availability_zone_drops_traffic_to_the_other_zones_only(placed, net, hosts):
    exp_id = run(placed, net, "aws:network:disrupt-connectivity", {"scope": "availability-zone"})
    try:
        assert get(placed, hosts, OTHER_ZONE, expect="timeout") == "timeout"
        assert get(placed, hosts, IN_SUBNET) == "ok"
        assert get(placed, hosts, OUTSIDE) == "ok"
        client(placed, "dynamodb").list_tables()  # AWS calls go to Regional endpoints: not this scope
        [note] = notes(placed, exp_id)
        assert "AWS API calls go to Regional endpoints outside the VPC: they are not in this scope" in note
    finally:
        stop(placed, exp_id)


@pytest.mark.parametrize("scope", ["dynamodb", "s3"])
def test_service_scopes_drop_that_service_in_the_region(placed, net, hosts, scope):
    other = "s3" if scope == "dynamodb" else "dynamodb"
    calls = {"dynamodb": lambda c: c.list_tables(), "s3": lambda c: c.list_buckets()}
    exp_id = run(placed, net, "aws:network:disrupt-connectivity", {"scope": scope})
    try:
        assert hangs(calls[scope], placed, scope)
        calls[scope](client(placed, scope, "eu-west-1"))  # another Region's endpoint
        calls[other](client(placed, other))
        assert get(placed, hosts, OUTSIDE) == "ok"  # not an AWS call of the scope
        assert notes(placed, exp_id)[0].startswith(f"Drops {'DynamoDB' if scope == 'dynamodb' else 'S3'} calls")
    finally:
        stop(placed, exp_id)


def test_scope_s3express_drops_directory_bucket_calls_only(placed, net, hosts):
    exp_id = run(placed, net, "aws:network:disrupt-connectivity", {"scope": "s3express"})
    try:
        # A directory bucket: botocore first asks its zonal endpoint for a session (s3express).
        assert hangs(lambda c: c.list_objects_v2(Bucket="orders--use1-az4--x-s3"), placed, "s3")
        client(placed, "s3").list_buckets()
    finally:
        stop(placed, exp_id)


@pytest.mark.parametrize("by", ["prefix_list", "prefix_list_name"])
def test_scope_prefix_list_drops_requests_to_its_cidrs(placed, net, hosts, by):
    exp_id = run(placed, net, "aws:network:disrupt-connectivity",
                 {"scope": "prefix-list", "prefixListIdentifier": net[by]})
    try:
        assert get(placed, hosts, OUTSIDE, expect="timeout") == "timeout"  # its one entry
        assert get(placed, hosts, OTHER_ZONE) == "ok"
        client(placed, "dynamodb").list_tables()  # moto's address is not in the list
        assert net[by] in notes(placed, exp_id)[0]
    finally:
        stop(placed, exp_id)


def test_scope_vpc_drops_what_leaves_the_vpc(placed, net, hosts):
    exp_id = run(placed, net, "aws:network:disrupt-connectivity", {"scope": "vpc"})
    try:
        assert hangs(lambda c: c.list_queues(), placed, "sqs")  # to an endpoint outside the VPC
        assert get(placed, hosts, OUTSIDE, expect="timeout") == "timeout"
        assert get(placed, hosts, OTHER_ZONE) == "ok"  # another zone, same VPC
        assert get(placed, hosts, IN_SUBNET) == "ok"
    finally:
        stop(placed, exp_id)


def test_cross_region_drops_calls_to_that_region_and_says_what_it_cannot_see(placed, net, hosts):
    exp_id = run(placed, net, "aws:network:route-table-disrupt-cross-region-connectivity", {"region": "eu-west-1"})
    try:
        assert hangs(lambda c: c.list_queues(), placed, "sqs", "eu-west-1")
        client(placed, "sqs", "us-east-1").list_queues()
        client(placed, "sqs", "ap-south-1").list_queues()
        assert get(placed, hosts, OUTSIDE) == "ok"
        [note] = notes(placed, exp_id)
        assert "Drops AWS API calls to eu-west-1" in note and "never reaches a proxy" in note
    finally:
        stop(placed, exp_id)


def test_a_proxy_placed_elsewhere_drops_nothing(fisproxy, net, hosts):
    exp_id = run(fisproxy, net, "aws:network:disrupt-connectivity", {"scope": "all"})
    try:
        client(fisproxy, "dynamodb").list_tables()
        assert get(fisproxy, hosts, OUTSIDE) == "ok"
    finally:
        stop(fisproxy, exp_id)


def test_a_dropped_call_is_a_timeout_not_a_refused_proxy(placed, net):
    """The SDK waits its read timeout, as for a lost packet; before, the reset read as
    `ProxyConnectionError: Failed to connect to proxy URL` at once."""
    ddb = boto3.session.Session().client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="x", verify=placed.ca,
        config=Config(proxies={"https": placed.proxy_url}, read_timeout=TIMEOUT,
                      retries={"total_max_attempts": 1}))
    exp_id = run(placed, net, "aws:network:disrupt-connectivity", {"scope": "dynamodb"})
    try:
        with pytest.raises(botocore.exceptions.ReadTimeoutError):  # not ProxyConnectionError
            ddb.list_tables()
    finally:
        stop(placed, exp_id)
