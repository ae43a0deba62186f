"""Network disruption as a proxy can apply it: `aws:network:disrupt-connectivity` in every scope,
and the cross-Region actions
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#network-actions-reference).

AWS FIS denies the traffic of the target subnets with network ACLs and route tables. fisproxy sits
on the path of what the application sends through it: a proxy placed in a targeted subnet
(`--placement subnet=...`) drops the requests of the action's scope that pass through it, and a
dropped request behaves like a network drop: the connection stays open and silent until the
client gives up (its read timeout), never a refused connection. When the action ends, a request
still hanging goes on untouched, as traffic resumes when a network ACL is removed.

What each scope drops (on a proxy placed in a targeted subnet):

- `all` (everything entering or leaving the subnet; traffic inside it is allowed): every request
  through the proxy, AWS calls or not, except to an address in the proxy's own subnet.
- `availability-zone` (traffic to the VPC's subnets in other zones): requests to an address in
  one of those subnets (their CIDRs read on the upstream at start, DescribeSubnets). AWS API
  calls go to Regional endpoints, outside the VPC: not in this scope.
- `dynamodb`, `s3` (the Regional endpoint in the experiment's Region): calls to that service in
  that Region. `s3express` (S3 Express One Zone): calls signed for s3express and calls to
  directory-bucket endpoints (`*.s3express-<zone id>.<region>.amazonaws.com`).
- `prefix-list`: requests to an address in the prefix list's CIDRs (the list is named by
  `prefixListIdentifier`: name, ID or ARN; its entries read on the upstream at start).
- `vpc` (traffic entering or leaving the VPC): requests to an address outside the VPC's CIDR
  blocks (read on the upstream at start, DescribeVpcs): AWS API calls to public endpoints too.

The address is the one the proxy connects to: an IP literal as given, else the host name
resolved (asynchronously, cached briefly; with `--aws-endpoint`, the endpoint's address). A name
that does not resolve counts as outside every network. Traffic that never passes through a proxy
(database connections, anything not sent through HTTP(S)_PROXY) is never dropped: each action
says so in its log when it starts (`start_notes`).

`aws:network:route-table-disrupt-cross-region-connectivity` drops AWS calls to the `region`
parameter's endpoints. `aws:network:transit-gateway-disrupt-cross-region-connectivity` is a
resource action (`resources/network.py`): transit gateway traffic never passes through a proxy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fisproxy.aws.call import AwsCall, RequestParts
from fisproxy.fis.failure import Failure
from fisproxy.fis.faults import FaultSpec, RuleSpec
from fisproxy.fis.resources.base import upstream_call
from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource

DISRUPT = "aws:network:disrupt-connectivity"
CROSS_REGION = "aws:network:route-table-disrupt-cross-region-connectivity"
TRANSIT_GATEWAY = "aws:network:transit-gateway-disrupt-cross-region-connectivity"

# A dropped request hangs until the client gives up, like a packet that never arrives.
DROP = FaultSpec(kind="disconnect", mode="hang")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_PREFIX_LIST_ID = re.compile(r"^pl-[0-9a-f]{8,17}$")


@dataclass(frozen=True, slots=True)
class Destinations:
    """Requests by the address they go to: inside `networks` (`inside` True) or outside them."""

    networks: tuple[IPNetwork, ...]
    inside: bool
    needs_body: bool = False
    needs_address: bool = True

    def admits(self, call: AwsCall, request: RequestParts | None) -> bool:
        ip = _ip(request.address if request is not None else None)
        if ip is None:
            return not self.inside  # not resolvable: outside every network
        hit = any(ip.version == n.version and ip in n for n in self.networks)
        return hit == self.inside


@dataclass(frozen=True, slots=True)
class S3Express:
    """S3 Express One Zone: calls signed for s3express, or sent to a directory-bucket endpoint."""

    needs_body: bool = False

    def admits(self, call: AwsCall, request: RequestParts | None) -> bool:
        host = (request.host if request is not None else None) or ""
        return call.service == "s3express" or ".s3express-" in host.lower()


@dataclass(frozen=True, slots=True)
class OtherRegions:
    """Calls to a region other than `home` (or to `only`, when given)."""

    home: str
    only: str | None = None
    needs_body: bool = False

    def admits(self, call: AwsCall, request: RequestParts | None) -> bool:
        if call.region is None or call.region == self.home:
            return False
        return self.only is None or call.region == self.only


def _ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not address:
        return None
    try:
        return ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    return tuple(out)


def placed_subnet(target: ResolvedTarget | None, subnet: str | None) -> TargetResource | None:
    """The targeted subnet this proxy is placed in, if any."""
    if target is None or subnet is None:
        return None
    for r in target.resources:
        if subnet in (r.id, r.arn, r.arn.rsplit("/", 1)[-1]):
            return r
    return None


def scope_of(params: Mapping[str, str]) -> str:
    return params.get("scope") or "all"


# ---- compiling the rules (on every proxy, from the targets and the facts) ------------------

def compile_disrupt(params: Mapping[str, str], subnet: TargetResource, *, region: str,
                    facts: Mapping[str, Any]) -> RuleSpec:
    """The rule of disrupt-connectivity on a proxy placed in `subnet` (a targeted subnet)."""
    scope = scope_of(params)
    details = subnet.details
    if scope in ("dynamodb", "s3"):
        return RuleSpec(frozenset({scope}), None, region, 100.0, (DROP,))
    if scope == "s3express":
        return RuleSpec(frozenset({"s3", "s3express"}), None, region, 100.0, (DROP,), S3Express())
    if scope == "prefix-list":
        dest = Destinations(_networks(facts.get("cidrs", ())), inside=True)
    elif scope == "vpc":
        cidrs = facts.get("vpcCidrs", {}).get(details.get("VpcId", ""), [])
        dest = Destinations(_networks(cidrs or [details.get("CidrBlock", "")]), inside=False)
    elif scope == "availability-zone":
        zone = details.get("AvailabilityZone")
        others = [s["cidr"] for s in facts.get("subnets", ())
                  if s.get("vpc") == details.get("VpcId") and s.get("az") != zone]
        dest = Destinations(_networks(others), inside=True)
    else:  # all: everything but the subnet's own addresses
        own = [details.get("CidrBlock", "")] + [
            a.get("Ipv6CidrBlock", "") for a in details.get("Ipv6CidrBlockAssociationSet", []) or []]
        dest = Destinations(_networks(c for c in own if c), inside=False)
    return RuleSpec(None, None, None, 100.0, (DROP,), dest, other_traffic=True, regional=False)


def compile_cross_region(params: Mapping[str, str], *, region: str) -> RuleSpec:
    """route-table-disrupt-cross-region-connectivity on a proxy placed in a targeted subnet."""
    return RuleSpec(None, None, None, 100.0, (DROP,), OtherRegions(region, params.get("region") or None),
                    regional=False)


# ---- facts looked up on the upstream at start (blocking: the engine's resolving step) ------

def lookup(params: Mapping[str, str], subnets: ResolvedTarget | None, clients: Any, region: str) -> dict[str, Any]:
    """What disrupt-connectivity's scope needs from the upstream, read once at experiment
    start with the experiment role: a prefix list's CIDRs, the VPCs' CIDR blocks, the other
    subnets of the VPCs. JSON-safe (kept with the experiment for every proxy). Failure if
    the prefix list cannot be found."""
    scope = scope_of(params)
    if subnets is None or clients is None or scope not in ("prefix-list", "vpc", "availability-zone"):
        return {}
    ec2 = clients.client("ec2", region)
    vpcs = sorted({str(r.details.get("VpcId")) for r in subnets.resources if r.details.get("VpcId")})
    if scope == "prefix-list":
        return _prefix_list(ec2, params.get("prefixListIdentifier"))
    if scope == "vpc":
        with upstream_call(f"ec2 DescribeVpcs of {', '.join(vpcs)}"):
            found = ec2.describe_vpcs(VpcIds=vpcs)["Vpcs"] if vpcs else []
        return {"vpcCidrs": {v["VpcId"]: [a["CidrBlock"] for a in v.get("CidrBlockAssociationSet", [])
                                          if a.get("CidrBlock")] or [v.get("CidrBlock", "")]
                             for v in found}}
    with upstream_call(f"ec2 DescribeSubnets of {', '.join(vpcs)}"):
        listed = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": vpcs}])["Subnets"] if vpcs else []
    return {"subnets": [{"id": s["SubnetId"], "vpc": s.get("VpcId"), "az": s.get("AvailabilityZone"),
                         "cidr": s.get("CidrBlock")} for s in listed if s.get("CidrBlock")]}


def _prefix_list(ec2: Any, identifier: str | None) -> dict[str, Any]:
    if not identifier:
        raise Failure("scope prefix-list needs the parameter prefixListIdentifier (a prefix "
                          "list's name, ID or ARN).", "ConfigurationFailure")
    pl_id = identifier.rsplit("/", 1)[-1] if identifier.startswith("arn:") else identifier
    by = {"PrefixListIds": [pl_id]} if _PREFIX_LIST_ID.match(pl_id) else {
        "Filters": [{"Name": "prefix-list-name", "Values": [identifier]}]}
    with upstream_call(f"ec2 DescribeManagedPrefixLists of {identifier}"):
        found = ec2.describe_managed_prefix_lists(**by)["PrefixLists"]
    if not found:
        raise Failure(f"prefix list {identifier} not found on the upstream.", "ConfigurationFailure")
    pl_id = found[0]["PrefixListId"]
    cidrs: list[str] = []
    with upstream_call(f"ec2 GetManagedPrefixListEntries of {pl_id}"):
        for page in ec2.get_paginator("get_managed_prefix_list_entries").paginate(PrefixListId=pl_id):
            cidrs += [e["Cidr"] for e in page.get("Entries", []) if e.get("Cidr")]
    return {"prefixList": pl_id, "cidrs": cidrs}


# ---- what the action's log says when it starts ----------------------------------------------

_NOT_THROUGH = ("Traffic that does not pass through a proxy (database and cache connections, "
                "anything not sent through HTTP(S)_PROXY) is not dropped.")


def start_notes(action_id: str, params: Mapping[str, str]) -> list[str]:
    """What fisproxy drops for this action, and the traffic of its scope that never passes
    through a proxy: said in the experiment log when the action starts."""
    if action_id == DISRUPT:
        where = "through proxies placed in the target subnets (--placement subnet=...)"
        scope = scope_of(params)
        said = {
            "all": f"Drops every request {where}, AWS calls or not, except to the proxy's own subnet.",
            "availability-zone": (
                f"Drops requests {where} to addresses in the VPC's subnets of other Availability "
                "Zones. AWS API calls go to Regional endpoints outside the VPC: they are not in this "
                "scope. Traffic between subnets usually does not pass through a proxy at all."),
            "dynamodb": f"Drops DynamoDB calls to the experiment's Region {where}.",
            "s3": f"Drops S3 calls to the experiment's Region {where}.",
            "s3express": f"Drops S3 Express One Zone calls (directory buckets) {where}.",
            "prefix-list": (f"Drops requests {where} to addresses in prefix list "
                            f"{params.get('prefixListIdentifier', '?')} (its entries read on the "
                            "upstream at start)."),
            "vpc": (f"Drops requests {where} leaving the VPC: to addresses outside its CIDR blocks, "
                    "AWS API calls to public endpoints included."),
        }
        return [said.get(scope, said["all"]) + " A dropped request hangs until the client's timeout. "
                + _NOT_THROUGH]
    if action_id == CROSS_REGION:
        target = params.get("region", "?")
        return [f"Drops AWS API calls to {target} through proxies placed in the target subnets; "
                f"they hang until the client's timeout. Other traffic to {target} (its public IP "
                "ranges, cross-Region VPC peering) never reaches a proxy as a call to a Region: "
                "not dropped. " + _NOT_THROUGH]
    if action_id == TRANSIT_GATEWAY:
        return [f"Traffic between transit gateways never passes through a proxy: fisproxy "
                f"disassociates the peering attachments to {params.get('region', '?')} from their "
                "route tables on the upstream, as AWS FIS does, and drops no request itself."]
    return []
