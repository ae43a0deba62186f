"""Network actions whose mechanism is EC2's API
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#network-actions-reference).

- disrupt-vpc-endpoint: each target interface endpoint gets a new security group with no rules
  (tagged managedByFIS=true) in place of its own; at the end its groups are restored and the
  new one deleted.
- transit-gateway-disrupt-cross-region-connectivity: the peering attachments of each target
  transit gateway whose peer is in `region` are disassociated from their route tables; at the
  end they are associated again.

(disrupt-connectivity and route-table-disrupt-cross-region-connectivity act on the traffic of
proxies placed in the target subnets: proxy faults, not resource actions.)
"""

from __future__ import annotations

from typing import Any

from fisproxy.fis.resources.base import ActionContext, register, upstream_call


@register("aws:network:disrupt-vpc-endpoint")
class DisruptVpcEndpoint:
    def start(self, ctx: ActionContext) -> None:
        ec2 = ctx.client("ec2")
        done: dict[str, dict[str, Any]] = ctx.state.setdefault("endpoints", {})
        for endpoint in ctx.target("VPCEndpoints").resources:
            groups = [g["GroupId"] for g in endpoint.details.get("Groups", [])]
            vpc = endpoint.details.get("VpcId")
            with upstream_call(f"ec2 CreateSecurityGroup for {endpoint.id}"):
                sg = ec2.create_security_group(
                    GroupName=f"fisproxy-{ctx.experiment_id}-{endpoint.id}"[:255],
                    Description=f"Blocks {endpoint.id} for {ctx.who()}"[:255],
                    VpcId=vpc,
                    TagSpecifications=[{"ResourceType": "security-group",
                                        "Tags": [{"Key": "managedByFIS", "Value": "true"}]}],
                )["GroupId"]
            done[endpoint.id] = {"groups": groups, "sg": sg}
            with upstream_call(f"ec2 RevokeSecurityGroupEgress of {sg}"):
                ec2.revoke_security_group_egress(
                    GroupId=sg, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
            kwargs: dict[str, Any] = {"VpcEndpointId": endpoint.id, "AddSecurityGroupIds": [sg]}
            if groups:
                kwargs["RemoveSecurityGroupIds"] = groups
            with upstream_call(f"ec2 ModifyVpcEndpoint of {endpoint.id}"):
                ec2.modify_vpc_endpoint(**kwargs)
            ctx.log(f"Endpoint {endpoint.id} blocked: security groups {', '.join(groups) or 'none'} replaced by {sg}.")

    def stop(self, ctx: ActionContext) -> None:
        ec2 = ctx.client("ec2")
        done: dict[str, dict[str, Any]] = ctx.state.get("endpoints", {})
        for endpoint_id, entry in list(done.items()):
            kwargs: dict[str, Any] = {"VpcEndpointId": endpoint_id, "RemoveSecurityGroupIds": [entry["sg"]]}
            if entry["groups"]:
                kwargs["AddSecurityGroupIds"] = entry["groups"]
            with upstream_call(f"ec2 ModifyVpcEndpoint of {endpoint_id}"):
                ec2.modify_vpc_endpoint(**kwargs)
            with upstream_call(f"ec2 DeleteSecurityGroup {entry['sg']}"):
                ec2.delete_security_group(GroupId=entry["sg"])
            del done[endpoint_id]
            ctx.log(f"Endpoint {endpoint_id} restored.")


@register("aws:network:transit-gateway-disrupt-cross-region-connectivity")
class TransitGatewayDisruptCrossRegion:
    def start(self, ctx: ActionContext) -> None:
        ec2 = ctx.client("ec2")
        region = ctx.parameters["region"]
        done: list[dict[str, str]] = ctx.state.setdefault("disassociated", [])
        for tgw in ctx.target("TransitGateways").ids:
            with upstream_call(f"ec2 DescribeTransitGatewayPeeringAttachments of {tgw}"):
                attachments = ec2.describe_transit_gateway_peering_attachments(
                    Filters=[{"Name": "transit-gateway-id", "Values": [tgw]}]
                ).get("TransitGatewayPeeringAttachments", [])
            for att in attachments:
                sides = (att.get("RequesterTgwInfo", {}), att.get("AccepterTgwInfo", {}))
                if not any(s.get("Region") == region and s.get("TransitGatewayId") != tgw for s in sides):
                    continue
                att_id = att["TransitGatewayAttachmentId"]
                with upstream_call(f"ec2 DescribeTransitGatewayAttachments of {att_id}"):
                    described = ec2.describe_transit_gateway_attachments(
                        TransitGatewayAttachmentIds=[att_id]).get("TransitGatewayAttachments", [])
                association = (described[0].get("Association") or {}) if described else {}
                table = association.get("TransitGatewayRouteTableId")
                if not table:
                    continue
                with upstream_call(f"ec2 DisassociateTransitGatewayRouteTable of {att_id}"):
                    ec2.disassociate_transit_gateway_route_table(
                        TransitGatewayRouteTableId=table, TransitGatewayAttachmentId=att_id)
                done.append({"attachment": att_id, "table": table})
                ctx.log(f"Peering attachment {att_id} of {tgw} to {region} disassociated from {table}.")

    def stop(self, ctx: ActionContext) -> None:
        ec2 = ctx.client("ec2")
        done: list[dict[str, str]] = ctx.state.get("disassociated", [])
        while done:
            entry = done[0]
            with upstream_call(f"ec2 AssociateTransitGatewayRouteTable of {entry['attachment']}"):
                ec2.associate_transit_gateway_route_table(
                    TransitGatewayRouteTableId=entry["table"], TransitGatewayAttachmentId=entry["attachment"])
            done.pop(0)
            ctx.log(f"Peering attachment {entry['attachment']} associated with {entry['table']} again.")
